"""Identity-mining cost on random identities: uniqueness filter, Far negatives, ScoreMix pairs.

    python benchmarks/mining.py [--n 100000 --dim 512 --tau 0.3 --identities 10000 --threads 2]

1. ``unique_filter`` on ``--n`` random unit vectors (a normalised Gaussian, IDiff-Face's random
   contexts) at DCFace's cosine 0.3: exact greedy rejection, ~ N x N_kept / 2 x D multiply-adds.
2. Far negatives (k = 1, NegFaceDiff/AdaptDiff's Far-Neg) and ScoreMix "dist" pairs
   (max_per_identity = 1, N/2 pairs: every identity mixed once) on the first ``--identities``
   kept identities. 10k because that is a generation run's identity count (IDiff-Face,
   NegFaceDiff and AdaptDiff generate 10k identities x 50 images); on all 100k the all-pairs
   top-k search would cost the same O(N^2 D) as the filter again and say nothing new.

Random data is the worst case for the filter: at tau = 0.3 in 512-d almost nothing is rejected
(cosines of random directions have std 1/sqrt(D) ~ 0.044), so N_kept ~ N. The data generation
is timed separately and not in the total. The last lines are an *estimate* (not a measurement)
of the filter on 1M candidates on one GPU, from its flop count and an assumed throughput.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from synthface_ray.mining.index import gpu_available
from synthface_ray.mining.negatives import negatives
from synthface_ray.mining.pairs import pair_distance, select_pairs
from synthface_ray.mining.uniqueness import unique_filter

A100_FP32_TFLOPS = 19.5  # NVIDIA A100 peak fp32 (non-tensor-core) throughput, datasheet
GPU_EFFICIENCY = 0.6  # assumed fraction of peak for faiss flat top-1 search (GEMM + k-select)


def filter_flops(n_kept: int, dim: int) -> float:
    """Flops of the exact greedy filter when ~everything is kept: candidate i is compared with
    the ~i kept before it, sum_i i ~ N^2 / 2 dot products of 2 D flops each."""
    return n_kept**2 / 2 * dim * 2


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--tau", type=float, default=0.3)
    ap.add_argument("--identities", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2, help="faiss OpenMP threads")
    ap.add_argument("--use-gpu", default="auto", choices=["auto", "yes", "no"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import faiss

    faiss.omp_set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, faiss {faiss.__version__}, "
          f"{args.threads} faiss threads, GPU used: {args.use_gpu != 'no' and gpu_available()}")

    def draw():
        z = np.random.default_rng(args.seed).standard_normal((args.n, args.dim), dtype=np.float32)
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    emb, t_data = timed(draw)
    print(f"data: {args.n:,} x {args.dim} normalised Gaussian float32 in {t_data:.2f} s "
          "(not in the total)")

    (keep, report), t_filter = timed(unique_filter, emb, args.tau, use_gpu=args.use_gpu)
    rate = filter_flops(report.kept, args.dim) / t_filter / 1e9
    print(f"unique_filter(tau={args.tau}): {t_filter:.2f} s, kept {report.kept:,}, rejected "
          f"{report.rejected:,} (~{rate:.0f} GFLOP/s)")

    ids = emb[keep][: args.identities]
    neg, t_neg = timed(negatives, ids, "far", 1, use_gpu=args.use_gpu)
    print(f"negatives('far', k=1) on {len(ids):,} identities: {t_neg:.2f} s "
          f"(mean cosine to the negative {np.einsum('ij,ij->i', ids, ids[neg[:, 0]]).mean():.3f})")

    n_pairs = len(ids) // 2
    pairs, t_pairs = timed(select_pairs, ids, n_pairs, "dist", 1, use_gpu=args.use_gpu)
    print(f"select_pairs('dist', max_per_identity=1) {n_pairs:,} pairs on {len(ids):,} "
          f"identities: {t_pairs:.2f} s (mean distance 1 - cos {pair_distance(ids, pairs).mean():.3f})")

    total = t_filter + t_neg + t_pairs
    print(f"total (filter + negatives + pairs): {total:.2f} s")

    n_big = 1_000_000
    flops = filter_flops(n_big, args.dim)
    peak = flops / (A100_FP32_TFLOPS * 1e12)
    print(f"ESTIMATE, not a measurement: unique_filter on {n_big:,} x {args.dim} random candidates "
          f"(~all kept) = N_kept^2/2 x D x 2 = {flops:.2e} flop; on one A100 "
          f"({A100_FP32_TFLOPS} TFLOPS fp32 peak) >= {peak:.0f} s at peak, ~{peak / GPU_EFFICIENCY:.0f}"
          f" s at an assumed {GPU_EFFICIENCY:.0%} of peak")
    print(f"  (the same N^2 scaling from this run's measurement: ~{t_filter * (n_big / args.n)**2 / 60:.0f}"
          f" min on this CPU; real data with rejections costs less, N_kept < N)")


if __name__ == "__main__":
    main()
