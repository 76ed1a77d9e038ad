"""Training objectives: DDPM epsilon prediction and EDM, behind one interface.

Both wrap a raw network ``net(x_in, t_or_cnoise, context, source=None, omega=None) -> Tensor``
(output of ``x_in``'s shape) and share :meth:`Objective.training_loss`: draw a noise level per
sample, make the noisy input, optionally apply ScoreAug to the noisy input and the clean target
together (seed 002; omega goes to the net), and return the weighted MSE between the model's
prediction and the objective's target.

- ``ddpm_eps`` (Ho et al. 2020; IDiff-Face, UIFace, NegFaceDiff): T = 1000 integer timesteps, linear
  beta 1e-4..0.02, the net predicts eps from ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``.
- ``edm`` (Karras et al. 2022, "EDM"; CASD Algorithm 2, ScoreMix): log-normal sigma, preconditioned
  denoiser ``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)`` (EDM eq. 7 and Table 1).

Chosen by name through :data:`OBJECTIVES` / :func:`make_objective`. All randomness is drawn from an
explicit ``torch.Generator`` when one is given (same seed, same loss).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DDPMScheduler

from synthface_ray.config import check_choice, check_range
from synthface_ray.models import scoreaug
from synthface_ray.models.parameterization import (  # noqa: F401  (c_* re-read here by name: EDM eq. 7)
    DiscreteEps,
    EDMPrecond,
    c_in,
    c_noise,
    c_out,
    c_skip,
    loss_weight_lambda,
    per_sample,
)
from synthface_ray.models.scoreaug import ScoreAugConfig

Net = Callable[..., torch.Tensor]


def _call_net(net: Net, x: torch.Tensor, noise_input: torch.Tensor, cond: Mapping[str, Any],
              omega: torch.Tensor | None) -> torch.Tensor:
    """Call the raw network with its conditioning keywords (``context`` or ``cond`` +
    ``drop_mask``, ``source``) and omega."""
    return net(x, noise_input, omega=omega, **cond)


class Objective:
    """Shared training step; subclasses define the noise process and the parameterisation.

    Subclass contract (``level`` is a ``(B,)`` tensor: timesteps or sigmas):
    ``sample_noise_level``, ``noisy(x0, eps, level)``, ``loss_target(x_in, x0, level)`` (the
    regression target implied by the (possibly augmented) noisy input and clean image),
    ``predict(net, x_in, level, cond, omega)`` (the quantity compared to the target) and
    ``loss_weight(level)``; and ``self.param``, the :mod:`~synthface_ray.models.parameterization`
    object (preconditioning, noise levels, t <-> sigma) that training and sampling share.
    """

    name = "objective"

    def sample_noise_level(self, batch: int, generator: torch.Generator | None = None,
                           device: torch.device | str | None = None) -> torch.Tensor:
        raise NotImplementedError

    def noisy(self, x0: torch.Tensor, eps: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss_target(self, x_in: torch.Tensor, x0: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, net: Net, x_in: torch.Tensor, level: torch.Tensor,
                cond: Mapping[str, Any], omega: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def loss_weight(self, level: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sigma_range(self) -> tuple[float, float]:
        """``(sigma_min, sigma_max)`` of the VE noise levels to sample over."""
        raise NotImplementedError

    def parameterization(self) -> DiscreteEps | EDMPrecond:
        """The preconditioning and noise levels this objective trains with; the sampler's
        denoiser is ``parameterization().denoiser(net)`` (one object serves both)."""
        return self.param

    def training_loss(
        self,
        net: Net,
        x0: torch.Tensor,
        cond_kwargs: Mapping[str, Any] | None = None,
        generator: torch.Generator | None = None,
        augment: ScoreAugConfig | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One training loss: ``mean(lambda(level) * |prediction - target|^2)`` and stats
        (0-d detached tensors).

        With ScoreAug enabled the noisy input and the clean image are transformed by the same
        omega (paper: ``||D(T(x_t)) - T(x_0)||^2``) and the target is derived from that pair;
        omega is passed to the net (``None`` when augmentation is off). The generator, if given,
        must live on ``x0``'s device.
        """
        cond = dict(cond_kwargs or {})
        batch, device = x0.shape[0], x0.device
        level = self.sample_noise_level(batch, generator, device)
        eps = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        x_in, clean, omega = self.noisy(x0, eps, level), x0, None
        if augment is not None and augment.enabled:
            omega = scoreaug.sample_omega(batch, augment, generator, device)
            x_in, clean = scoreaug.apply(x_in, omega), scoreaug.apply(x0, omega)
        target = self.loss_target(x_in, clean, level)
        pred = self.predict(net, x_in, level, cond, omega)
        per_elem = per_sample(self.loss_weight(level), pred) * (pred.float() - target.float()) ** 2
        loss = per_elem.mean()
        # detached tensors, not floats: a float() here would synchronise the GPU every step
        stats = {
            "loss": loss.detach(),
            "noise_level_mean": level.detach().float().mean(),
            "augmented_fraction": torch.zeros((), device=device) if omega is None
            else omega[:, list(scoreaug.ON_COLUMNS)].amax(dim=1).mean(),
        }
        return loss, stats


class DDPMEps(Objective):
    """DDPM with epsilon prediction (Ho et al. 2020, eq. 4 and the simple loss eq. 14).

    The schedule is diffusers' ``DDPMScheduler`` (linear betas); its ``alphas_cumprod`` is
    ``abar_t`` and its ``add_noise`` is the forward process ``q(x_t | x_0)``.
    """

    name = "ddpm_eps"

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                 beta_end: float = 0.02, beta_schedule: str = "linear") -> None:
        self.scheduler = DDPMScheduler(
            num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
            beta_schedule=beta_schedule,
        )
        self.num_train_timesteps = num_train_timesteps
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(torch.float64)
        self.param = DiscreteEps(self.alphas_cumprod)  # noise levels and t <-> sigma, shared with the sampler

    def _abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``abar_t`` gathered per sample and broadcast against ``like``."""
        return per_sample(self.alphas_cumprod.to(t.device)[t.long()], like)

    def sample_noise_level(self, batch, generator=None, device=None):
        """Timesteps ``t ~ U{0, ..., T-1}`` (int64)."""
        return torch.randint(0, self.num_train_timesteps, (batch,), generator=generator,
                             device=device)

    def noisy(self, x0, eps, level):
        """``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` (DDPM eq. 4), via diffusers."""
        return self.scheduler.add_noise(x0, eps, level.to(x0.device))

    def loss_target(self, x_in, x0, level):
        """The eps implied by ``(x_t, x_0)``: ``(x_t - sqrt(abar) x_0) / sqrt(1 - abar)``.

        Without augmentation this is the drawn eps (up to round-off). With ScoreAug it is the eps
        of the transformed pair ``(T(x_t), T(x_0))``, following the paper's rule that the clean
        target is transformed: ``T(eps)`` for linear transforms, ``eps + b (1 - sqrt(abar)) /
        sqrt(1 - abar)`` for an additive brightness ``b``.
        """
        abar = self._abar(level, x_in)
        return (x_in - abar.sqrt() * x0) / (1 - abar).sqrt()

    def predict(self, net, x_in, level, cond, omega):
        """The raw net output is eps-hat; the net sees the integer timestep."""
        return _call_net(net, x_in, level, cond, omega)

    def loss_weight(self, level):
        """Uniform weight (the "simple" loss, DDPM eq. 14)."""
        return torch.ones(level.shape[0])

    def denoise(self, net: Net, x_t: torch.Tensor, level: torch.Tensor,
                **cond: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x0_hat, eps_hat)`` with ``x0_hat = (x_t - sqrt(1 - abar) eps_hat) / sqrt(abar)``."""
        omega = cond.pop("omega", None)
        eps_hat = _call_net(net, x_t, level, cond, omega)
        abar = self._abar(level, x_t)
        return (x_t - (1 - abar).sqrt() * eps_hat) / abar.sqrt(), eps_hat

    def sigma_of_t(self, t: torch.Tensor) -> torch.Tensor:
        """``sigma_t`` of timestep ``t``: :meth:`DiscreteEps.sigma_of_t`."""
        return self.param.sigma_of_t(t)

    def t_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep for ``sigma``: :meth:`DiscreteEps.timestep`."""
        return self.param.timestep(sigma)

    def sigma_range(self) -> tuple[float, float]:
        """``(sigma_of_t(0), sigma_of_t(T - 1))``: the noise levels the model was trained on."""
        ends = self.sigma_of_t(torch.tensor([0, self.num_train_timesteps - 1]))
        return float(ends[0]), float(ends[1])


class EDM(Objective):
    """EDM training (Karras et al. 2022, sec. 5; CASD Algorithm 2's model, ScoreMix).

    ``x = x_0 + sigma n`` with ``ln sigma ~ N(P_mean, P_std^2)``; the net is the raw ``F_theta``
    and the denoiser ``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)`` regresses ``x_0``.
    """

    name = "edm"

    def __init__(self, sigma_data: float = 0.5, P_mean: float = -1.2, P_std: float = 1.2) -> None:
        self.P_mean, self.P_std = P_mean, P_std
        # the preconditioner of the loss and of the sampler; sampling range (0.002, 80) (EDM sec. 5)
        self.param = EDMPrecond(sigma_data, 0.002, 80.0)

    @property
    def sigma_data(self) -> float:
        """``sigma_data`` of the preconditioner (EDM Table 1); held once, by :attr:`param`."""
        return self.param.sigma_data

    def sample_noise_level(self, batch, generator=None, device=None):
        """``sigma = exp(P_mean + P_std n)``, ``n ~ N(0, 1)`` (EDM Table 1, training)."""
        n = torch.randn(batch, generator=generator, device=device)
        return (self.P_mean + self.P_std * n).exp()

    def noisy(self, x0, eps, level):
        """``x = x_0 + sigma n`` (EDM eq. 2's noise, s(t) = 1)."""
        return x0 + per_sample(level, x0) * eps

    def loss_target(self, x_in, x0, level):
        """The denoiser regresses the (possibly transformed) clean image ``x_0``."""
        return x0

    def predict(self, net, x_in, level, cond, omega):
        return self._denoise(net, x_in, level, cond, omega)

    def loss_weight(self, level):
        return loss_weight_lambda(level, self.sigma_data)

    def _denoise(self, net, x, sigma, cond, omega):
        return self.param.denoise_with(lambda x_in, noise: _call_net(net, x_in, noise, cond, omega), x, sigma)

    def denoise(self, net: Net, x: torch.Tensor, sigma: torch.Tensor | float,
                **cond: Any) -> torch.Tensor:
        """``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)`` (EDM eq. 7)."""
        omega = cond.pop("omega", None)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        sigma = sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma
        return self._denoise(net, x, sigma, cond, omega)

    def sigma_range(self) -> tuple[float, float]:
        """EDM's sampling range ``(sigma_min, sigma_max) = (0.002, 80)`` (EDM sec. 5)."""
        return self.param.sigma_min, self.param.sigma_max


OBJECTIVES: dict[str, type[Objective]] = {"ddpm_eps": DDPMEps, "edm": EDM}


#: the settings each objective takes (keys of :class:`ObjectiveConfig`)
OBJECTIVE_PARAMS: dict[str, tuple[str, ...]] = {
    "ddpm_eps": ("num_train_timesteps", "beta_start", "beta_end"),
    "edm": ("sigma_data", "P_mean", "P_std"),
}


@dataclass
class ObjectiveConfig:
    """The ``objective`` section: which parameterisation and its schedule.

    ``ddpm_eps`` uses ``num_train_timesteps``/``beta_start``/``beta_end`` (linear betas, as
    IDiff-Face and UIFace); ``edm`` uses ``sigma_data``/``P_mean``/``P_std`` (EDM Table 1, as CASD
    and ScoreMix). The other keys are ignored for that objective.
    """

    name: str = "ddpm_eps"
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    sigma_data: float = 0.5
    P_mean: float = -1.2
    P_std: float = 1.2

    def __post_init__(self) -> None:
        check_choice("objective.name", self.name, OBJECTIVES)
        check_range("objective.num_train_timesteps", self.num_train_timesteps, 2)
        check_range("objective.beta_start", self.beta_start, 0.0, 1.0)
        check_range("objective.beta_end", self.beta_end, self.beta_start, 1.0)
        check_range("objective.sigma_data", self.sigma_data, 1e-6)
        check_range("objective.P_std", self.P_std, 1e-6)

    def settings(self) -> dict[str, Any]:
        """The objective's own settings (what :func:`make_objective` takes), e.g. for export."""
        return {k: getattr(self, k) for k in OBJECTIVE_PARAMS[self.name]}

    def build(self) -> Objective:
        return make_objective(self.name, **self.settings())


def make_objective(name: str, **cfg: Any) -> Objective:
    """Build the objective registered under ``name`` with its keyword settings."""
    try:
        cls = OBJECTIVES[name]
    except KeyError:
        raise ValueError(
            f"unknown objective {name!r}; allowed: {sorted(OBJECTIVES)}"
        ) from None
    return cls(**cfg)


__all__ = [
    "DDPMEps", "EDM", "OBJECTIVES", "OBJECTIVE_PARAMS", "Objective", "ObjectiveConfig", "c_in", "c_noise", "c_out", "c_skip",
    "loss_weight_lambda", "make_objective",
]
