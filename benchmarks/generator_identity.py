"""Do generated samples keep their condition's identity? A pixel-space proxy, no FR model needed.

    python benchmarks/generator_identity.py --export runs/train/toyfaces-generator/export \
        --data runs/toyfaces --identities 64 --per-identity 8

Every identity of the training data gets a class mean (its images blurred to 8x8, averaged). Each
generated sample (EMA export, Heun, CFG) and, as the reference, each of 4 held-out real images per identity is assigned
to the nearest class mean; the script prints the top-1 rate for generated and real images and
chance (1 / identities). ToyFaces identities differ in skin, hair and face colours, which this
proxy sees; it does not see fine facial geometry (that is the FR evaluation's job).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

from synthface_ray.data.faces import read_faces
from synthface_ray.data.transforms import decode_batch
from synthface_ray.models.generator import IdentityGenerator, load_metadata
from synthface_ray.models.objectives import make_objective
from synthface_ray.train.preview import PreviewConfig, sample_images


def _small(images: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, 192) 8x8 box-downsampled vectors."""
    out = []
    for img in images:
        pil = Image.fromarray(((img.transpose(1, 2, 0) + 1) * 127.5).clip(0, 255).astype(np.uint8))
        out.append(np.asarray(pil.resize((8, 8), Image.Resampling.BOX), np.float32).reshape(-1))
    return np.stack(out)


def _nearest_rate(vectors: np.ndarray, labels: np.ndarray, means: np.ndarray, classes: np.ndarray) -> float:
    dist = ((vectors[:, None, :] - means[None]) ** 2).sum(-1)
    return float((classes[dist.argmin(1)] == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--identities", type=int, default=64)
    parser.add_argument("--per-identity", type=int, default=8)
    parser.add_argument("--steps", type=int, default=18)
    parser.add_argument("--guidance", type=float, default=1.0)
    args = parser.parse_args()

    model = IdentityGenerator.from_pretrained(args.export)
    meta = load_metadata(args.export)
    objective = make_objective(**meta["objective"])
    data = decode_batch(read_faces(args.data), model.config.sample_size)
    labels, images = data["label"], data["image"]
    classes = np.unique(labels)[: args.identities]
    held = np.zeros(len(labels), bool)  # hold out 4 real images per identity as the reference
    for c in classes:
        held[np.flatnonzero(labels == c)[:4]] = True
    small = _small(images)
    means = np.stack([small[(labels == c) & ~held].mean(0) for c in classes])
    real_rate = _nearest_rate(small[held], labels[held], means, classes)

    start = time.perf_counter()
    cfg = PreviewConfig(images=args.per_identity, steps=args.steps, guidance=args.guidance)
    cond = torch.tensor(np.repeat(classes, args.per_identity))
    with torch.no_grad():
        generated = torch.cat([sample_images(model, objective, chunk, cfg) for chunk in cond.split(64)])
    elapsed = time.perf_counter() - start
    gen_rate = _nearest_rate(_small(generated.numpy()), cond.numpy(), means, classes)
    print(f"{len(classes)} identities, {args.per_identity} samples each ({meta['objective']['name']}, "
          f"step {meta['step']}, Heun {args.steps} steps, CFG {args.guidance}; sampled in {elapsed:.0f} s)")
    print(f"nearest class mean (8x8 pixels) top-1: generated {gen_rate:.3f}, held-out real "
          f"{real_rate:.3f}, chance {1 / len(classes):.3f}")


if __name__ == "__main__":
    main()
