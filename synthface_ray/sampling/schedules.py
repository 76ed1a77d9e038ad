"""Guidance-weight schedules ``w(t)`` of the negative condition (NegFaceDiff / AdaptDiff).

Each is a pure function of ``tau = t / T`` in [0, 1] (1 = pure noise, 0 = clean; see
:mod:`synthface_ray.sampling.composite` for how ``tau`` is defined for each model type) and of
the schedule's settings, returning the weight ``w`` in ``eps_hat = (1 + w) eps(c+) - w eps(c-)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from synthface_ray.config import ConfigError, check_choice, check_range


def constant(tau: float, w_max: float, lo: float, hi: float) -> float:
    """``w(t) = w`` (NegFaceDiff: a fixed negative weight, 0.5 best)."""
    return w_max


def linear(tau: float, w_max: float, lo: float, hi: float) -> float:
    """``w(t) = w_max (1 - t/T)`` (AdaptDiff: weak while noisy, strongest at the end; 1.0 best)."""
    return w_max * (1.0 - tau)


def linear_reverse(tau: float, w_max: float, lo: float, hi: float) -> float:
    """``w(t) = w_max t/T``: the reverse ramp (strongest while noisy)."""
    return w_max * tau


def cosine(tau: float, w_max: float, lo: float, hi: float) -> float:
    """``w(t) = w_max (1 - cos(pi (1 - t/T))) / 2``: a smooth ramp from 0 at t = T to w_max at 0."""
    return w_max * (1.0 - math.cos(math.pi * (1.0 - tau))) / 2.0


def window(tau: float, w_max: float, lo: float, hi: float) -> float:
    """``w(t) = w_max`` for ``t/T`` in ``[lo, hi]``, else 0."""
    return w_max if lo <= tau <= hi else 0.0


Schedule = Callable[[float, float, float, float], float]

#: schedule name -> w(tau, w_max, lo, hi)
SCHEDULES: dict[str, Schedule] = {
    "constant": constant, "linear": linear, "linear_reverse": linear_reverse, "cosine": cosine,
    "window": window,
}


@dataclass
class NegativeConfig:
    """The negative condition's weight schedule: ``w_max``; ``t_lo``/``t_hi`` (as ``t/T``) bound
    the ``window`` schedule. ``w_max = 0`` switches the negative term off."""

    schedule: str = "constant"
    w_max: float = 0.0
    t_lo: float = 0.0
    t_hi: float = 1.0

    def __post_init__(self) -> None:
        check_choice("negative.schedule", self.schedule, SCHEDULES)
        check_range("negative.w_max", self.w_max, 0.0)
        check_range("negative.t_lo", self.t_lo, 0.0, 1.0)
        check_range("negative.t_hi", self.t_hi, 0.0, 1.0)
        if self.t_lo > self.t_hi:
            raise ConfigError(f"negative.t_lo={self.t_lo} > negative.t_hi={self.t_hi}: the window is empty")

    def weight(self, tau: float) -> float:
        return SCHEDULES[self.schedule](tau, self.w_max, self.t_lo, self.t_hi)


__all__ = ["SCHEDULES", "NegativeConfig", "constant", "cosine", "linear", "linear_reverse", "window"]
