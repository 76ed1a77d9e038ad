"""Cost of the identity-separability protocol (NegFaceDiff / AdaptDiff: 1,000 identities x 20).

    python benchmarks/evaluation.py [--identities 1000 --images 20 --dim 512 --sample 1000000
                                     --block 8 --png /tmp/separability.png]

Random clustered unit embeddings stand in for FR features: a random unit centre per identity
plus Gaussian noise of per-identity strength sigma ~ U(1, 2.5) (relative to the centre's unit
norm), so genuine cosines (~1 / (1 + sigma^2)) sit above the impostor ones (~0 +- 1/sqrt(D)) with
some overlap. Two runs of :func:`separability`:

1. ``impostor="all"``: every one of the N(N-1)/2 - n_genuine cross-identity pairs (199.8M for
   1000 x 20), streamed by blocks of ``--block`` identities into exact sums and a 65,536-bin
   histogram;
2. ``impostor=--sample``: a uniform sample of impostor pairs, scored exactly.

Peak memory is reported two ways: tracemalloc's peak of Python/numpy allocations during the call
(numpy reports its buffers to tracemalloc; BLAS scratch space is not included), and the process's
peak resident set size (ru_maxrss, includes the interpreter, numpy and the input data).
Data generation is timed separately and is not in the wall times.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
import tracemalloc

import numpy as np

from synthface_ray.evaluate.histogram import score_histogram_png
from synthface_ray.evaluate.separability import BIN_WIDTH, sample_identities, separability


def clustered(n_ids: int, per_id: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sigma = rng.uniform(1.0, 2.5, n_ids).astype(np.float32)
    x = np.repeat(centres, per_id, axis=0)
    scale = np.repeat(sigma, per_id)[:, None] / np.sqrt(dim)
    for start in range(0, len(x), 2048):  # in chunks: the data are the only big allocation
        rows = slice(start, start + 2048)
        x[rows] += scale[rows] * rng.standard_normal(x[rows].shape, dtype=np.float32)
        x[rows] /= np.linalg.norm(x[rows], axis=1, keepdims=True)
    return x, np.repeat(np.arange(n_ids), per_id)


def measured(fn, *args, **kwargs):
    """``(result, wall seconds, tracemalloc peak bytes)`` of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    wall = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, wall, peak


def maxrss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=1000)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--sample", type=int, default=1_000_000)
    ap.add_argument("--block", type=int, default=8, help="identities per streamed block")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--png", default=None, help="also draw the score histograms here")
    args = ap.parse_args()

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, numpy {np.__version__}; load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())} (other processes share the CPUs)")
    start = time.perf_counter()
    x, labels = clustered(args.identities, args.images, args.dim, args.seed)
    rows = sample_identities(labels, args.identities, args.images, seed=args.seed)
    x, labels = x[rows], labels[rows]
    print(f"data: {len(x)} embeddings ({args.identities} identities x {args.images} images, "
          f"D={args.dim}, float32), generated in {time.perf_counter() - start:.2f} s; "
          f"RSS after generation {maxrss_mib():.0f} MiB")

    res, wall, peak = measured(separability, x, labels, "all", block_identities=args.block)
    print(f"\nimpostor='all' (streamed, block_identities={args.block}, bin width {BIN_WIDTH:.3g})")
    print(f"  n_genuine {res.n_genuine:,}  n_impostor {res.n_impostor:,}")
    print(f"  wall {wall:.2f} s  ({res.n_impostor / wall / 1e6:.1f} M impostor pairs/s)")
    print(f"  peak traced memory {peak / 2**20:.1f} MiB; process max RSS so far "
          f"{maxrss_mib():.0f} MiB")
    print(f"  {res.summary()}")

    sampled, wall_s, peak_s = measured(separability, x, labels, args.sample, seed=args.seed)
    print(f"\nimpostor={args.sample:_} (uniform sample, exact scores)")
    print(f"  n_genuine {sampled.n_genuine:,}  n_impostor {sampled.n_impostor:,}")
    print(f"  wall {wall_s:.2f} s")
    print(f"  peak traced memory {peak_s / 2**20:.1f} MiB; process max RSS so far "
          f"{maxrss_mib():.0f} MiB")
    print(f"  {sampled.summary()}")
    print(f"\n|sampled - all|: EER {abs(sampled.eer - res.eer):.2e}, FMR100 "
          f"{abs(sampled.fmr100 - res.fmr100):.2e}, FMR1000 "
          f"{abs(sampled.fmr1000 - res.fmr1000):.2e}, "
          f"I-mean {abs(sampled.impostor_mean - res.impostor_mean):.2e}, I-STD "
          f"{abs(sampled.impostor_std - res.impostor_std):.2e}")
    if args.png:
        score_histogram_png(res.genuine_counts, res.impostor_counts, args.png,
                            title=f"Random clustered embeddings: {args.identities} ids x "
                                  f"{args.images} images, all pairs")
        print(f"histogram: {args.png}")


if __name__ == "__main__":
    main()
