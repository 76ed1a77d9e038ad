"""ODE solvers over a variance-exploding denoiser ``D(x; sigma) -> x0_hat`` (Karras et al. 2022).

Every objective is adapted to this interface by its parameterisation
(:mod:`synthface_ray.models.parameterization`, which also owns the noise grids): an EDM model
directly, a DDPM epsilon model through ``x_t = sqrt(abar) (x + sigma eps)`` with
``sigma = sqrt((1 - abar) / abar)``. On that ODE, DDIM with eta = 0 is exactly the Euler
step (EDM sec. 3), so one solver family serves both parameterisations.

Every solver passes the **step index** explicitly (as k-diffusion's samplers hand ``i`` to their
callback): a denoiser that declares ``takes_step = True`` is called ``D(x, sigma, step=i)`` for
every evaluation of step ``i`` (Heun evaluates step ``i`` twice: at ``sigma_i`` and at
``sigma_{i+1}``), so per-step logic never has to infer a new step from the noise level. Plain
denoisers ``D(x, sigma)`` work unchanged. Every solver of :data:`SOLVERS` takes the same arguments
``(denoise, x, sigmas, eta=0, noise=None)``.

Pure torch: no Ray, no model classes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ode_derivative(denoise: Denoiser, x: torch.Tensor, sigma: torch.Tensor, step: int | None = None) -> torch.Tensor:
    """``dx/dsigma = (x - D(x; sigma)) / sigma`` (EDM eq. 3 with s(t) = 1, sigma(t) = t), the
    denoiser evaluated as part of solver step ``step`` (passed on when it declares ``takes_step``)."""
    s = sigma.to(x.dtype)
    levels = sigma.expand(x.shape[0]).to(torch.float32)
    if step is not None and getattr(denoise, "takes_step", False):
        return (x - denoise(x, levels, step=step)) / s
    return (x - denoise(x, levels)) / s


@torch.no_grad()
def sample_euler(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 0.0,
                 noise: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
    """Euler on the probability-flow ODE; equals DDIM (eta = 0) on the same noise levels.
    Deterministic: ``eta`` and ``noise`` are accepted for the common signature and not used."""
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        x = x + (s_next - s).to(x.dtype) * ode_derivative(denoise, x, s, i)
    return x


@torch.no_grad()
def sample_heun(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 0.0,
                noise: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
    """EDM's deterministic 2nd-order Heun sampler (Karras et al. 2022, Algorithm 1); both
    evaluations of step ``i`` carry ``step=i``. ``eta`` and ``noise`` are not used."""
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        d = ode_derivative(denoise, x, s, i)
        x_next = x + (s_next - s).to(x.dtype) * d
        if s_next > 0:  # 2nd-order correction, except for the last step to sigma = 0
            d_next = ode_derivative(denoise, x_next, s_next, i)
            x_next = x + (s_next - s).to(x.dtype) * (d + d_next) / 2
        x = x_next
    return x


def ancestral_step(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sigma_down, sigma_up)`` of one DDIM step with stochasticity ``eta`` in VE coordinates:
    ``sigma_up = eta sigma' sqrt((sigma^2 - sigma'^2) / sigma^2)`` is DDIM's ``sigma_t(eta)``
    (Song et al. 2021, eq. 16) divided by ``sqrt(abar_{t-1})``, and ``sigma_down =
    sqrt(sigma'^2 - sigma_up^2)`` is what remains of the predicted-noise direction. eta = 0:
    deterministic DDIM; eta = 1: DDPM's posterior variance (ancestral sampling)."""
    if eta == 0 or sigma_next == 0:
        return sigma_next, sigma_next.new_zeros(())
    up = (eta * sigma_next * ((sigma**2 - sigma_next**2) / sigma**2).sqrt()).clamp(max=sigma_next)
    return (sigma_next**2 - up**2).sqrt(), up


@torch.no_grad()
def sample_ddim(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 0.0,
                noise: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
    """DDIM (eta in [0, 1]; eta = 1 is DDPM ancestral sampling) on the VE ODE: the x0 estimate
    plus the predicted noise scaled to ``sigma_down`` plus fresh noise ``noise(step) x sigma_up``
    (k-diffusion ``sample_euler_ancestral``, which is DDIM in these coordinates)."""
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        down, up = ancestral_step(s, s_next, eta)
        d = ode_derivative(denoise, x, s, i)
        x = x + (down - s).to(x.dtype) * d
        if up > 0:
            if noise is None:
                raise ValueError("sample_ddim with eta > 0 needs a noise source")
            x = x + noise(i).to(x) * up.to(x.dtype)
    return x


SOLVERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "ddim": sample_ddim,
}

__all__ = ["SOLVERS", "ancestral_step", "ode_derivative", "sample_ddim", "sample_euler", "sample_heun"]
