"""Linear CKA (Kornblith et al. 2019): identities, invariances, the independence baseline, and
agreement with the N x N kernel (HSIC) form."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from synthface_ray.mining.cka import linear_cka
from synthface_ray.mining.index import MiningError


def hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA from centred linear kernels: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))."""
    n = len(x)
    h = np.eye(n) - 1.0 / n
    k, l_ = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return float((k * l_).sum() / np.sqrt((k * k).sum() * (l_ * l_).sum()))


def related(seed: int = 0, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 32)) + 2.0
    y = x @ rng.standard_normal((32, 16)) + 3.0 * rng.standard_normal((n, 16))
    return x, y


def test_self_similarity_is_one():
    x = np.random.default_rng(1).standard_normal((3000, 64)).astype(np.float32)
    assert abs(linear_cka(x, x) - 1.0) < 1e-6
    assert abs(linear_cka(x, x[:, :10] * 1.0) - linear_cka(x[:, :10], x)) < 1e-12  # symmetric


def test_independent_representations_sit_at_the_finite_sample_baseline():
    # For independent isotropic Gaussians, E[CKA] ~ sqrt(p q) / (N sqrt((1 + p/N)(1 + q/N))):
    # 0.0310 for N = 2000, p = q = 64 (measured over 50 seeds: mean 0.0311, std 0.0007).
    n, p, q = 2000, 64, 64
    expected = np.sqrt(p * q) / (n * np.sqrt((1 + p / n) * (1 + q / n)))
    rng = np.random.default_rng(2)
    value = linear_cka(rng.standard_normal((n, p)), rng.standard_normal((n, q)))
    assert abs(value - expected) < 0.1 * expected  # ~4.5 std
    assert value < 0.05


def test_agrees_with_the_kernel_form():
    x, y = related(3, n=300)
    value = linear_cka(x, y)
    assert 0.1 < value < 0.9
    assert abs(value - hsic_cka(x, y)) < 1e-10


def test_invariant_to_orthogonal_maps_scaling_and_translation():
    x, y = related(4)
    q, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((32, 32)))
    base = linear_cka(x, y)
    for xt, yt in [(x @ q, y), (7.5 * x, y), (x, 0.01 * y), (x + 100.0, y - 3.0),
                   (x @ q * 2.0, y)]:
        assert abs(linear_cka(xt, yt) - base) < 1e-9
    # not invariant to an anisotropic scaling
    assert abs(linear_cka(x * np.linspace(0.1, 10, 32), y) - base) > 1e-3


def test_row_blocks_give_the_same_value(monkeypatch):
    x, y = related(6, n=1000)
    whole = linear_cka(x, y)
    monkeypatch.setattr(importlib.import_module("synthface_ray.mining.cka"), "BLOCK_ROWS", 97)
    assert abs(linear_cka(x, y) - whole) < 1e-12


def test_bad_inputs():
    x = np.random.default_rng(7).standard_normal((10, 4))
    with pytest.raises(MiningError, match="x has 10 rows but y has 9"):
        linear_cka(x, x[:9])
    with pytest.raises(MiningError, match="y has zero variance"):
        linear_cka(x, np.ones((10, 3)))
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(MiningError, match="x has NaN or inf"):
        linear_cka(bad, x)
    with pytest.raises(MiningError, match="2-D"):
        linear_cka(x[0], x[0])
    with pytest.raises(MiningError, match="at least 2 rows"):
        linear_cka(x[:1], x[:1])
