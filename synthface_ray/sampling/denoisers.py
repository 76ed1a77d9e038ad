"""Model parameterisations adapted to one interface: a VE denoiser ``D(x; sigma, context)``.

The network follows diffusers' call convention, ``net(sample, timestep,
encoder_hidden_states=..., class_labels=...)`` returning an object with ``.sample`` (or a bare
tensor), so any compatible network plugs in:

* :class:`DiscreteEps`: epsilon prediction at timesteps ``0..T-1`` of a ``alphas_cumprod`` table
  (DDPM; IDiff-Face, UIFace, NegFaceDiff). ``x_t = sqrt(abar) (x + sigma eps)`` with
  ``sigma = sqrt((1 - abar) / abar)``; ``D(x; sigma) = x - sigma eps(x / sqrt(1 + sigma^2), t(sigma))``
  (k-diffusion's ``DiscreteEpsDDPMDenoiser``).
* :class:`EDMPrecond`: a raw network ``F`` under EDM preconditioning (Karras et al. 2022, eq. 7,
  Table 1): ``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)`` (CASD, ScoreMix).

Each also gives its noise grids and ``tau(sigma)``, the "t/T" that guidance schedules and the
two-stage switch read: ``t(sigma) / T`` for discrete models; for EDM models, where there is no
``T``, the position of ``log sigma`` between ``log sigma_min`` (0) and ``log sigma_max`` (1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from synthface_ray.config import ConfigError
from synthface_ray.models.objectives import c_in, c_noise, c_out, c_skip
from synthface_ray.sampling.solvers import karras_sigmas, sigma_of_abar, t_of_sigma

#: D(x (B, C, H, W), sigma (B,), context (B, tokens, dim), class_labels (B,) or None) -> x0_hat
ContextDenoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
SPACINGS = ("auto", "uniform", "trailing", "karras")


def call_net(net, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
             class_labels: torch.Tensor | None) -> torch.Tensor:
    """``net(sample, timestep, encoder_hidden_states=context, class_labels=...)`` (diffusers'
    convention); ``.sample`` of the result when it has one."""
    kwargs = {"encoder_hidden_states": context}
    if class_labels is not None:
        kwargs["class_labels"] = class_labels
    out = net(sample, timestep, **kwargs)
    return out.sample if hasattr(out, "sample") else out


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


@dataclass
class DiscreteEps:
    """Epsilon prediction at discrete timesteps; ``alphas_cumprod`` (T,) as diffusers' schedulers."""

    alphas_cumprod: torch.Tensor

    def __post_init__(self) -> None:
        self.alphas_cumprod = torch.as_tensor(self.alphas_cumprod, dtype=torch.float64).cpu()
        self.log_sigmas = sigma_of_abar(self.alphas_cumprod).log()

    @property
    def num_timesteps(self) -> int:
        return self.alphas_cumprod.numel()

    def sigma_of_t(self, t: torch.Tensor) -> torch.Tensor:
        return sigma_of_abar(self.alphas_cumprod[torch.as_tensor(t).long()])

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return t_of_sigma(self.log_sigmas, sigma)

    def init_scale(self, sigma_max: float) -> float:
        """Std of the VE prior at the first level: ``x_T ~ N(0, I)`` scaled by ``1 / sqrt(abar)``."""
        return math.sqrt(1 + sigma_max**2)

    def tau(self, sigma: float) -> float:
        return float(self.timestep(torch.tensor([sigma]))[0]) / self.num_timesteps

    def sigmas(self, steps: int, spacing: str = "auto") -> torch.Tensor:
        """Noise levels of a ``steps``-step grid, then 0 (float64, length ``steps + 1``).
        ``uniform``: timesteps evenly from T-1 to 0 (diffusers "linspace"); ``trailing`` (the
        default): ``T - 1, T - 1 - T/steps, ...`` (diffusers "trailing"); ``karras``: EDM eq. 5
        between the table's smallest and largest sigma."""
        if steps < 1:
            raise ConfigError(f"sampler.steps={steps} must be >= 1")
        T = self.num_timesteps
        if spacing == "karras":
            return karras_sigmas(steps, float(self.log_sigmas[0].exp()), float(self.log_sigmas[-1].exp()))
        if spacing == "uniform":
            t = torch.linspace(T - 1, 0, steps, dtype=torch.float64).round().long()
        else:  # auto / trailing
            t = (torch.arange(T, 0, -T / steps, dtype=torch.float64).round() - 1).long()[:steps]
        return torch.cat([self.sigma_of_t(t), torch.zeros(1, dtype=torch.float64)])

    def denoiser(self, net) -> ContextDenoiser:
        def denoise(x, sigma, context, class_labels=None):
            s = _col(sigma, x)
            t = self.timestep(sigma.detach().double().cpu()).to(device=x.device, dtype=torch.float32)
            eps = call_net(net, x / (1 + s**2).sqrt(), t, context, class_labels)
            return x - s * eps.to(x.dtype)

        return denoise


@dataclass
class EDMPrecond:
    """EDM preconditioning around a raw network (Karras et al. 2022, Table 1)."""

    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    num_timesteps: int = 1000  # nominal T: a two-stage t0 of 500 means tau = 0.5

    def init_scale(self, sigma_max: float) -> float:
        """Std of the prior at the first level: ``sigma_max`` (EDM)."""
        return sigma_max

    def tau(self, sigma: float) -> float:
        if sigma <= 0:
            return 0.0
        pos = math.log(sigma / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)
        return min(1.0, max(0.0, pos))

    def sigmas(self, steps: int, spacing: str = "auto") -> torch.Tensor:
        """EDM eq. 5 (``karras``, the default); EDM models have no discrete timesteps."""
        if spacing not in ("auto", "karras"):
            raise ConfigError(f"sampler.spacing={spacing} needs a discrete-timestep (epsilon) model; "
                              "EDM models use karras (or auto)")
        if steps < 1:
            raise ConfigError(f"sampler.steps={steps} must be >= 1")
        return karras_sigmas(steps, self.sigma_min, self.sigma_max)

    def denoiser(self, net) -> ContextDenoiser:
        sd = self.sigma_data

        def denoise(x, sigma, context, class_labels=None):
            s = _col(sigma, x)
            noise = c_noise(sigma.to(device=x.device, dtype=torch.float32))
            f = call_net(net, c_in(s, sd) * x, noise, context, class_labels)
            return c_skip(s, sd) * x + c_out(s, sd) * f.to(x.dtype)

        return denoise


Parameterization = DiscreteEps | EDMPrecond

__all__ = ["SPACINGS", "ContextDenoiser", "DiscreteEps", "EDMPrecond", "Parameterization", "call_net"]
