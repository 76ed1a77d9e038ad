"""Negative conditions (NegFaceDiff / AdaptDiff: Far, Close, Mid, Rand, Null) against
brute-force numpy references."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from synthface_ray.mining.index import MiningError
from synthface_ray.mining.negatives import NEGATIVE_STRATEGIES, mid_window, negatives


def unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def sorted_others(x: np.ndarray, i: int) -> list[int]:
    """Row i's others, ascending cosine (float64), ties by index."""
    sims = x.astype(np.float64) @ x[i].astype(np.float64)
    return sorted((j for j in range(len(x)) if j != i), key=lambda j: (sims[j], j))


def reference_mid(x: np.ndarray, k: int) -> np.ndarray:
    """Mid: in the ascending sort of the L = N-1 others, the k consecutive entries centred on
    the lower median position (L-1)//2 (for even k one more above than below), clipped."""
    out = []
    for i in range(len(x)):
        row = sorted_others(x, i)
        centre = (len(row) - 1) // 2
        start = min(max(centre - (k - 1) // 2, 0), len(row) - k)
        out.append(row[start:start + k])
    return np.array(out)


@pytest.mark.parametrize("k", [1, 3])
def test_far_and_close_match_brute_force(k):
    x = unit(120, 16, seed=1)
    far, close = negatives(x, "far", k), negatives(x, "close", k)
    assert far.dtype == close.dtype == np.int64 and far.shape == close.shape == (120, k)
    for i in range(len(x)):
        row = sorted_others(x, i)
        assert far[i].tolist() == row[:k]  # lowest cosine first
        assert close[i].tolist() == row[::-1][:k]  # highest first


@pytest.mark.parametrize("n", [60, 61])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_mid_matches_brute_force(n, k):
    x = unit(n, 16, seed=2)
    np.testing.assert_array_equal(negatives(x, "mid", k), reference_mid(x, k))


def test_mid_window_definition_and_blocking(monkeypatch):
    assert mid_window(4, 1) == (1, 2)  # positions 0 1 2 3: lower median 1
    assert mid_window(4, 2) == (1, 3)
    assert mid_window(4, 3) == (0, 3)
    assert mid_window(5, 4) == (1, 5) and mid_window(5, 5) == (0, 5)
    x = unit(50, 8, seed=3)
    whole = negatives(x, "mid", 3)
    # the package re-exports the function `negatives`, which shadows the submodule attribute
    module = importlib.import_module("synthface_ray.mining.negatives")
    monkeypatch.setattr(module, "MID_BLOCK_BYTES", 7 * 4 * 50)  # blocks of 7 rows
    np.testing.assert_array_equal(negatives(x, "mid", 3), whole)
    np.testing.assert_array_equal(negatives(x[:5], "mid", 4), reference_mid(x[:5], 4))


@pytest.mark.parametrize("strategy", ["far", "close", "mid", "random"])
def test_self_never_chosen_and_in_range(strategy):
    x = np.concatenate([unit(30, 8, seed=4)] * 2)  # duplicated rows: ties with self
    idx = negatives(x, strategy, k=5)
    assert idx.shape == (60, 5) and idx.dtype == np.int64
    assert (idx != np.arange(60)[:, None]).all()
    assert ((idx >= 0) & (idx < 60)).all()
    assert all(len(set(row)) == 5 for row in idx.tolist())


def test_random_is_seeded_and_uniform():
    x = unit(200, 8, seed=5)
    a, b = negatives(x, "random", 4, seed=1), negatives(x, "random", 4, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, negatives(x, "random", 4, seed=2))
    small = unit(4, 8)
    picks = np.array([negatives(small, "random", 1, seed=s)[0, 0] for s in range(600)])
    freq = np.bincount(picks, minlength=4) / len(picks)
    assert freq[0] == 0
    np.testing.assert_allclose(freq[1:], 1 / 3, atol=0.07)  # ~3.6 sigma for 600 draws
    assert set(negatives(small, "random", 3)[0].tolist()) == {1, 2, 3}


def test_null_is_minus_one():
    idx = negatives(unit(10, 4), "null", k=2)
    assert idx.dtype == np.int64 and idx.shape == (10, 2) and (idx == -1).all()


def test_bad_inputs():
    x = unit(10, 4)
    with pytest.raises(MiningError, match=r"unknown negative strategy 'median'.*far, close, mid, "
                                          r"random, null"):
        negatives(x, "median")
    with pytest.raises(MiningError, match=r"k=10 .*N-1 = 9"):
        negatives(x, "far", k=10)
    with pytest.raises(MiningError, match=r"k=0"):
        negatives(x, "close", k=0)
    x[4] = 0
    with pytest.raises(MiningError, match="emb row 4 is a zero vector"):
        negatives(x, "far")
    assert set(NEGATIVE_STRATEGIES) == {"far", "close", "mid", "random", "null"}
