"""Negative conditions for NegFaceDiff / AdaptDiff sampling: which identity is the negative
``p-`` in ``eps = (1 + w) eps(x, t, p+) - w eps(x, t, p-)`` for each positive ``p+``.

The released NegFaceDiff / AdaptDiff code picks the context with the lowest cosine to the
positive ("Far-Neg", the best); it also compares Close, Mid (median cosine), Rand and Null
(no negative). Here each strategy maps N identity embeddings to an (N, k) int64 array of
indices into them, one row per positive, the positive itself never chosen (-1 for "null").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from synthface_ray.mining.index import MiningError, check_embeddings, topk_others

MID_BLOCK_BYTES = 64 << 20  # the (rows x N) float32 similarity block of the "mid" strategy


def _far(x: np.ndarray, k: int, seed: int, use_gpu: str) -> np.ndarray:
    """Far-Neg: the k lowest cosines (farthest first), by an exact search with -x."""
    return topk_others(x, k, largest=False, use_gpu=use_gpu)[1]


def _close(x: np.ndarray, k: int, seed: int, use_gpu: str) -> np.ndarray:
    """Close-Neg: the k highest cosines to others (closest first), self excluded."""
    return topk_others(x, k, largest=True, use_gpu=use_gpu)[1]


def mid_window(n_others: int, k: int) -> tuple[int, int]:
    """Positions ``[start, start + k)`` of the "mid" negatives in a row's ascending sort of its
    ``n_others`` cosines: the k consecutive positions centred on the lower median position
    ``(n_others - 1) // 2``, i.e. ``start = median - (k - 1) // 2``, clipped to the row."""
    median = (n_others - 1) // 2
    start = min(max(median - (k - 1) // 2, 0), n_others - k)
    return start, start + k


def _mid(x: np.ndarray, k: int, seed: int, use_gpu: str) -> np.ndarray:
    """Mid-Neg: the k others whose cosines sit around the row's median cosine
    (:func:`mid_window`), in ascending cosine order. Computed block-wise (``MID_BLOCK_BYTES`` of
    similarities at a time) with a partial sort; ties fall in an arbitrary but fixed order."""
    n = len(x)
    start, stop = mid_window(n - 1, k)
    out = np.empty((n, k), dtype=np.int64)
    rows_per_block = max(1, MID_BLOCK_BYTES // (4 * n))
    for lo in range(0, n, rows_per_block):
        hi = min(n, lo + rows_per_block)
        sims = x[lo:hi] @ x.T
        sims[np.arange(hi - lo), np.arange(lo, hi)] = np.inf  # self sorts after every other
        part = np.argpartition(sims, list(range(start, stop)), axis=1)[:, start:stop]
        out[lo:hi] = part
    return out


def _random(x: np.ndarray, k: int, seed: int, use_gpu: str) -> np.ndarray:
    """Rand-Neg: k distinct others per row, uniform, reproducible from ``seed`` (Floyd's
    subset sampling vectorised over rows, then a per-row shuffle)."""
    n, rng = len(x), np.random.default_rng(seed)
    others = n - 1
    picked = np.empty((n, k), dtype=np.int64)
    for col, j in enumerate(range(others - k, others)):
        t = rng.integers(0, j + 1, size=n)
        taken = (picked[:, :col] == t[:, None]).any(axis=1)
        picked[:, col] = np.where(taken, j, t)
    picked = rng.permuted(picked, axis=1)
    return picked + (picked >= np.arange(n)[:, None])  # skip over self


def _null(x: np.ndarray, k: int, seed: int, use_gpu: str) -> np.ndarray:
    """Null: no negative condition (-1 everywhere; the sampler treats -1 as "none")."""
    return np.full((len(x), k), -1, dtype=np.int64)


NEGATIVE_STRATEGIES: dict[str, Callable[[np.ndarray, int, int, str], np.ndarray]] = {
    "far": _far,
    "close": _close,
    "mid": _mid,
    "random": _random,
    "null": _null,
}


def negatives(emb, strategy: str, k: int = 1, seed: int = 0, use_gpu: str = "auto") -> np.ndarray:
    """The negative identities of every identity in ``emb`` (N, D): an (N, k) int64 array of
    row indices into ``emb``, row i never containing i (NegFaceDiff/AdaptDiff negatives).

    ``strategy`` is a key of :data:`NEGATIVE_STRATEGIES`: ``far`` (lowest cosine, the released
    code's default Far-Neg), ``close`` (highest), ``mid`` (around the median cosine, see
    :func:`mid_window`), ``random`` (seeded) or ``null`` (all -1). ``k`` must be in [1, N-1].
    """
    if strategy not in NEGATIVE_STRATEGIES:
        raise MiningError(f"unknown negative strategy {strategy!r}: expected one of "
                          f"{', '.join(NEGATIVE_STRATEGIES)}")
    x = check_embeddings(emb, "emb")
    if int(k) != k or not 1 <= k < len(x):
        raise MiningError(f"k={k} negatives per identity needs 1 <= k <= N-1 = {len(x) - 1} "
                          f"(N={len(x)} identities, self excluded)")
    return NEGATIVE_STRATEGIES[strategy](x, int(k), int(seed), use_gpu)


__all__ = ["NEGATIVE_STRATEGIES", "mid_window", "negatives"]
