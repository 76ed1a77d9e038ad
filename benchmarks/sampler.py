"""Composite-sampler overhead per recipe: time per image / (NFE x bare forward time per image).

    python benchmarks/sampler.py --batch 16 --steps 20 [--export runs/train/toyfaces-generator/export]

For each recipe, one ``sample()`` call on a batch of ``--batch`` rows (ScoreMix pairs, a negative
per row) is timed, and its network evaluations are counted (``out.nfe``). The reference is one
bare batched forward of the same network on ``--batch`` rows (median of ``--repeats``), divided
by the batch: the cost of one network evaluation of one image. The ratio is

    (sample time / batch) / (mean NFE per image x bare forward time / batch)

1.0 means the sampler adds nothing to the network's own cost. The model is the export given
with ``--export``, or the tiny generator of jobs/train_generator.yaml with random weights (the
cost does not depend on the weights).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from synthface_ray.sampling.composite import Conditions, sample
from synthface_ray.sampling.recipes import RECIPES


def _tiny_export(folder: str) -> str:
    from synthface_ray.config import load
    from synthface_ray.models.generator import IdentityGenerator
    from synthface_ray.train.generator import TrainGeneratorConfig

    job = os.path.join(os.path.dirname(__file__), "..", "jobs", "train_generator.yaml")
    cfg = load(TrainGeneratorConfig, job)
    torch.manual_seed(0)
    model = IdentityGenerator(cfg.generator).eval()
    objective = {"name": cfg.objective.name, **cfg.objective.settings()}
    model.save_pretrained(folder, extra_metadata={"objective": objective})
    return folder


def _conditions(gen, batch: int) -> Conditions:
    k = gen.model.config.num_identities
    ids = torch.arange(batch) % k
    return Conditions(contexts=gen.contexts(torch.arange(k)), empty=gen.empty,
                      mix_ids=torch.stack([ids, (ids + 1) % k], 1),
                      mix_weights=torch.full((batch, 2), 0.5), negative_ids=(ids + k // 2) % k,
                      seeds=torch.arange(batch))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _bare_forward(gen, cond: Conditions, repeats: int, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> float:
    """Median seconds of one forward of the network on the batch (no sampler around it), on
    ``device`` in ``dtype`` (benchmarks/gpu.py uses it on the GPU)."""
    device = torch.device(device)
    x = torch.randn(cond.batch, *gen.shape, device=device, dtype=dtype)
    ctx = cond.contexts[cond.mix_ids[:, 0].to(cond.contexts.device)].to(device=device, dtype=dtype)
    t = torch.full((cond.batch,), 0.5, device=device)
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            _sync(device)
            start = time.perf_counter()
            gen.net(x, t, ctx)
            _sync(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first call warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--export", default=None)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import tempfile

    from synthface_ray.sampling.exported import load_generator

    with tempfile.TemporaryDirectory() as tmp:
        gen = load_generator(args.export or _tiny_export(os.path.join(tmp, "export")))
    cond = _conditions(gen, args.batch)
    per_eval = _bare_forward(gen, cond, args.repeats) / args.batch
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch}, "
          f"{args.steps} steps; bare forward {per_eval * 1e3:.3f} ms per image")
    print("| recipe | NFE per image | s per image | ratio |")
    print("|---|---|---|---|")
    for name in RECIPES:
        section = {"recipe": name, "steps": args.steps}
        start = time.perf_counter()
        out = sample(gen.net, gen.param, cond, section, gen.shape, unet=gen.unet)
        per_image = (time.perf_counter() - start) / args.batch
        nfe = out.nfe.double().mean().item()
        print(f"| {name} | {nfe:.1f} | {per_image:.4f} | {per_image / (nfe * per_eval):.2f} |")


if __name__ == "__main__":
    main()
