"""ODE solvers over a variance-exploding denoiser ``D(x; sigma) -> x0_hat`` (Karras et al. 2022).

Every objective is adapted to this interface (:meth:`synthface_ray.models.objectives.Objective.
ve_denoiser`): an EDM model directly, a DDPM epsilon model through ``x_t = sqrt(abar) (x + sigma
eps)`` with ``sigma = sqrt((1 - abar) / abar)``. On that ODE, DDIM with eta = 0 is exactly the Euler
step (EDM sec. 3), so one solver family serves both parameterisations.

Pure torch: no Ray, no model classes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """``sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``
    for i < n, then ``sigma_n = 0`` (EDM eq. 5); float64, length ``n + 1``."""
    if n < 1:
        raise ValueError(f"number of sampling steps must be >= 1, got {n}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def ode_derivative(denoise: Denoiser, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``dx/dsigma = (x - D(x; sigma)) / sigma`` (EDM eq. 3 with s(t) = 1, sigma(t) = t)."""
    s = sigma.to(x.dtype)
    return (x - denoise(x, sigma.expand(x.shape[0]).to(torch.float32))) / s


@torch.no_grad()
def sample_euler(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Euler on the probability-flow ODE; equals DDIM (eta = 0) on the same noise levels."""
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x = x + (s_next - s).to(x.dtype) * ode_derivative(denoise, x, s)
    return x


@torch.no_grad()
def sample_heun(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """EDM's deterministic 2nd-order Heun sampler (Karras et al. 2022, Algorithm 1)."""
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        d = ode_derivative(denoise, x, s)
        x_next = x + (s_next - s).to(x.dtype) * d
        if s_next > 0:  # 2nd-order correction, except for the last step to sigma = 0
            d_next = ode_derivative(denoise, x_next, s_next)
            x_next = x + (s_next - s).to(x.dtype) * (d + d_next) / 2
        x = x_next
    return x


SOLVERS: dict[str, Callable[[Denoiser, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "euler": sample_euler,
    "heun": sample_heun,
}

__all__ = ["SOLVERS", "karras_sigmas", "ode_derivative", "sample_euler", "sample_heun"]
