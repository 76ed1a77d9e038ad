"""VE solvers and guidance: invariants shared by every solver, checked against the exact
denoiser of a Gaussian data distribution (whose probability-flow ODE has a closed form)."""

from __future__ import annotations

import pytest
import torch

from synthface_ray.models.objectives import EDM, DDPMEps
from synthface_ray.models.parameterization import karras_sigmas
from synthface_ray.sampling.solvers import SOLVERS

MU, S = 0.3, 0.5  # data ~ N(MU, S^2) per pixel


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """E[x0 | x] for x0 ~ N(MU, S^2), x = x0 + sigma n."""
    s2 = sigma.to(x.dtype).reshape(-1, *[1] * (x.ndim - 1)) ** 2
    return MU + S**2 / (S**2 + s2) * (x - MU)


def test_karras_sigmas_shape_and_ends():
    sig = karras_sigmas(10, 0.002, 80.0)
    assert sig.shape == (11,) and sig[-1] == 0
    assert torch.isclose(sig[0], torch.tensor(80.0, dtype=torch.float64))
    assert torch.isclose(sig[-2], torch.tensor(0.002, dtype=torch.float64))
    assert (sig[:-1] > sig[1:]).all()
    with pytest.raises(ValueError, match="steps"):
        karras_sigmas(0, 0.002, 80)


ORDER = {"euler": 1, "ddim": 1, "heun": 2}  # ddim at its default eta = 0 is Euler


def _error(name: str, steps: int) -> float:
    """Max error at sigma = 0 against the exact flow of x_T = 80 z:
    x(0) = MU + S (x_T - MU) / sqrt(S^2 + 80^2)."""
    z = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = MU + S * (80 * z - MU) / (S**2 + 80**2) ** 0.5
    out = SOLVERS[name](gaussian_denoiser, z * 80, karras_sigmas(steps, 0.002, 80.0))
    return float((out - exact).abs().max())


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_solver_converges_to_the_exact_flow_at_its_order(name):
    """Doubling the steps divides the error by 2^order (measured: Euler 1.98, Heun 4.2-4.5)."""
    assert set(ORDER) == set(SOLVERS)
    errors = [_error(name, n) for n in (40, 80, 160)]
    for coarse, fine in zip(errors, errors[1:]):
        assert coarse / fine == pytest.approx(2 ** ORDER[name], rel=0.2), errors
    assert errors[-1] < (0.03 if ORDER[name] == 1 else 1e-3), errors


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_solver_passes_its_step_index_to_each_evaluation(name):
    """A denoiser that declares ``takes_step`` gets ``step=i`` at every evaluation of step i (Heun's
    correction too, none after the last step to sigma 0); a plain one is called without it."""
    seen: list[int] = []

    def stepped(x, sigma, step):
        seen.append(step)
        return gaussian_denoiser(x, sigma)

    stepped.takes_step = True
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80
    sigmas = karras_sigmas(4, 0.002, 80.0)
    out = SOLVERS[name](stepped, x, sigmas)
    assert seen == ([0, 0, 1, 1, 2, 2, 3] if name == "heun" else [0, 1, 2, 3])
    assert torch.equal(out, SOLVERS[name](gaussian_denoiser, x, sigmas))


def test_ddpm_ve_denoiser_scales_input_and_recovers_x0():
    obj = DDPMEps()
    x0 = torch.randn(3, 3, 4, 4)
    eps = torch.randn(3, 3, 4, 4)
    sigma = torch.tensor([0.1, 1.0, 20.0])
    s = sigma.reshape(-1, 1, 1, 1)
    seen = {}

    def oracle(x_in, t, context=None, source=None, omega=None):
        seen["t"] = t
        return (x_in * (1 + s**2).sqrt() - x0) / s  # the eps implied by x_t = x_ve / sqrt(1 + s^2)

    out = obj.parameterization().denoiser(oracle)(x0 + s * eps, sigma, None)
    assert torch.allclose(out, x0, atol=1e-5)
    assert torch.allclose(seen["t"].double(), obj.t_of_sigma(sigma), atol=1e-4)
    lo, hi = obj.sigma_range()
    assert lo == pytest.approx(float(obj.sigma_of_t(torch.tensor(0)))) and hi > 100


def test_edm_ve_denoiser_is_the_preconditioned_denoiser():
    obj = EDM()
    net = torch.nn.Conv2d(3, 3, 1)
    wrapped = lambda x, c, context=None, source=None, omega=None: net(x)  # noqa: E731
    x, sigma = torch.randn(2, 3, 4, 4), torch.tensor([0.5, 3.0])
    with torch.no_grad():
        assert torch.equal(obj.parameterization().denoiser(wrapped)(x, sigma, None), obj.denoise(wrapped, x, sigma))


def test_ddim_eta_noise_levels_match_ddim_sigma_t():
    """sigma_up is DDIM's sigma_t(eta) (eq. 16) in VE coordinates; down^2 + up^2 = sigma'^2."""
    from synthface_ray.models.parameterization import sigma_of_abar
    from synthface_ray.sampling.solvers import ancestral_step

    abar_t, abar_prev = torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.6, dtype=torch.float64)
    s, s_next = sigma_of_abar(abar_t), sigma_of_abar(abar_prev)
    for eta in (0.0, 0.5, 1.0):
        down, up = ancestral_step(s, s_next, eta)
        ddim = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).sqrt()
        assert up.item() == pytest.approx((ddim / abar_prev.sqrt()).item(), rel=1e-12)
        assert (down**2 + up**2).item() == pytest.approx((s_next**2).item(), rel=1e-12)
