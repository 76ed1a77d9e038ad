"""Generator training throughput: DeepSpeed ZeRO-0 vs ZeRO-2 on the same workers, one run.

    python benchmarks/train_generator.py --workers 2 --steps 120 --micro-batch 32

Each stage is a real ``synthface train-generator`` fit (Ray Train V2 + DeepSpeed, Ray Data feed)
of the tiny ToyFaces generator (jobs/train_generator.yaml's model) on a fresh run folder. The
rate is measured over the steady-state reports only (the first report window, which holds worker
start-up and the first data blocks, is dropped); steps/s and samples/s are global (all workers).
Previews and checkpoints are disabled except the final one, so the figure is the training loop.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

from synthface_ray.config import from_dict, load, to_dict
from synthface_ray.train.generator import TrainGeneratorConfig
from synthface_ray.train.monitor import read_metrics

JOB = os.path.join(os.path.dirname(__file__), "..", "jobs", "train_generator.yaml")


def _config(args: argparse.Namespace, data: str, root: str, stage: int) -> TrainGeneratorConfig:
    raw = to_dict(load(TrainGeneratorConfig, JOB), redact=False)
    raw["data"]["path"] = data
    raw["optim"].update(max_steps=args.steps, micro_batch=args.micro_batch, warmup_steps=0)
    raw["scaling"].update(num_workers=args.workers, cpus_per_worker=args.cpus_per_worker)
    raw["deepspeed"]["zero_stage"] = stage
    raw["run"].update(storage_path=root, name=f"zero{stage}", report_every=args.report_every,
                      checkpoint_every=args.steps, max_failures=0)
    raw["preview"]["every"] = 0
    return from_dict(TrainGeneratorConfig, raw)


def _steady_rate(cfg: TrainGeneratorConfig) -> tuple[float, float]:
    """Mean steps/s and samples/s over all report windows but the first."""
    history = read_metrics(cfg.run_dir())[1:]
    if not history:
        raise RuntimeError("too few reports: raise --steps or lower --report-every")
    steps = sum(m["steps_per_s"] for m in history) / len(history)
    samples = sum(m["samples_per_s"] for m in history) / len(history)
    return steps, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--micro-batch", type=int, default=32)
    parser.add_argument("--report-every", type=int, default=20)
    args = parser.parse_args()

    import ray

    from synthface_ray.data.faces import write_faces
    from synthface_ray.data.toyfaces import ToyFacesConfig, iter_toyfaces
    from synthface_ray.train.generator_job import fit

    ray.init()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        data = os.path.join(tmp, "toyfaces")
        write_faces(iter_toyfaces(ToyFacesConfig()), data)
        for stage in (0, 2):
            cfg = _config(args, data, os.path.join(tmp, "runs"), stage)
            start = time.perf_counter()
            fit(cfg)
            rows[stage] = (*_steady_rate(cfg), time.perf_counter() - start)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.workers} workers x {args.micro_batch} images, {args.steps} steps")
    print("| ZeRO stage | steps/s | samples/s | wall s (incl. start-up) |")
    print("|---|---|---|---|")
    for stage, (steps, samples, wall) in rows.items():
        print(f"| {stage} | {steps:.2f} | {samples:.0f} | {wall:.0f} |")
    print(f"ZeRO-2 / ZeRO-0 steps/s ratio: {rows[2][0] / rows[0][0]:.2f}")


if __name__ == "__main__":
    main()
