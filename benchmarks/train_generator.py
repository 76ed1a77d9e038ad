"""Generator training throughput: DeepSpeed ZeRO-0 vs ZeRO-2 on the same workers, one run.

    python benchmarks/train_generator.py --workers 2 --steps 120 --micro-batch 32

Each stage is a real ``synthface train-generator`` fit (Ray Train V2 + DeepSpeed, Ray Data feed)
of the tiny ToyFaces generator (jobs/train_generator.yaml's model) on a fresh run folder. The
rate is measured as in ``zero_stages.py`` (steady-state report windows, global over workers).
Previews and checkpoints are disabled except the final one, so the figure is the training loop.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from synthface_ray.config import from_dict, load, to_dict
from synthface_ray.train.generator import TrainGeneratorConfig

sys.path.insert(0, os.path.dirname(__file__))
from zero_stages import compare_stages  # noqa: E402  (benchmarks/ is not a package)

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
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        data = os.path.join(tmp, "toyfaces")
        write_faces(iter_toyfaces(ToyFacesConfig()), data)
        compare_stages(fit, lambda stage: _config(args, data, os.path.join(tmp, "runs"), stage),
                       f"{args.workers} workers x {args.micro_batch} images, {args.steps} steps")


if __name__ == "__main__":
    main()
