"""Greedy uniqueness filter (DCFace 0.3 / Vec2Face 0.4) and the leakage check, against plain
brute-force references."""

from __future__ import annotations

import numpy as np
import pytest

from synthface_ray.mining.index import MiningError
from synthface_ray.mining.uniqueness import (
    FilterReport,
    greedy_within,
    leakage_mask,
    unique_filter,
)


def unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def reference_filter(x: np.ndarray, tau: float) -> np.ndarray:
    """The rule itself, one candidate at a time: keep i iff cos(i, j) <= tau for every kept j."""
    keep = np.zeros(len(x), dtype=bool)
    kept: list[int] = []
    for i in range(len(x)):
        if all(float(x[i] @ x[j]) <= tau for j in kept):
            keep[i] = True
            kept.append(i)
    return keep


@pytest.mark.parametrize("batch", [1, 7, 64, 2048])
def test_matches_the_sequential_greedy_reference(batch):
    x = unit(300, 16, seed=3)
    keep, report = unique_filter(x, 0.3, batch=batch)
    ref = reference_filter(x, 0.3)
    assert 0 < ref.sum() < len(x)  # the threshold really rejects some
    np.testing.assert_array_equal(keep, ref)
    assert report == FilterReport(kept=int(ref.sum()), rejected=int((~ref).sum()))


def test_kept_set_is_unique_and_counts_add_up():
    x = unit(3000, 32, seed=4)
    keep, report = unique_filter(x, 0.4, batch=256)
    kept = x[keep].astype(np.float64)
    sims = kept @ kept.T
    np.fill_diagonal(sims, -1)
    assert sims.max() <= 0.4
    assert report.kept == keep.sum() and report.kept + report.rejected == len(x)
    assert report.rejected > 0
    # every rejected candidate conflicts with an earlier kept one (greedy, not "fewer than")
    earlier = np.arange(len(x))
    for r in np.flatnonzero(~keep)[:50]:
        assert (x[r] @ x[keep & (earlier < r)].T).max() > 0.4


def test_duplicates_are_rejected_and_non_unit_input_is_normalised():
    x = unit(50, 8, seed=5)
    dup = np.concatenate([x, x[:10] * 3.0])  # scaled copies: same direction, cos = 1
    keep, _ = unique_filter(dup, 0.99)
    assert keep[:50].all() and not keep[50:].any()
    keep_scaled, _ = unique_filter(x * 7.0, 0.3)
    np.testing.assert_array_equal(keep_scaled, unique_filter(x, 0.3)[0])


def test_greedy_within_keeps_chains_correctly():
    # 0 conflicts with 1, 1 with 2: greedy keeps 0, rejects 1, so 2 survives
    sims = np.array([[1, 0.9, 0.0], [0.9, 1, 0.9], [0.0, 0.9, 1]])
    np.testing.assert_array_equal(greedy_within(sims, 0.5), [True, False, True])


@pytest.mark.parametrize("tau", [-1, 1, 1.5, float("nan"), "x"])
def test_tau_outside_the_open_interval(tau):
    with pytest.raises(MiningError, match="tau="):
        unique_filter(unit(5, 4), tau)


def test_empty_and_bad_batch():
    keep, report = unique_filter(np.zeros((0, 4), np.float32), 0.3)
    assert keep.shape == (0,) and report == FilterReport(0, 0)
    with pytest.raises(MiningError, match="batch"):
        unique_filter(unit(5, 4), 0.3, batch=0)


def test_leakage_rejects_exactly_the_too_similar():
    centres = unit(40, 16, seed=6)
    cand = unit(500, 16, seed=7)
    reject, report = leakage_mask(cand, centres, 0.5)
    ref = (cand.astype(np.float64) @ centres.T.astype(np.float64)).max(axis=1) > 0.5
    assert 0 < ref.sum() < len(cand)
    np.testing.assert_array_equal(reject, ref)
    assert report == FilterReport(kept=int((~ref).sum()), rejected=int(ref.sum()))


def test_leakage_checks_inputs():
    with pytest.raises(MiningError, match="dimension mismatch between sources: candidates has "
                                          "D=8 but real_centers has D=16"):
        leakage_mask(unit(5, 8), unit(5, 16), 0.3)
    with pytest.raises(MiningError, match="tau_leak"):
        leakage_mask(unit(5, 8), unit(5, 8), 1.0)
    bad = unit(5, 8)
    bad[2] = np.nan
    with pytest.raises(MiningError, match="real_centers row 2 has NaN"):
        leakage_mask(unit(5, 8), bad, 0.3)
    reject, report = leakage_mask(unit(5, 8), np.zeros((0, 8), np.float32), 0.3)
    assert not reject.any() and report == FilterReport(5, 0)
