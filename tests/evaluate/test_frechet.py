"""The Fréchet distance against its closed forms: equal Gaussians, diagonal covariances (the
trace term becomes sum (sqrt(a) - sqrt(b))^2), commuting covariances, and sample estimates."""

from __future__ import annotations

import numpy as np
import pytest

from synthface_ray.evaluate.frechet import (
    GaussianStats,
    frechet_distance,
    frechet_distance_of,
    gaussian_stats,
)
from synthface_ray.evaluate.separability import EvaluationError


def _stats(mu, sigma) -> GaussianStats:
    return GaussianStats(np.asarray(mu, float), np.asarray(sigma, float), 1000)


def test_identical_gaussians_are_at_distance_zero():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    s = _stats(rng.standard_normal(6), a @ a.T + np.eye(6))
    assert frechet_distance(s, s) == pytest.approx(0.0, abs=1e-9)


def test_diagonal_covariances_match_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(_stats(mu1, np.diag(v1)), _stats(mu2, np.diag(v2))) == pytest.approx(want, rel=1e-10)


def test_commuting_covariances_match_the_closed_form():
    """Sigma_i = Q diag(l_i) Q^T share eigenvectors: Tr((S1 S2)^1/2) = sum sqrt(l1 l2)."""
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((5, 5)))
    l1, l2 = np.array([0.5, 1, 2, 3, 4]), np.array([4, 3, 2, 1, 0.5])
    s1, s2 = q @ np.diag(l1) @ q.T, q @ np.diag(l2) @ q.T
    want = np.sum(l1) + np.sum(l2) - 2 * np.sum(np.sqrt(l1 * l2))
    assert frechet_distance(_stats(np.zeros(5), s1), _stats(np.zeros(5), s2)) == pytest.approx(want, rel=1e-8)


def test_sample_estimate_converges_to_the_closed_form():
    rng = np.random.default_rng(2)
    mu1, mu2, v1, v2 = np.zeros(4), np.full(4, 0.5), np.array([1, 2, 3, 4.0]), np.ones(4)
    x = rng.normal(mu1, np.sqrt(v1), (200_000, 4))
    y = rng.normal(mu2, np.sqrt(v2), (200_000, 4))
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance_of(x, y) == pytest.approx(want, rel=0.02)


def test_rank_deficient_covariances_still_give_a_number():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((5, 16)), rng.standard_normal((5, 16)) + 1  # N < D: singular estimates
    d = frechet_distance_of(x, y)
    assert np.isfinite(d) and d > 0


@pytest.mark.parametrize("a, b, message", [
    (np.zeros((1, 3)), np.zeros((4, 3)), "N >= 2"),
    (np.full((3, 2), np.nan), np.zeros((3, 2)), "NaN"),
    (np.zeros((3, 2)), np.zeros((3, 4)), "feature dimensions differ"),
])
def test_bad_features_are_named(a, b, message):
    with pytest.raises(EvaluationError, match=message):
        frechet_distance_of(a, b)


def test_gaussian_stats_is_the_unbiased_estimate():
    x = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    s = gaussian_stats(x)
    assert s.n == 3 and np.allclose(s.mu, [2, 4]) and np.allclose(s.sigma, np.cov(x, rowvar=False))
