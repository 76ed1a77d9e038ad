"""Objectives: EDM preconditioning identities, DDPM schedule vs diffusers, shared invariants."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler
from torch import nn

from synthface_ray.models import objectives as obj
from synthface_ray.models import scoreaug
from synthface_ray.models.scoreaug import ScoreAugConfig

SIGMA_DATA = 0.5
AUG_ALL = ScoreAugConfig(enabled=True, p_brightness=1.0, p_translation=1.0, p_rotation=1.0,
                         p_cutout=1.0)


class TinyNet(nn.Module):
    """Stand-in for the generator: conv net with time, context, source and omega inputs."""

    def __init__(self, channels: int = 3, ctx_dim: int = 8, width: int = 8) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(channels, width, 3, padding=1)
        self.t_proj = nn.Linear(1, width)
        self.ctx_proj = nn.Linear(ctx_dim, width)
        self.omega_proj = nn.Linear(scoreaug.OMEGA_DIM, width)
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x, t, context, source=None, omega=None):
        h = self.conv_in(x) + self.t_proj(t.float().reshape(-1, 1) / 100)[..., None, None]
        h = h + self.ctx_proj(context)[..., None, None]
        if omega is not None:
            h = h + self.omega_proj(omega)[..., None, None]
        return self.conv_out(torch.nn.functional.silu(h))


def oracle_net(objective, x0):
    """A net whose denoised output is exactly the (transformed) clean image ``x0``.

    Built from the math independently of the objective's own methods (diffusers' abar for DDPM,
    EDM's Table 1 written out here), so a wrong convention in the objective makes the loss > 0.
    """
    if isinstance(objective, obj.DDPMEps):
        abar_table = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").alphas_cumprod

        def net(x_t, t, context, source=None, omega=None):
            clean = x0 if omega is None else scoreaug.apply(x0, omega)
            abar = abar_table[t].reshape(-1, 1, 1, 1)
            return (x_t - abar.sqrt() * clean) / (1 - abar).sqrt()

        return net

    def net(x_in, cnoise, context, source=None, omega=None):
        clean = x0 if omega is None else scoreaug.apply(x0, omega)
        sigma = (4 * cnoise).exp().reshape(-1, 1, 1, 1)
        x = x_in * (sigma**2 + SIGMA_DATA**2).sqrt()
        skip = SIGMA_DATA**2 / (sigma**2 + SIGMA_DATA**2)
        out = sigma * SIGMA_DATA / (sigma**2 + SIGMA_DATA**2).sqrt()
        return (clean - skip * x) / out

    return net


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    return x0, {"context": torch.randn(4, 8, generator=g), "source": torch.zeros(4, dtype=torch.long)}


# EDM preconditioning ---------------------------------------------------------------------------
def test_edm_preconditioning_identities():
    sigma = torch.logspace(-3, 2, 50, dtype=torch.float64)
    skip, out, inp = obj.c_skip(sigma, SIGMA_DATA), obj.c_out(sigma, SIGMA_DATA), obj.c_in(sigma, SIGMA_DATA)
    torch.testing.assert_close(inp * (sigma**2 + SIGMA_DATA**2).sqrt(), torch.ones_like(sigma))
    # unit-variance target: c_skip + c_out^2 / sigma_data^2 = 1 (EDM appendix B.6)
    torch.testing.assert_close(skip + out**2 / SIGMA_DATA**2, torch.ones_like(sigma))
    torch.testing.assert_close(obj.loss_weight_lambda(sigma, SIGMA_DATA), 1 / out**2)
    torch.testing.assert_close(
        obj.loss_weight_lambda(sigma, SIGMA_DATA),
        (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2,
    )
    torch.testing.assert_close(obj.c_noise(sigma), torch.log(sigma) / 4)


def test_edm_denoiser_is_identity_at_zero_noise(batch):
    x0, cond = batch
    torch.manual_seed(0)
    d = obj.EDM().denoise(TinyNet(), x0, 1e-6, **cond)
    torch.testing.assert_close(d, x0, atol=1e-5, rtol=0)


def test_edm_sigma_is_lognormal():
    sigma = obj.EDM().sample_noise_level(20000, torch.Generator().manual_seed(1))
    assert abs(sigma.log().mean().item() - (-1.2)) < 0.05
    assert abs(sigma.log().std().item() - 1.2) < 0.05


# DDPM ------------------------------------------------------------------------------------------
def test_ddpm_schedule_matches_diffusers(batch):
    x0, _ = batch
    ddpm = obj.DDPMEps()
    ref = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    torch.testing.assert_close(ddpm.alphas_cumprod.float(), ref.alphas_cumprod)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    torch.testing.assert_close(ddpm.alphas_cumprod, torch.cumprod(1 - betas, 0), atol=1e-6, rtol=1e-5)
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 10, 500, 999])
    torch.testing.assert_close(ddpm.noisy(x0, eps, t), ref.add_noise(x0, eps, t))


def test_ddpm_sigma_conversions():
    ddpm = obj.DDPMEps()
    t = torch.tensor([0, 1, 250, 998, 999])
    abar = ddpm.alphas_cumprod[t]
    torch.testing.assert_close(ddpm.sigma_of_t(t), ((1 - abar) / abar).sqrt())
    torch.testing.assert_close(ddpm.t_of_sigma(ddpm.sigma_of_t(t)), t.double())
    mid = ddpm.t_of_sigma((ddpm.sigma_of_t(torch.tensor(10)) * ddpm.sigma_of_t(torch.tensor(11))).sqrt())
    assert 10 < mid.item() < 11


def test_ddpm_target_without_augmentation_is_the_noise(batch):
    x0, _ = batch
    ddpm = obj.DDPMEps()
    eps, t = torch.randn_like(x0), torch.tensor([0, 3, 400, 999])
    torch.testing.assert_close(ddpm.loss_target(ddpm.noisy(x0, eps, t), x0, t), eps, atol=1e-4, rtol=0)


def test_ddpm_denoise_inverts_the_forward_process(batch):
    x0, cond = batch
    ddpm = obj.DDPMEps()
    t = torch.tensor([1, 100, 500, 900])
    x_t = ddpm.noisy(x0, torch.randn_like(x0), t)
    x0_hat, eps_hat = ddpm.denoise(oracle_net(ddpm, x0), x_t, t, **cond)
    torch.testing.assert_close(x0_hat, x0, atol=1e-4, rtol=0)
    assert eps_hat.shape == x0.shape


# shared invariants -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(obj.OBJECTIVES))
@pytest.mark.parametrize("augment", [None, AUG_ALL], ids=["plain", "scoreaug"])
def test_loss_finite_positive_and_backward(name, augment, batch):
    x0, cond = batch
    torch.manual_seed(0)
    net = TinyNet()
    loss, stats = obj.make_objective(name).training_loss(
        net, x0, cond, torch.Generator().manual_seed(3), augment
    )
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    assert stats["loss"].item() == pytest.approx(loss.item())
    assert stats["augmented_fraction"].item() == (0.0 if augment is None else 1.0)
    loss.backward()
    omega_params = set(net.omega_proj.parameters())
    for p in net.parameters():
        if augment is None and p in omega_params:
            assert p.grad is None  # omega=None reaches the net when augmentation is off
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(obj.OBJECTIVES))
def test_same_seed_same_loss(name, batch):
    x0, cond = batch
    torch.manual_seed(0)
    net, objective = TinyNet(), obj.make_objective(name)
    aug = ScoreAugConfig(enabled=True)

    def run(seed):
        return objective.training_loss(net, x0, cond, torch.Generator().manual_seed(seed), aug)[0]

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


@pytest.mark.parametrize("name", sorted(obj.OBJECTIVES))
@pytest.mark.parametrize("augment", [None, AUG_ALL, ScoreAugConfig(enabled=True, rotation_step_deg=0)],
                         ids=["plain", "scoreaug-all", "scoreaug-continuous-rotation"])
def test_oracle_net_has_zero_loss(name, augment, batch):
    """A net that knows x0 (and T via omega) must reach ~0 loss: checks that input and target are
    transformed consistently and that the parameterisation (target, weighting) is right."""
    x0, cond = batch
    objective = obj.make_objective(name)
    loss, _ = objective.training_loss(oracle_net(objective, x0), x0, cond,
                                      torch.Generator().manual_seed(5), augment)
    assert loss.item() < 1e-6
    # and a net that ignores the augmentation (predicts the untransformed x0) does not
    if augment is AUG_ALL:
        plain = oracle_net(objective, x0)
        loss, _ = objective.training_loss(
            lambda *a, omega=None, **k: plain(*a, omega=None, **k), x0, cond,
            torch.Generator().manual_seed(5), augment,
        )
        assert loss.item() > 1e-3


def test_make_objective_rejects_unknown_name():
    with pytest.raises(ValueError, match="'ddim'.*allowed.*ddpm_eps.*edm"):
        obj.make_objective("ddim")
    assert isinstance(obj.make_objective("edm", sigma_data=1.0), obj.EDM)
