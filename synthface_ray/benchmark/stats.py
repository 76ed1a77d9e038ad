"""Statistics of a benchmark over seeds: mean, sample standard deviation and Student-t
confidence interval of one arm; the paired difference of two arms (seed by seed); the
gap-closed ratio. Pure numpy/scipy; no Ray, no models."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from synthface_ray.evaluate.bootstrap import basic_interval

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """``mean`` of ``n`` values, their sample std (ddof 1) and the two-sided ``level`` Student-t
    interval of the mean (NaN bounds when n < 2: one seed says nothing about noise)."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    @property
    def resolved(self) -> bool:
        return self.n >= 2 and math.isfinite(self.low)

    def excludes(self, value: float = 0.0) -> bool:
        """Whether the interval lies wholly above or below ``value``."""
        return self.resolved and (self.low > value or self.high < value)


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean +- t_{(1+level)/2, n-1} * s / sqrt(n) (the interval of a mean from a small sample)."""
    from scipy import stats

    x = np.asarray(values, np.float64)
    if x.ndim != 1 or not x.size:
        raise ValueError("t_interval needs a non-empty 1-D sample")
    if not np.isfinite(x).all():
        raise ValueError(f"t_interval got non-finite values: {x.tolist()}")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, math.nan, math.nan, math.nan, 1)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, x.size - 1)) * std / math.sqrt(x.size)
    return Interval(mean, std, mean - half, mean + half, int(x.size))


def paired_difference(arm: Mapping[int, float], reference: Mapping[int, float],
                      level: float = LEVEL) -> Interval:
    """The interval of mean(arm[s] - reference[s]) over the seeds both have (a paired t
    interval: each seed shares the backbone initialisation and the test pairs, so the pairing
    removes that part of the noise)."""
    seeds = sorted(set(arm) & set(reference))
    if not seeds:
        raise ValueError("paired_difference: the two arms share no seed")
    return t_interval([arm[s] - reference[s] for s in seeds], level)


def bootstrap_difference(arm: float, reference: float, arm_replicates: Sequence[float],
                         reference_replicates: Sequence[float], n: int, level: float = LEVEL) -> Interval:
    """The interval of ``arm - reference`` (two sets' one-number metrics) from their paired
    bootstrap replicates (replicate r of both resampled the same identities): the basic bootstrap
    interval of the replicate-wise differences (:func:`synthface_ray.evaluate.bootstrap.basic_interval`);
    ``std`` their spread, ``n`` the identities resampled."""
    a, b = (np.asarray(v, np.float64) for v in (arm_replicates, reference_replicates))
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"bootstrap_difference needs two equal 1-D replicate lists, got {a.shape} and {b.shape}")
    d = float(arm - reference)
    low, high = basic_interval(d, a - b, level)
    return Interval(d, float((a - b).std(ddof=1)), low, high, int(n))


def gap_closed(arm: float, floor: float, reference: float) -> float:
    """(arm - floor) / (reference - floor): 0 at the floor (random init), 1 at the reference
    (e.g. real data); NaN when the reference does not beat the floor."""
    gap = reference - floor
    return (arm - floor) / gap if abs(gap) > 1e-12 else math.nan


def verdict(diff: Interval, higher_is_better: bool = True) -> str:
    """Plain words for a paired difference: better / worse than the reference when its interval
    excludes 0, else within noise (or not resolved with one seed)."""
    if not diff.resolved:
        return "one seed: noise unknown"
    if not diff.excludes(0.0):
        return "within noise"
    up = diff.mean > 0
    return "better" if up == higher_is_better else "worse"


__all__ = ["Interval", "LEVEL", "gap_closed", "paired_difference", "t_interval", "verdict"]
