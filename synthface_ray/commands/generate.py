"""``synthface generate``: a plan through the composite sampler on a Ray Data actor pool into
Parquet shards (local or s3://), exactly once and resumable (docs/GENERATION.md)."""

from __future__ import annotations

import time

from synthface_ray import storage
from synthface_ray.commands.common import print_dry_run, write_resolved_config
from synthface_ray.data import faces
from synthface_ray.data.faces import MANIFEST
from synthface_ray.generate import grid, pipeline, shards
from synthface_ray.generate.config import Config

__all__ = ["Config", "run"]


def _dry_run(job) -> int:
    cfg = job.cfg
    n_shards = job.shard_count
    print_dry_run("generate", cfg, [
        f"{job.plan.num_rows} planned images of {job.shape[1]}x{job.shape[2]} in {n_shards} shards of "
        f"<= {cfg.output.rows_per_file} rows -> {job.out.uri}",
        f"sampler {job.sampler.recipe} ({job.sampler.solver}, {job.sampler.steps} steps); "
        f"{cfg.pool.actors} generator actor(s){', FR scoring' if cfg.model.fr else ''}",
        f"job fingerprint {job.fingerprint[:16]} (a re-run with the same settings resumes)",
    ])
    return 0


def run(cfg: Config, dry_run: bool = False) -> int:
    job = pipeline.prepare(cfg)
    if dry_run:
        return _dry_run(job)
    pipeline.open_output(job)
    n_shards = job.shard_count
    if not job.todo and storage.exists(job.out.join(MANIFEST)):
        print(f"{job.dest.uri} is complete ({job.plan.num_rows} images in {n_shards} shards): nothing to do")
        return 0
    if job.resumed:
        print(f"resuming {job.out.uri}: {n_shards - len(job.todo)} of {n_shards} shards already committed")
    if job.out.path != job.dest.path:
        print(f"overwrite: writing beside {job.dest.uri} in {job.out.uri}; the complete dataset there "
              "stays until the new one is complete")
    start = time.perf_counter()
    receipts, use_gpu = pipeline.execute(job) if job.todo else ([], False)
    wall = time.perf_counter() - start
    pipeline.check_complete(job)
    where = []
    if cfg.grid.enabled:
        png = grid.render(job.out, job.plan.batches, cfg.output.rows_per_file, cfg.grid.identities,
                          cfg.grid.images, cfg.grid.mixes)
        storage.atomic_write_bytes(job.out.join(shards.GRID), png)
        where.append(f"grid: {job.dest.join(shards.GRID).uri}")
    write_resolved_config(job.out, cfg, "generate")  # before the manifest, which is written last
    manifest, summary = pipeline.finish(job, receipts, wall, use_gpu)
    faces.finish(job.out, job.dest)  # the replacement of a complete dataset is swapped in now
    where.insert(0, f"dataset: {job.dest.uri} ({manifest['rows']} rows, {MANIFEST} written last)")
    for line in summary.lines() + where:
        print(line)
    return 0
