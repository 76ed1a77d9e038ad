"""The parameterisation of the generator: ONE object per objective owns its preconditioning, its
noise levels and the t <-> sigma map, and serves both the training loss
(:mod:`synthface_ray.models.objectives`) and the sampler (:mod:`synthface_ray.sampling`), as NVlabs
EDM's preconditioner does.

The network speaks ONE call convention, the generator's own
(:meth:`synthface_ray.models.generator.IdentityGenerator.forward`): ``net(x_in, noise_input,
context=..., source=..., omega=..., attention_kwargs=...)`` returning a tensor, in training and in
sampling alike. The math itself (:meth:`DiscreteEps.denoise_with`, :meth:`EDMPrecond.denoise_with`)
takes any ``F(x_in, noise_input)``; :meth:`DiscreteEps.denoiser` / :meth:`EDMPrecond.denoiser`
bind a network and its context for the sampler:

* :class:`DiscreteEps`: epsilon prediction at timesteps ``0..T-1`` of a ``alphas_cumprod`` table
  (DDPM; IDiff-Face, UIFace, NegFaceDiff). ``x_t = sqrt(abar) (x + sigma eps)`` with
  ``sigma = sqrt((1 - abar) / abar)``; ``D(x; sigma) = x - sigma eps(x / sqrt(1 + sigma^2), t(sigma))``
  (k-diffusion's ``DiscreteEpsDDPMDenoiser``).
* :class:`EDMPrecond`: a raw network ``F`` under EDM preconditioning (Karras et al. 2022, eq. 7,
  Table 1): ``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)`` (CASD, ScoreMix).

Each also gives its noise grids and ``tau(sigma)``, the "t/T" that guidance schedules and the
two-stage switch read: ``t(sigma) / T`` for discrete models; for EDM models, which have no ``T``,
the time of the same noise level on DDPM's linear schedule (:func:`vp_t_of_sigma`, EDM Table 1's
VP ``sigma^-1``: the continuous form of betas 1e-4..0.02 over T = 1000, the schedule IDiff-Face,
NegFaceDiff/AdaptDiff and UIFace train and sample with), so that a schedule written in t/T
(AdaptDiff's ``w(t)``, UIFace's ``t0``) acts at the papers' noise levels on either kind of model.
Pure torch: no Ray, nothing from the sampler.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from synthface_ray.config import ConfigError


# noise levels --------------------------------------------------------------------------------
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


def sigma_of_abar(abar: torch.Tensor) -> torch.Tensor:
    """``sigma = sqrt((1 - abar) / abar)``: the VE noise level of ``x_t / sqrt(abar)``."""
    return ((1 - abar) / abar).sqrt()


def t_of_sigma(log_sigma_table: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Fractional timestep of ``sigma``, linear in ``log sigma`` between the table's entries
    (k-diffusion ``sigma_to_t``); clamped to ``[0, T - 1]``."""
    n = log_sigma_table.numel()
    log_sigma = torch.as_tensor(sigma, dtype=torch.float64).log().reshape(-1)
    hi = torch.searchsorted(log_sigma_table, log_sigma).clamp(1, n - 1)
    lo = hi - 1
    frac = (log_sigma - log_sigma_table[lo]) / (log_sigma_table[hi] - log_sigma_table[lo])
    return (lo + frac.clamp(0, 1)).reshape(torch.as_tensor(sigma).shape)


def vp_t_of_sigma(sigma: float, beta_d: float = 19.9, beta_min: float = 0.1) -> float:
    """``t = (sqrt(beta_min^2 + 2 beta_d ln(sigma^2 + 1)) - beta_min) / beta_d`` in [0, 1]: the
    inverse of the VP schedule ``sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)`` (EDM,
    Karras et al. 2022, Table 1 "VP" column; Song et al. 2021), the continuous limit of DDPM's
    linear betas 1e-4..0.02 over T = 1000 (``beta_min = 1e-4 T``, ``beta_d = (0.02 - 1e-4) T``).
    Its ``t`` is DDPM's ``t / T`` at the same noise level (sigma 3.42 -> 0.500; t = 1 at sigma
    157); clamped to 1 above."""
    t = (math.sqrt(beta_min**2 + 2 * beta_d * math.log1p(sigma**2)) - beta_min) / beta_d
    return min(1.0, t)


# EDM preconditioning (Karras et al. 2022, Table 1 "Ours" column and eq. 7) --------------------
def c_skip(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """``c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)`` (EDM Table 1, eq. 7)."""
    return sigma_data**2 / (sigma**2 + sigma_data**2)


def c_out(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """``c_out = sigma * sigma_data / sqrt(sigma^2 + sigma_data^2)`` (EDM Table 1, eq. 7)."""
    return sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()


def c_in(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """``c_in = 1 / sqrt(sigma^2 + sigma_data^2)`` (EDM Table 1, eq. 7)."""
    return 1 / (sigma**2 + sigma_data**2).sqrt()


def c_noise(sigma: torch.Tensor) -> torch.Tensor:
    """``c_noise = ln(sigma) / 4`` (EDM Table 1)."""
    return sigma.log() / 4


def loss_weight_lambda(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` (EDM Table 1, eq. 8)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2



#: D(x (B, C, H, W), sigma (B,), context (B, tokens, dim), source (B,) or None, attention_kwargs=None)
#: -> x0_hat
ContextDenoiser = Callable[..., torch.Tensor]
SPACINGS = ("auto", "uniform", "trailing", "karras")


def call_net(net, x_in: torch.Tensor, noise_input: torch.Tensor, context: torch.Tensor,
             source: torch.Tensor | None = None, attention_kwargs: dict | None = None) -> torch.Tensor:
    """``net(x_in, noise_input, context=context[, source=...][, attention_kwargs=...])``: the
    generator's call convention; ``source`` (CASD) and ``attention_kwargs`` (per-forward inputs of
    the attention processors, e.g. UIFace injection) are passed only when given."""
    kwargs: dict = {"context": context}
    if source is not None:
        kwargs["source"] = source
    if attention_kwargs is not None:
        kwargs["attention_kwargs"] = attention_kwargs
    return net(x_in, noise_input, **kwargs)


def per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A ``(B,)`` noise level (or weight) on ``x``'s device and dtype, shaped to broadcast against ``x``
    of shape ``(B, ...)``."""
    return v.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


class _BindsNetwork:
    """The sampler's side of a parameterisation: ``denoise_with`` (each subclass's math) around a
    network called by :func:`call_net`."""

    def denoise_with(self, call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                     sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def denoiser(self, net) -> ContextDenoiser:
        """The sampler's ``D(x, sigma, context, source=None, attention_kwargs=None)`` of ``net``
        (:func:`call_net`'s convention)."""
        def denoise(x, sigma, context, source=None, attention_kwargs=None):
            return self.denoise_with(
                lambda x_in, noise: call_net(net, x_in, noise, context, source, attention_kwargs), x, sigma)

        return denoise


@dataclass
class DiscreteEps(_BindsNetwork):
    """Epsilon prediction at discrete timesteps; ``alphas_cumprod`` (T,) as diffusers' schedulers."""

    alphas_cumprod: torch.Tensor

    def __post_init__(self) -> None:
        self.alphas_cumprod = torch.as_tensor(self.alphas_cumprod, dtype=torch.float64).cpu()
        self.log_sigmas = sigma_of_abar(self.alphas_cumprod).log()

    @property
    def num_timesteps(self) -> int:
        return self.alphas_cumprod.numel()

    def sigma_of_t(self, t: torch.Tensor) -> torch.Tensor:
        """``sigma_t = sqrt((1 - abar_t) / abar_t)``: the VE noise level of ``x_t / sqrt(abar_t)``."""
        return sigma_of_abar(self.alphas_cumprod[torch.as_tensor(t).long().cpu()])

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep of ``sigma`` (the inverse of :meth:`sigma_of_t`, linear in ``log sigma``)."""
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

    def denoise_with(self, call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                     sigma: torch.Tensor) -> torch.Tensor:
        """``D(x; sigma) = x - sigma eps(x / sqrt(1 + sigma^2), t(sigma))`` with ``eps = call(x_in, t)``."""
        s = per_sample(sigma, x)
        t = self.timestep(sigma.detach().double().cpu()).to(device=x.device, dtype=torch.float32)
        return x - s * call(x / (1 + s**2).sqrt(), t).to(x.dtype)


@dataclass
class EDMPrecond(_BindsNetwork):
    """EDM preconditioning around a raw network (Karras et al. 2022, Table 1)."""

    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    num_timesteps: int = 1000  # DDPM's T, by which tau is read as a timestep (the recorded two-stage t0)

    def init_scale(self, sigma_max: float) -> float:
        """Std of the prior at the first level: ``sigma_max`` (EDM)."""
        return sigma_max

    def tau(self, sigma: float) -> float:
        """The DDPM ``t / T`` of noise level ``sigma`` (:func:`vp_t_of_sigma`): UIFace's t0 = 500 of
        1000 (tau 0.5) is sigma 3.42 here as in the paper; the top of EDM's grid (sigma 80) is tau
        0.93, its bottom (0.002) 4e-5."""
        return vp_t_of_sigma(sigma) if sigma > 0 else 0.0

    def sigmas(self, steps: int, spacing: str = "auto") -> torch.Tensor:
        """EDM eq. 5 (``karras``, the default); EDM models have no discrete timesteps."""
        if spacing not in ("auto", "karras"):
            raise ConfigError(f"sampler.spacing={spacing} needs a discrete-timestep (epsilon) model; "
                              "EDM models use karras (or auto)")
        if steps < 1:
            raise ConfigError(f"sampler.steps={steps} must be >= 1")
        return karras_sigmas(steps, self.sigma_min, self.sigma_max)

    def denoise_with(self, call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                     sigma: torch.Tensor) -> torch.Tensor:
        """``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)`` (EDM eq. 7) with ``F = call``: the one
        preconditioner of the training loss and of the sampler."""
        s, sd = per_sample(sigma, x), self.sigma_data
        f = call(c_in(s, sd) * x, c_noise(sigma.to(device=x.device, dtype=torch.float32)))
        return c_skip(s, sd) * x + c_out(s, sd) * f.to(x.dtype)


Parameterization = DiscreteEps | EDMPrecond


__all__ = ["SPACINGS", "ContextDenoiser", "DiscreteEps", "EDMPrecond", "Parameterization", "c_in", "c_noise",
           "c_out", "c_skip", "call_net", "karras_sigmas", "loss_weight_lambda", "per_sample", "sigma_of_abar",
           "t_of_sigma", "vp_t_of_sigma"]
