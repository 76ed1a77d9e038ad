"""Fréchet distance between two sets of features (Heusel et al. 2017, "GANs trained by a two
time-scale update rule converge to a local Nash equilibrium", eq. 6; the 2-Wasserstein distance
between Gaussians, Dowson & Landau 1982):

    d^2((mu_1, Sigma_1), (mu_2, Sigma_2)) = |mu_1 - mu_2|^2 + Tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^(1/2))

FID uses Inception-v3 pool features; here the features are those of a model the user names (an FR
export's L2-normalised embeddings by default: ``synthface evaluate --set frechet.reference=...``),
so the number is comparable only between runs that use the same features. Pure numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthface_ray.evaluate.separability import EvaluationError

#: added to both covariances' diagonals when their product has no finite square root (as the
#: reference FID implementation, pytorch-fid, does), so that near-singular estimates still give a number
SQRTM_EPS = 1e-6


@dataclass(frozen=True)
class GaussianStats:
    """Mean ``mu`` (D,) and covariance ``sigma`` (D, D) of ``n`` feature vectors."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def gaussian_stats(features) -> GaussianStats:
    """Mean and unbiased covariance (float64) of ``features`` (N, D), N >= 2, all finite."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise EvaluationError(f"features must be (N >= 2, D >= 1), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise EvaluationError("features contain NaN or infinity")
    return GaussianStats(x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False)), int(x.shape[0]))


def _sqrtm_product(s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """``(Sigma_1 Sigma_2)^(1/2)``, real part (scipy's ``sqrtm``; the eps offset when the product
    is singular). Raises :class:`EvaluationError` on a large imaginary part."""
    from scipy import linalg

    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(s1)) * SQRTM_EPS
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise EvaluationError(f"the covariance product's square root has an imaginary component "
                                  f"{np.abs(covmean.imag).max():.3g}: the covariances are not PSD")
        covmean = covmean.real
    return covmean


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """``|mu_a - mu_b|^2 + Tr(Sigma_a + Sigma_b - 2 (Sigma_a Sigma_b)^(1/2))`` (Heusel et al. 2017,
    eq. 6); >= 0 up to rounding (clipped at 0)."""
    if a.mu.shape != b.mu.shape:
        raise EvaluationError(f"feature dimensions differ: {a.mu.shape[0]} vs {b.mu.shape[0]} "
                              "(both sets must be embedded by the same model)")
    diff = a.mu - b.mu
    value = diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * np.trace(_sqrtm_product(a.sigma, b.sigma))
    return max(float(value), 0.0)


def frechet_distance_of(features_a, features_b) -> float:
    """The Fréchet distance between the Gaussians fitted to two feature sets (N_a, D), (N_b, D)."""
    return frechet_distance(gaussian_stats(features_a), gaussian_stats(features_b))


__all__ = ["GaussianStats", "SQRTM_EPS", "frechet_distance", "frechet_distance_of", "gaussian_stats"]
