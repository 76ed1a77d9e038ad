"""Identity bootstrap of a set's one-number metrics (EER and FDR of the generated set, Fréchet
distance): the noise a set-level figure carries because the set holds these identities and not
others (Efron & Tibshirani 1993, ch. 6, the bootstrap of a statistic; resampling whole identities,
the sampling unit of a face set, as a cluster bootstrap does).

Each replicate draws the set's identities with replacement and recomputes the metric on their
images: a drawn identity brings all its images; within-identity pairs of each draw are genuine,
pairs of images of different *original* identities are impostors (two draws of one identity are
never scored as impostors). Impostors are a uniform sample of ``impostor`` pairs per replicate.

Paired by construction: replicate r draws identity *positions* in the sorted list of labels from
``seed``, so two sets of the same identities (two samplers on one plan) resample the same people
in each replicate, and the replicate-wise differences give a paired percentile interval
(``synthface_ray.benchmark.stats.bootstrap_difference``). :func:`identities_key` says whether
two sets' replicates may be paired. Pure numpy; no Ray, no models.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from synthface_ray.evaluate.frechet import GaussianStats, frechet_distance, gaussian_stats
from synthface_ray.evaluate.separability import (
    EvaluationError,
    check_labels,
    genuine_scores,
    sample_impostor_scores,
    separability_from_scores,
    unit_rows,
)


def identities_key(labels) -> str:
    """A digest of the sorted distinct labels: two sets whose keys (and replicate count and seed)
    agree resampled the same identities replicate by replicate."""
    ids = np.unique(np.asarray(labels)).astype(str)
    return hashlib.sha256("\n".join(ids.tolist()).encode()).hexdigest()[:16]


def identity_draws(n_identities: int, replicates: int, seed: int) -> np.ndarray:
    """(replicates, n_identities) positions in the sorted identities, drawn with replacement."""
    if replicates < 1 or n_identities < 2:
        raise EvaluationError(f"a bootstrap needs >= 1 replicate and >= 2 identities "
                              f"(got {replicates} and {n_identities})")
    return np.random.default_rng(seed).integers(0, n_identities, (replicates, n_identities))


def _grouped(labels) -> tuple[np.ndarray, np.ndarray]:
    """Row order grouping the images by sorted identity, and each identity's bounds in it."""
    _, codes, counts = check_labels(labels)
    return np.argsort(codes, kind="stable"), np.r_[0, np.cumsum(counts)]


def _rows_of(draw: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grouped rows of the drawn identities (in draw order) and each row's original identity."""
    sizes = np.diff(bounds)[draw]
    starts = np.repeat(bounds[draw] - np.r_[0, np.cumsum(sizes)[:-1]], sizes)
    return starts + np.arange(sizes.sum()), np.repeat(draw, sizes)


def separability_replicates(embeddings, labels, draws: np.ndarray, impostor: int, seed: int,
                            on_replicate: Callable[[], object] | None = None) -> dict[str, list[float]]:
    """EER and FDR of every replicate ``draws`` (from :func:`identity_draws`): all genuine pairs
    of each drawn identity, ``impostor`` sampled pairs of different original identities."""
    order, bounds = _grouped(labels)
    x = unit_rows(np.asarray(embeddings, np.float32), order)
    out: dict[str, list[float]] = {"generated_eer": [], "fdr": []}
    for r, draw in enumerate(draws):
        rows, origin = _rows_of(draw, bounds)
        sizes = np.diff(bounds)[draw]
        genuine = genuine_scores(x[rows], np.r_[0, np.cumsum(sizes)])
        res = separability_from_scores(genuine, sample_impostor_scores(x[rows], origin, impostor, seed + r),
                                       mode="sampled")
        out["generated_eer"].append(float(res.eer))
        out["fdr"].append(float(res.fdr))
        if on_replicate:
            on_replicate()
    return out


def frechet_replicates(features, labels, reference: GaussianStats, draws: np.ndarray,
                       on_replicate: Callable[[], object] | None = None) -> list[float]:
    """The Fréchet distance to the fixed ``reference`` Gaussian of every replicate's images."""
    order, bounds = _grouped(labels)
    x, out = np.asarray(features, np.float64)[order], []
    for draw in draws:
        out.append(frechet_distance(gaussian_stats(x[_rows_of(draw, bounds)[0]]), reference))
        if on_replicate:
            on_replicate()
    return out


def basic_interval(point: float, replicates, level: float = 0.95) -> tuple[float, float]:
    """The basic (reverse-percentile) bootstrap interval of a statistic ``point`` from its
    ``replicates``: [2 point - q_{(1+level)/2}, 2 point - q_{(1-level)/2}] (Davison & Hinkley 1997,
    eq. 5.6). Unlike the plain percentile interval it corrects a bias the resampling adds, as the
    duplicated identities of a replicate add to a Fréchet distance."""
    reps = np.asarray(replicates, np.float64)
    if reps.ndim != 1 or reps.size < 2 or not np.isfinite(reps).all():
        raise EvaluationError(f"a bootstrap interval needs >= 2 finite replicates, got {reps.size}")
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return 2 * point - float(hi), 2 * point - float(lo)


def bootstrap_metrics(embeddings, labels, replicates: int, seed: int, impostor: int,
                      frechet: tuple[np.ndarray, np.ndarray] | None = None,
                      on_replicate: Callable[[], object] | None = None) -> dict:
    """``metrics.json``'s ``bootstrap`` section: the replicates of the set's EER and FDR (over
    ``embeddings``/``labels``) and, given ``frechet`` = (the same images' Fréchet features, the
    reference features), of the Fréchet distance (and ``frechet_point``, the distance of exactly
    these images); with what pairs them (key, replicates, seed).
    ``on_replicate`` is called after each replicate of each metric group (progress)."""
    draws = identity_draws(len(np.unique(np.asarray(labels))), replicates, seed)
    out = {"replicates": int(replicates), "seed": int(seed), "identities": int(draws.shape[1]),
           "identities_key": identities_key(labels),
           **separability_replicates(embeddings, labels, draws, impostor, seed, on_replicate)}
    if frechet is not None:
        feats, ref = frechet
        stats = gaussian_stats(ref)
        out["frechet"] = frechet_replicates(feats, labels, stats, draws, on_replicate)
        # the statistic on exactly the resampled images (the report's distance uses every image,
        # which differs when the separability section samples fewer): what the interval centres on
        out["frechet_point"] = frechet_distance(gaussian_stats(feats), stats)
    return out


__all__ = ["basic_interval", "bootstrap_metrics", "frechet_replicates", "identities_key", "identity_draws",
           "separability_replicates"]
