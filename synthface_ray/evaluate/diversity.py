"""Identity consistency, intra-class diversity, uniqueness and leakage of a synthetic dataset.

- *Identity consistency*: how well images keep their identity -- the mean FR cosine between each
  image's embedding and its identity's context (the embedding the generator was conditioned on;
  IDiff-Face / NegFaceDiff condition on 512-d FR embeddings).
- *Intra-class diversity*: the mean pairwise distance within each identity, averaged over
  identities, in FR space (1 - cosine) and in pixel space (root-mean-square difference of images
  scaled to [0, 1], see :func:`pixel_diversity`). AdaptDiff reads a higher genuine STD as "higher
  intra-identity variation"; these measure it directly.
- *Uniqueness*: the number of distinct identities among class centres under greedy rejection at
  cosine tau (DCFace 0.3, Vec2Face 0.4).
- *Leakage*: synthetic centres whose largest cosine to any real class centre exceeds tau_leak
  (Vec2Face's check that a synthetic identity is not a real one in disguise).

Uniqueness and leakage are ``synthface_ray.mining.uniqueness``'s ``unique_filter`` /
``leakage_mask`` (exact faiss search). No model, no Ray.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from synthface_ray.data.identities import class_centers
from synthface_ray.evaluate.separability import (
    EvaluationError,
    check_embeddings,
    check_labels,
    unit_rows,
    validate_embeddings,
)
from synthface_ray.mining import uniqueness as mining


def identity_consistency(fr_cosine) -> float:
    """Mean of given FR cosines between generated images and their identity contexts."""
    c = np.asarray(fr_cosine, dtype=np.float64).ravel()
    if not c.size:
        raise EvaluationError("no fr_cosine values")
    bad = np.flatnonzero(~np.isfinite(c))
    if bad.size:
        raise EvaluationError(f"fr_cosine value {bad[0]} is NaN or infinite ({bad.size} bad)")
    return float(c.mean())


def consistency(emb, contexts, labels) -> float:
    """Identity consistency from embeddings: the mean cosine between image embedding ``emb[n]``
    (N, D) and its identity context ``contexts[labels[n]]`` (contexts (K, D); labels integers in
    [0, K))."""
    x, ctx = check_embeddings(emb, "emb"), check_embeddings(contexts, "contexts")
    lab = np.asarray(labels)
    if lab.shape != (len(x),):
        raise EvaluationError(f"mismatched lengths: emb has {len(x)} rows but labels has shape "
                              f"{lab.shape}")
    if x.shape[1] != ctx.shape[1]:
        raise EvaluationError(f"emb has D={x.shape[1]} but contexts has D={ctx.shape[1]}")
    if not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0 or lab.max() >= len(ctx):
        raise EvaluationError(f"labels must be integer rows of contexts in [0, {len(ctx)})")
    return identity_consistency(np.einsum("ij,ij->i", x, ctx[lab]))


def class_centres(emb, labels) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, centres)``: the normalised mean of each identity's unit embeddings (sorted ids;
    :func:`synthface_ray.data.identities.class_centers` after the input checks)."""
    x = validate_embeddings(emb, "emb")  # class_centers normalises the rows itself, a chunk at a time
    lab = np.asarray(labels)
    if lab.shape != (len(x),):
        raise EvaluationError(f"mismatched lengths: emb has {len(x)} rows but labels has shape "
                              f"{lab.shape}")
    ids, centres = class_centers(x, lab)
    return ids, check_embeddings(centres, "class centres")


def _per_class_means(labels, n_rows: int, pair_mean: Callable[[np.ndarray], float],
                     max_per_class: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, means)``: per identity (sorted ids), ``pair_mean(rows)`` -- the mean distance over
    the pairs i < j of (at most ``max_per_class``, drawn without replacement) rows of it."""
    if max_per_class is not None and max_per_class < 2:
        raise EvaluationError(f"max_per_class={max_per_class} must be >= 2 (or None)")
    ids, codes, counts = check_labels(labels, n_rows, min_identities=1)
    rng = np.random.default_rng(seed)
    order = np.argsort(codes, kind="stable")
    bounds = np.r_[0, np.cumsum(counts)]
    means = []
    for k in range(len(counts)):
        rows = order[bounds[k]:bounds[k + 1]]
        if max_per_class is not None and len(rows) > max_per_class:
            rows = np.sort(rng.choice(rows, max_per_class, replace=False))
        means.append(pair_mean(rows))
    return ids, np.asarray(means, np.float64)


def intra_class_diversity_by_identity(emb, labels, max_per_class: int | None = 50,
                                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, values)``: :func:`intra_class_diversity` of each identity (sorted ids), so that two
    sets of the same identities can be compared identity by identity."""
    x = validate_embeddings(emb, "emb")  # each identity's rows are normalised when used

    def pair_mean(rows: np.ndarray) -> float:
        unit = unit_rows(x, rows)
        sims = unit @ unit.T
        return float(1.0 - sims[np.triu_indices(len(rows), 1)].mean())

    return _per_class_means(labels, len(x), pair_mean, max_per_class, seed)


def intra_class_diversity(emb, labels, max_per_class: int | None = 50, seed: int = 0) -> float:
    """FR-space intra-class diversity: per identity, the mean of 1 - cos over its image pairs
    (at most ``max_per_class`` images, subsampled with ``seed``), averaged over identities.
    0 = every image of an identity embeds identically; 1 = orthogonal on average."""
    return float(intra_class_diversity_by_identity(emb, labels, max_per_class, seed)[1].mean())


def _image_rows(images, rows: np.ndarray) -> np.ndarray:
    """Rows of ``images`` as (m, P) float64 in [0, 1]: uint8 / 255, floats checked in range."""
    block = np.asarray(images[rows])
    if np.issubdtype(block.dtype, np.integer):
        if block.dtype != np.uint8:
            raise EvaluationError(f"integer images must be uint8, got {block.dtype}")
        return block.reshape(len(rows), -1) / 255.0
    flat = block.reshape(len(rows), -1).astype(np.float64)
    if not np.isfinite(flat).all() or flat.min() < 0.0 or flat.max() > 1.0:
        raise EvaluationError("float images must be finite and scaled to [0, 1] "
                              f"(rows {rows[:3].tolist()}...: range [{flat.min()}, {flat.max()}])")
    return flat


def pixel_diversity_by_identity(images, labels, max_per_class: int | None = 20,
                                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, values)``: pixel-space intra-class diversity of each identity (sorted ids): the
    mean over its image pairs of the root-mean-square pixel difference ||a - b||_2 / sqrt(P) of
    images scaled to [0, 1] (uint8 / 255; P = H x W x C values); in [0, 1] and independent of
    the resolution. A simple SSIM-free metric. ``images`` (N, H, W[, C]) array-like, indexed one
    identity at a time; at most ``max_per_class`` images per identity (subsampled with ``seed``).
    Cost per identity ~ m^2 / 2 x P."""
    images = images if hasattr(images, "shape") else np.asarray(images)
    n = len(images)

    def pair_mean(rows: np.ndarray) -> float:
        flat = _image_rows(images, rows)
        dists = [np.sqrt(((flat[i + 1:] - flat[i]) ** 2).mean(axis=1))
                 for i in range(len(rows) - 1)]
        return float(np.concatenate(dists).mean())

    return _per_class_means(labels, n, pair_mean, max_per_class, seed)


def pixel_diversity(images, labels, max_per_class: int | None = 20, seed: int = 0) -> float:
    """Pixel-space intra-class diversity: :func:`pixel_diversity_by_identity` averaged over
    identities; in [0, 1] and independent of the resolution."""
    return float(pixel_diversity_by_identity(images, labels, max_per_class, seed)[1].mean())


@dataclass(frozen=True, eq=False)
class UniquenessResult:
    """``n_unique`` of ``n_total`` centres survive greedy rejection at cosine ``tau``;
    ``keep`` is the (n_total,) mask."""

    n_unique: int
    n_total: int
    tau: float
    keep: np.ndarray

    @property
    def fraction(self) -> float:
        return self.n_unique / self.n_total if self.n_total else 0.0


@dataclass(frozen=True, eq=False)
class LeakageResult:
    """``n_leaked`` of ``n_total`` synthetic centres have max cosine > ``tau_leak`` to a real
    centre; ``leaked`` is the (n_total,) mask."""

    n_leaked: int
    n_total: int
    tau_leak: float
    leaked: np.ndarray

    @property
    def fraction(self) -> float:
        return self.n_leaked / self.n_total if self.n_total else 0.0


def _check_tau(tau: float, name: str) -> float:
    tau = float(tau)
    if not (math.isfinite(tau) and -1.0 < tau < 1.0):
        raise EvaluationError(f"{name}={tau} must be a cosine threshold in (-1, 1)")
    return tau


def _mining(name: str, *args) -> np.ndarray:
    """The mask of ``synthface_ray.mining.uniqueness.<name>(*args)`` (the exact faiss filter);
    its ``MiningError`` (a ValueError) is re-raised as :class:`EvaluationError`."""
    try:
        return np.asarray(getattr(mining, name)(*args)[0], dtype=bool)
    except ValueError as err:
        raise EvaluationError(str(err)) from err


def uniqueness(centres, tau: float = 0.3) -> UniquenessResult:
    """Distinct identities among class centres (N, D): greedy rejection at cosine ``tau``
    (DCFace 0.3, Vec2Face 0.4), by mining's ``unique_filter``."""
    tau = _check_tau(tau, "tau")
    x = check_embeddings(centres, "centres")
    keep = _mining("unique_filter", x.astype(np.float32), tau)
    return UniquenessResult(int(keep.sum()), len(x), tau, keep)


def leakage(synthetic_centres, real_centres, tau_leak: float) -> LeakageResult:
    """Synthetic centres whose largest cosine to any real class centre is > ``tau_leak``
    (Vec2Face's leakage check), by mining's ``leakage_mask``."""
    tau_leak = _check_tau(tau_leak, "tau_leak")
    syn = check_embeddings(synthetic_centres, "synthetic_centres")
    real = check_embeddings(real_centres, "real_centres")
    if not len(real):
        raise EvaluationError("real_centres is empty: nothing to check leakage against")
    if syn.shape[1] != real.shape[1]:
        raise EvaluationError(f"synthetic_centres has D={syn.shape[1]} but real_centres has "
                              f"D={real.shape[1]}")
    leaked = _mining("leakage_mask", syn.astype(np.float32), real.astype(np.float32), tau_leak)
    return LeakageResult(int(leaked.sum()), len(syn), tau_leak, leaked)


__all__ = [
    "LeakageResult", "UniquenessResult", "class_centres", "consistency", "identity_consistency",
    "intra_class_diversity", "intra_class_diversity_by_identity", "leakage", "pixel_diversity",
    "pixel_diversity_by_identity", "uniqueness",
]
