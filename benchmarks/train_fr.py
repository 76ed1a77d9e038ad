"""FR training throughput: DeepSpeed ZeRO-0 vs ZeRO-2 on the same workers, one run.

    python benchmarks/train_fr.py --workers 2 --steps 150 --micro-batch 64

Each stage is a real ``synthface train-fr`` fit (Ray Train V2 + DeepSpeed, Ray Data feed) of
jobs/train_fr.yaml's model (IResNet-18 at width 32, 32 px, ArcFace over 500 classes) on a fresh
run folder, on ToyFaces rendered here (500 identities x 20 images). The rate is
measured as in ``zero_stages.py`` (steady-state report windows, global over workers); the LR
steps and the held-out verification are off, one checkpoint at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from synthface_ray.config import from_dict, load, to_dict
from synthface_ray.train.recognition import TrainFRConfig

sys.path.insert(0, os.path.dirname(__file__))
from zero_stages import compare_stages  # noqa: E402  (benchmarks/ is not a package)

JOB = os.path.join(os.path.dirname(__file__), "..", "jobs", "train_fr.yaml")


def _config(args: argparse.Namespace, data: str, root: str, stage: int) -> TrainFRConfig:
    raw = to_dict(load(TrainFRConfig, JOB), redact=False)
    raw["data"]["path"] = data
    raw["holdout"]["identities"] = 0
    raw["optim"].update(max_steps=args.steps, micro_batch=args.micro_batch, milestones=[])
    raw["scaling"].update(num_workers=args.workers, cpus_per_worker=args.cpus_per_worker)
    raw["deepspeed"]["zero_stage"] = stage
    raw["run"].update(storage_path=root, name=f"zero{stage}", report_every=args.report_every,
                      checkpoint_every=args.steps, max_failures=0)
    return from_dict(TrainFRConfig, raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--micro-batch", type=int, default=64)
    parser.add_argument("--report-every", type=int, default=25)
    args = parser.parse_args()

    import ray

    from synthface_ray.data.faces import write_faces
    from synthface_ray.data.toyfaces import ToyFacesConfig, iter_toyfaces
    from synthface_ray.train.fr_job import fit

    ray.init()
    with tempfile.TemporaryDirectory(prefix="bench-fr-") as tmp:
        data = os.path.join(tmp, "toyfaces")
        write_faces(iter_toyfaces(ToyFacesConfig(identities=500, images_per_identity=20)), data)
        compare_stages(fit, lambda stage: _config(args, data, os.path.join(tmp, "runs"), stage),
                       f"{args.workers} workers x {args.micro_batch} images, {args.steps} steps")


if __name__ == "__main__":
    main()
