"""Identity uniqueness: greedy rejection of near-duplicate identities, and a leakage check.

Synthetic identity vectors are useful only when they are distinct from one another and from the
real identities the models were trained on. DCFace keeps an identity only if its cosine to every
kept one is at most 0.3; Vec2Face rejects random identity vectors greedily at cosine 0.4 with
faiss, and checks synthetic identities against the real class centres (leakage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from synthface_ray.mining.index import (
    MiningError,
    check_embeddings,
    check_same_dim,
    inner_product_index,
)


@dataclass(frozen=True)
class FilterReport:
    """How many candidates a filter kept and rejected (``kept + rejected`` = candidates)."""

    kept: int
    rejected: int


def check_threshold(value: float, name: str) -> float:
    """A cosine threshold must be a finite number in the open interval (-1, 1): at 1 or above
    nothing is ever rejected, at -1 or below everything after the first is."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise MiningError(f"{name}={value!r} must be a number in (-1, 1)") from None
    if not (math.isfinite(value) and -1.0 < value < 1.0):
        raise MiningError(f"{name}={value} must be a cosine threshold in the open interval (-1, 1)")
    return value


def greedy_within(sims: np.ndarray, tau: float) -> np.ndarray:
    """Sequential greedy rejection inside one block: row i is kept iff its similarity to every
    earlier *kept* row is <= tau. ``sims`` (m, m) symmetric; returns an (m,) bool mask.

    Only rows that conflict with a later row can change anything, so the Python loop runs over
    those alone, each step a vectorised update of the later rows."""
    m = len(sims)
    conflict = np.triu(sims > tau, k=1)
    alive = np.ones(m, dtype=bool)
    for i in np.flatnonzero(conflict.any(axis=1)):
        if alive[i]:
            alive[i + 1:] &= ~conflict[i, i + 1:]
    return alive


def unique_filter(emb, tau: float, batch: int = 2048,
                  use_gpu: str = "auto") -> tuple[np.ndarray, FilterReport]:
    """Greedy uniqueness filter (DCFace: tau = 0.3; Vec2Face: 0.4): in input order, candidate i
    is kept iff its cosine to every previously kept candidate is <= ``tau``.

    Exact (no approximate search): each batch of ``batch`` candidates is searched against a
    faiss flat inner-product index of the kept set for its top-1 kept neighbour; the survivors
    are resolved among themselves greedily with their batch x batch cosine matrix, and the
    batch's kept rows are added to the index. Cost ~ N x N_kept x D multiply-adds (float32).
    Non-unit rows are normalised (:func:`~synthface_ray.mining.index.check_embeddings`).

    Returns ``(keep, report)``: an (N,) bool mask over the input rows and a :class:`FilterReport`.
    """
    tau = check_threshold(tau, "tau")
    if int(batch) != batch or batch < 1:
        raise MiningError(f"batch={batch!r} must be a positive integer")
    x = check_embeddings(emb, "emb")
    n = len(x)
    keep = np.zeros(n, dtype=bool)
    index = inner_product_index(x.shape[1], use_gpu)
    for start in range(0, n, int(batch)):
        block = x[start:start + int(batch)]
        ok = np.ones(len(block), dtype=bool)
        if index.ntotal:
            top, _ = index.search(block, 1)
            ok = top[:, 0] <= tau
        rows = np.flatnonzero(ok)
        survivors = block[rows]
        rows = rows[greedy_within(survivors @ survivors.T, tau)]
        keep[start + rows] = True
        if rows.size:
            index.add(np.ascontiguousarray(block[rows]))
    kept = int(keep.sum())
    return keep, FilterReport(kept=kept, rejected=n - kept)


def leakage_mask(candidates, real_centers, tau_leak: float,
                 use_gpu: str = "auto") -> tuple[np.ndarray, FilterReport]:
    """Vec2Face's leakage check: reject the candidates whose largest cosine to any real class
    centre is > ``tau_leak`` (a synthetic identity that is a real one in disguise).

    Returns ``(reject, report)``: an (N,) bool mask of the candidates to **reject** and a
    :class:`FilterReport`. Both inputs are checked (and normalised if needed) like
    :func:`unique_filter`'s; different dimensions raise :class:`MiningError`.
    """
    tau_leak = check_threshold(tau_leak, "tau_leak")
    x = check_embeddings(candidates, "candidates")
    centers = check_embeddings(real_centers, "real_centers")
    check_same_dim(x, centers, ("candidates", "real_centers"))
    reject = np.zeros(len(x), dtype=bool)
    if len(x) and len(centers):
        index = inner_product_index(centers.shape[1], use_gpu)
        index.add(centers)
        top, _ = index.search(x, 1)
        reject = top[:, 0] > tau_leak
    rejected = int(reject.sum())
    return reject, FilterReport(kept=len(x) - rejected, rejected=rejected)


__all__ = ["FilterReport", "check_threshold", "greedy_within", "leakage_mask", "unique_filter"]
