"""Generation pipeline throughput: the Ray Data pipeline vs a bare single-process loop over the
same per-shard functions (sample -> FR score -> encode -> commit), and 2 actors vs 1.

    python benchmarks/generate.py [--identities 48 --per-identity 4 --steps 10 --rows-per-file 32]

Measurements, each images / wall seconds over the same plan, sampler and model:

* bare loop, 1 torch thread and 2 torch threads (one process, no Ray; the modules are imported
  before the timings, so the bare loop pays no import);
* ``synthface generate`` with 1 actor and with 2 actors (1 torch thread each, CPU pool, the
  default ``pool.stages: auto`` = fused), and 2 actors with ``pool.stages: staged`` (separate
  FR scoring actor and encode tasks), on a local Ray of all cores (started once, outside the
  timings).

Printed ratios: pipeline(1 actor) / bare(1 thread) (the pipeline's overhead on one core),
pipeline(2 actors) / the better bare loop (the same cores, whichever thread count the bare loop
does best with; target >= 0.9), 2 actors / 1 actor, and fused / staged at 2 actors.
The models are the tiny generator of jobs/train_generator.yaml and a width-16 IResNet-18 with
random weights (cost does not depend on the weights). Pipeline timings include starting the
actors (a fresh process each: imports, model load); they exclude Ray's start.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq
import torch

sys.path.insert(0, os.path.dirname(__file__))


def _inputs(root: str, args) -> dict:
    from sampler import _tiny_export

    from synthface_ray.data.identities import identities_table
    from synthface_ray.mining.plan import plan_rows
    from synthface_ray.models.recognition.embedder import save_backbone
    from synthface_ray.models.recognition.iresnet import BackboneConfig, build_backbone

    gen = _tiny_export(os.path.join(root, "gen"))
    torch.manual_seed(0)
    fr_cfg = BackboneConfig(input_size=32, width=16, embedding_dim=512)
    fr = str(save_backbone(build_backbone(fr_cfg).eval(), fr_cfg, os.path.join(root, "fr")))
    k = args.identities
    emb = np.random.default_rng(0).standard_normal((k, 512)).astype(np.float32)
    pq.write_table(identities_table(np.arange(k), emb / np.linalg.norm(emb, axis=1, keepdims=True), "random"),
                   os.path.join(root, "ids.parquet"))
    mixes = [(1000 + i, [i, (i + k // 2) % k], [0.5, 0.5]) for i in range(k // 4)]
    plan = plan_rows(np.arange(k), args.per_identity, {i: (i + 1) % k for i in range(k)}, mixes,
                     args.per_identity, seed=0)
    pq.write_table(plan, os.path.join(root, "plan.parquet"))
    return {"gen": gen, "fr": fr, "ids": os.path.join(root, "ids.parquet"),
            "plan": os.path.join(root, "plan.parquet"), "rows": plan.num_rows}


def _config(inp: dict, out: str, name: str, args, actors: int, stages: str = "auto"):
    from synthface_ray import config
    from synthface_ray.generate.config import Config
    from synthface_ray.sampling.recipes import resolve

    cfg = config.load(Config, None, [
        f"input.plan={inp['plan']}", f"input.identities={inp['ids']}", f"model.generator={inp['gen']}",
        f"model.fr={inp['fr']}", f"output.path={out}", f"output.name={name}",
        f"output.rows_per_file={args.rows_per_file}", f"pool.actors={actors}", "pool.cpus_per_actor=0.5",
        "pool.fr_cpus=0.25", "pool.encode_cpus=0.25", "grid.enabled=false", f"pool.micro_batch={args.rows_per_file}",
        f"pool.stages={stages}"])
    cfg.sampler = resolve({"recipe": "scoremix_cfg", "solver": "ddim", "steps": args.steps,
                           "negative": {"schedule": "linear", "w_max": 1.0}})
    return cfg


def bare_loop(cfg, threads: int) -> float:
    """images/s of the same per-shard functions in one process, no Ray."""
    from synthface_ray.generate import batch as gb
    from synthface_ray.generate import pipeline, shards
    from synthface_ray.models.recognition.embedder import Embedder
    from synthface_ray.sampling.exported import load_generator

    torch.set_num_threads(threads)
    start = time.perf_counter()
    job = pipeline.prepare(cfg)
    pipeline.open_output(job)
    gen = load_generator(cfg.model.generator)
    fr = Embedder.from_pretrained(cfg.model.fr, "cpu")
    text = gb.sampler_json(job.sampler)
    for part in job.plan.shard_tables(cfg.output.rows_per_file):
        out = gb.sample_batch(gen, part, job.sampler, job.identities, micro_batch=cfg.pool.micro_batch,
                              device="cpu", dtype=torch.float32)
        out = gb.score_batch(fr, out, job.identities, job.shape[-1])
        rows = gb.faces_rows(out, size=job.shape[-1], fmt="png", quality=95, sampler_json=text, model_id=job.model_id)
        shards.commit_shard(job.out, int(part.column(shards.SHARD)[0].as_py()), rows)
    return job.plan.num_rows / (time.perf_counter() - start)


def pipeline_run(cfg) -> float:
    from synthface_ray.generate import pipeline

    start = time.perf_counter()
    job = pipeline.prepare(cfg)
    pipeline.open_output(job)
    pipeline.execute(job)
    return job.plan.num_rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--identities", type=int, default=48)
    parser.add_argument("--per-identity", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rows-per-file", type=int, default=32)
    args = parser.parse_args()
    import ray

    cores = os.cpu_count()
    with tempfile.TemporaryDirectory() as root:
        inp = _inputs(root, args)
        print(f"{inp['rows']} images of the tiny generator, scoremix_cfg + AdaptDiff negative, DDIM "
              f"{args.steps} steps, FR scoring, PNG; {cores} cores, {platform.processor() or platform.machine()}")
        import synthface_ray.generate.actor  # noqa: F401  (imports outside the timings)
        import synthface_ray.sampling.exported  # noqa: F401

        bare1 = bare_loop(_config(inp, root, "bare1", args, 1), 1)
        bare2 = bare_loop(_config(inp, root, "bare2", args, 1), min(2, cores))
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        one = pipeline_run(_config(inp, root, "one", args, 1))
        two = pipeline_run(_config(inp, root, "two", args, 2))
        staged = pipeline_run(_config(inp, root, "staged", args, 2, "staged"))
        ray.shutdown()
    print(f"bare loop, 1 thread:   {bare1:.2f} images/s")
    print(f"bare loop, 2 threads:  {bare2:.2f} images/s")
    print(f"pipeline, 1 actor:     {one:.2f} images/s")
    print(f"pipeline, 2 actors:    {two:.2f} images/s")
    print(f"pipeline, 2 actors, staged: {staged:.2f} images/s")
    print(f"ratio pipeline(1 actor) / bare(1 thread):   {one / bare1:.2f}")
    print(f"ratio pipeline(2 actors) / best bare loop:  {two / max(bare1, bare2):.2f}  (target >= 0.9)")
    print(f"ratio 2 actors / 1 actor:                   {two / one:.2f}")
    print(f"ratio fused / staged (2 actors):            {two / staged:.2f}")


if __name__ == "__main__":
    main()
