"""Benchmark statistics: t intervals against known quantiles, pairing by seed, gap closed, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthface_ray.benchmark.stats import (
    bootstrap_difference,
    gap_closed,
    paired_difference,
    t_interval,
    verdict,
)


def test_t_interval_matches_the_textbook_quantile():
    iv = t_interval([1.0, 2.0, 3.0])
    assert iv.mean == 2.0 and iv.std == pytest.approx(1.0) and iv.n == 3
    half = 4.302652729911275 / math.sqrt(3)  # t_{0.975, 2}
    assert (iv.low, iv.high) == (pytest.approx(2 - half), pytest.approx(2 + half))
    big = t_interval(np.random.default_rng(0).normal(0.5, 0.1, 10_000))
    assert big.high - big.low == pytest.approx(2 * 1.96 * big.std / 100, rel=1e-3)  # t -> normal


def test_one_value_has_no_interval_and_bad_input_is_refused():
    iv = t_interval([0.7])
    assert iv.mean == 0.7 and not iv.resolved and math.isnan(iv.low)
    assert verdict(iv) == "one seed: noise unknown"
    with pytest.raises(ValueError):
        t_interval([])
    with pytest.raises(ValueError, match="non-finite"):
        t_interval([0.5, float("nan")])


def test_paired_difference_pairs_by_seed_and_removes_the_shared_part():
    ref = {0: 0.80, 1: 0.90, 2: 0.70}
    arm = {0: 0.82, 1: 0.92, 2: 0.71, 7: 0.10}  # seed 7 has no partner: ignored
    d = paired_difference(arm, ref)
    assert d.n == 3 and d.mean == pytest.approx((0.02 + 0.02 + 0.01) / 3)
    assert d.excludes(0.0) and verdict(d) == "better"
    unpaired = t_interval([0.82, 0.92, 0.71]).low - t_interval([0.80, 0.90, 0.70]).high
    assert unpaired < 0  # unpaired intervals overlap: pairing is what resolves the difference
    assert verdict(d, higher_is_better=False) == "worse"
    noisy = paired_difference({0: 0.9, 1: 0.7, 2: 0.85}, {0: 0.8, 1: 0.8, 2: 0.8})
    assert verdict(noisy) == "within noise"
    with pytest.raises(ValueError, match="share no seed"):
        paired_difference({0: 1.0}, {1: 1.0})


def test_gap_closed_is_zero_at_the_floor_and_one_at_the_reference():
    assert gap_closed(0.724, 0.724, 0.977) == 0.0
    assert gap_closed(0.977, 0.724, 0.977) == 1.0
    assert gap_closed(0.798, 0.724, 0.977) == pytest.approx(0.2925, abs=1e-4)
    assert math.isnan(gap_closed(0.8, 0.7, 0.7))


def test_bootstrap_difference_pairs_replicates_and_refuses_unequal_lists():
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 1.0, 400)  # the identities drawn: a large swing both sets share
    d = bootstrap_difference(3.0, 1.0, 3.0 + shared + rng.normal(0, 0.01, 400), 1.0 + shared, n=50)
    assert d.mean == 2.0 and d.n == 50 and d.resolved and d.high - d.low < 0.1 and d.low < 2.0 < d.high
    with pytest.raises(ValueError, match="equal 1-D replicate lists"):
        bootstrap_difference(1.0, 0.0, [1.0, 2.0], [1.0], n=3)
