"""The t/T that guidance schedules and UIFace's two-stage switch read (``tau``), for both kinds of model."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler

from synthface_ray.models.parameterization import (
    DiscreteEps,
    EDMPrecond,
    karras_sigmas,
    vp_t_of_sigma,
)


def ddpm_sigmas() -> torch.Tensor:
    """sigma_t of DDPM's linear schedule (betas 1e-4..0.02, T = 1000), from diffusers' own scheduler."""
    abar = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").alphas_cumprod.double()
    return ((1 - abar) / abar).sqrt()


def test_edm_tau_is_the_ddpm_time_of_the_same_noise_level():
    """An EDM model reads a schedule in t/T at the noise level a DDPM model (the papers') would."""
    sigmas, edm = ddpm_sigmas(), EDMPrecond()
    for t in range(0, 1000, 7):
        assert edm.tau(float(sigmas[t])) == pytest.approx(t / 1000, abs=0.005), t
    assert edm.tau(3.42) == pytest.approx(0.5, abs=0.002)  # UIFace's t0 = 500 of 1000


def test_vp_t_of_sigma_inverts_edm_table_1_vp_sigma():
    beta_d, beta_min = 19.9, 0.1
    for t in torch.linspace(1e-3, 1, 50).tolist():
        sigma = math.sqrt(math.exp(0.5 * beta_d * t**2 + beta_min * t) - 1)
        assert vp_t_of_sigma(sigma) == pytest.approx(t, rel=1e-9)
    assert vp_t_of_sigma(1e4) == 1.0


@pytest.mark.parametrize("param", [EDMPrecond(), DiscreteEps(torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0))],
                         ids=["edm", "ddpm"])
def test_tau_falls_with_the_noise_level_and_is_zero_only_at_zero(param):
    grid = param.sigmas(30)
    taus = [param.tau(float(s)) for s in grid]
    assert all(a > b for a, b in zip(taus[:-2], taus[1:-1])), taus
    assert taus[-1] == 0.0 and 0 < taus[0] <= 1


def test_edm_grid_spans_most_of_the_ddpm_range():
    """EDM's default grid (sigma 80 .. 0.002) starts at DDPM t/T 0.93 and ends near 0: a fixed UIFace
    t0 or an AdaptDiff ramp lands inside it, where the paper puts it."""
    taus = [EDMPrecond().tau(float(s)) for s in karras_sigmas(10, 0.002, 80.0)[:-1]]
    assert taus[0] == pytest.approx(0.9335, abs=1e-3)
    assert 0 < taus[-1] < 1e-3
