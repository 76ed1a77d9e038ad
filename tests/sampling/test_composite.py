"""The composite sampler: properties shared by every solver and recipe, numerical references
(diffusers' DDIMScheduler, exact Gaussian scores), NFE accounting and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from torch import nn

from synthface_ray.config import ConfigError
from synthface_ray.models.parameterization import DiscreteEps, EDMPrecond
from synthface_ray.sampling import recipes
from synthface_ray.sampling.composite import (
    ConditionError,
    Conditions,
    Weights,
    guided_weights,
    sample,
)
from synthface_ray.sampling.recipes import SamplerConfig, resolve

SHAPE = (1, 4, 4)
DIM = 6


def linear_abar(T: int = 1000) -> torch.Tensor:
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


class ToyNet(nn.Module):
    """A deterministic nonlinear network in the generator's call convention: its output depends on
    the sample, the timestep, the context and the source label of each row."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(DIM, generator=g))

    def forward(self, sample, timestep, context, source=None):
        c = context.mean(dim=1) @ self.w  # (B,)
        t = torch.as_tensor(timestep, dtype=sample.dtype).reshape(-1) / 1000
        lab = 0 if source is None else source.to(sample.dtype)[:, None, None, None] * 0.1
        return torch.tanh(0.7 * sample + c[:, None, None, None] + t[:, None, None, None]) + lab


PARAMS = {"eps": DiscreteEps(linear_abar()), "edm": EDMPrecond()}
SOLVERS = [("ddim", 0.0), ("ddim", 0.6), ("ddpm", 1.0), ("heun", 0.0)]


def conditions(batch: int = 4, k: int = 5, seed0: int = 0, **kw) -> Conditions:
    g = torch.Generator().manual_seed(1)
    contexts = torch.randn(k, 2, DIM, generator=g)
    empty = torch.randn(2, DIM, generator=g)
    ids = torch.arange(batch) % k
    base = dict(contexts=contexts, empty=empty, mix_ids=ids[:, None], mix_weights=torch.ones(batch, 1),
                seeds=torch.arange(batch) + seed0)
    base.update(kw)
    return Conditions(**base)


def run(cond, param="eps", **cfg):
    cfg.setdefault("steps", 6)
    return sample(ToyNet(), PARAMS[param], cond, resolve(cfg), SHAPE)


def close(a, b, tol=1e-6):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# weights ------------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", sorted(recipes.RECIPES))
def test_weights_sum_to_one_at_every_step_for_every_recipe(recipe):
    cfg = resolve({"recipe": recipe})
    c = conditions(mix_ids=torch.tensor([[0, 1], [2, -1], [3, 4], [1, 2]]),
                   mix_weights=torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.3, 0.7], [0.5, 0.5]]),
                   negative_ids=torch.tensor([4, -1, 0, 3]))
    w = Weights.of(c)
    for tau in torch.linspace(0, 1, 11).tolist():
        for stage1 in (torch.zeros(4, dtype=torch.bool), torch.tensor([True, False, True, False])):
            W = guided_weights(w, cfg.cfg_scale, cfg.negative.weight(tau), stage1)
            close(W.sum(dim=1), torch.ones(4, dtype=torch.float64), 1e-12)


# properties shared by every solver and parameterisation --------------------------------------
@pytest.mark.parametrize("param", PARAMS)
@pytest.mark.parametrize(("solver", "eta"), SOLVERS)
class TestProperties:
    def test_cfg_zero_negative_zero_and_mix_one_zero_equal_conditional(self, param, solver, eta):
        c = conditions()
        plain = run(c, param, solver=solver, eta=eta).images
        close(run(c, param, solver=solver, eta=eta, cfg_scale=0.0).images, plain)
        neg = conditions(negative_ids=torch.tensor([1, 2, 3, 4]))
        off = {"schedule": "linear", "w_max": 0.0}
        close(run(neg, param, solver=solver, eta=eta, negative=off).images, plain)
        mix = conditions(mix_ids=torch.stack([torch.arange(4) % 5, (torch.arange(4) + 1) % 5], 1),
                         mix_weights=torch.tensor([[1.0, 0.0]] * 4))
        close(run(mix, param, solver=solver, eta=eta).images, plain)

    def test_two_stage_endpoints(self, param, solver, eta):
        c = conditions()
        cfg = run(c, param, solver=solver, eta=eta, cfg_scale=1.5).images
        at_T = run(c, param, solver=solver, eta=eta, cfg_scale=1.5, two_stage={"mode": "fixed", "t0": 1.0})
        close(at_T.images, cfg)  # t0 = T: no step has t >= t0, all CFG (UIFace eq. 4)
        empty = Conditions(c.contexts, c.empty, torch.full((4, 1), 0), torch.ones(4, 1), c.seeds)
        uncond = run(Conditions(torch.cat([c.empty[None]]), c.empty, torch.zeros(4, 1), torch.ones(4, 1),
                                c.seeds), param, solver=solver, eta=eta).images
        at_0 = run(empty, param, solver=solver, eta=eta, cfg_scale=1.5, two_stage={"mode": "fixed", "t0": 0.0})
        close(at_0.images, uncond)  # t0 = 0: every step unconditional
        assert (at_0.t0 == -1).all() and (at_T.t0 >= 0).all()

    def test_rows_do_not_depend_on_batch_or_batch_size(self, param, solver, eta):
        c = conditions(batch=5, negative_ids=torch.tensor([1, 2, -1, 4, 0]))
        cfg = {"solver": solver, "eta": eta, "cfg_scale": 1.0, "negative": {"w_max": 0.5}}
        whole = run(c, param, **cfg).images
        order = torch.tensor([3, 0, 4])
        part = Conditions(c.contexts, c.empty, c.mix_ids[order], c.mix_weights[order], c.seeds[order],
                          c.negative_ids[order])
        close(run(part, param, **cfg).images, whole[order], 1e-5)
        assert not torch.allclose(whole[0], whole[1])  # rows differ


# NFE accounting --------------------------------------------------------------------------------
def test_nfe_counts_distinct_active_contexts_per_row():
    steps = 5
    c = conditions(mix_ids=torch.tensor([[0, 0], [1, 2], [3, -1], [4, 1]]),
                   mix_weights=torch.tensor([[0.5, 0.5], [0.5, 0.5], [1.0, 0.0], [1.0, 0.0]]))
    assert run(c, steps=steps).nfe.tolist() == [1 * steps, 2 * steps, steps, steps]  # duplicate once
    assert run(c, steps=steps, cfg_scale=1.0).nfe.tolist() == [2 * steps, 3 * steps, 2 * steps, 2 * steps]
    two = run(c, steps=steps, cfg_scale=1.0, two_stage={"mode": "fixed", "t0": 0.5})
    stage1 = sum(1 for s in PARAMS["eps"].sigmas(steps)[:-1].tolist() if PARAMS["eps"].tau(s) > 0.5)
    assert two.nfe.tolist() == [stage1 + 2 * (steps - stage1), stage1 + 3 * (steps - stage1),
                                stage1 + 2 * (steps - stage1), stage1 + 2 * (steps - stage1)]
    heun = run(conditions(), "edm", steps=steps, solver="heun")
    assert heun.nfe.tolist() == [2 * steps - 1] * 4  # no correction on the last step


# numerical references --------------------------------------------------------------------------
def test_ddim_matches_diffusers_ddim_scheduler():
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                          beta_schedule="linear", timestep_spacing="trailing", clip_sample=False,
                          set_alpha_to_one=True)
    sched.set_timesteps(20)
    net, c = ToyNet().double(), conditions(batch=3)
    ctx = c.contexts[c.mix_ids[:, 0]].double()
    x = torch.stack([torch.randn(SHAPE, generator=torch.Generator().manual_seed(int(s))) for s in c.seeds])
    x = x.double()
    for t in sched.timesteps:
        eps = net(x, t.expand(3), ctx)
        x = sched.step(eps, t, x, eta=0.0).prev_sample
    ours = sample(net, DiscreteEps(sched.alphas_cumprod), Conditions(
        c.contexts.double(), c.empty.double(), c.mix_ids, c.mix_weights, c.seeds),
        SamplerConfig(steps=20, spacing="trailing"), SHAPE, dtype=torch.float64)
    close(ours.images, x, 1e-5)


class GaussianNet(nn.Module):
    """The exact denoiser of data ``x0 ~ N(mu, s^2 I)`` with ``mu`` = the context's first value:
    ``D(x; sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu)``, exposed as an epsilon model
    (``param="eps"``) or as EDM's raw network F (``param="edm"``)."""

    def __init__(self, param, s: float) -> None:
        super().__init__()
        self.param, self.s = param, s

    def forward(self, sample, timestep, context, source=None):
        mu = context[:, 0, 0].to(sample.dtype).reshape(-1, 1, 1, 1)
        col = lambda v: torch.as_tensor(v, dtype=sample.dtype).reshape(-1, 1, 1, 1)  # noqa: E731
        if isinstance(self.param, EDMPrecond):
            sigma = col(torch.exp(4 * torch.as_tensor(timestep, dtype=torch.float64)))
            sd = self.param.sigma_data
            x = sample * (sd**2 + sigma**2).sqrt()
            d = mu + self.s**2 / (self.s**2 + sigma**2) * (x - mu)
            c_skip, c_out = sd**2 / (sigma**2 + sd**2), sigma * sd / (sigma**2 + sd**2).sqrt()
            return (d - c_skip * x) / c_out
        sigma = col(self.param.sigma_of_t(torch.as_tensor(timestep).round().long().reshape(-1)))
        x = sample * (1 + sigma**2).sqrt()
        d = mu + self.s**2 / (self.s**2 + sigma**2) * (x - mu)
        return (x - d) / sigma


def _gaussian_conditions(mus: list[float], n: int, mix: bool = False) -> Conditions:
    contexts = torch.tensor(mus, dtype=torch.float64)[:, None, None].expand(-1, 1, 2).contiguous()
    empty = torch.ones(1, 2, dtype=torch.float64)
    if mix:
        ids, w = torch.tensor([[0, 1]] * n), torch.tensor([[0.5, 0.5]] * n)
    else:
        ids, w = torch.zeros(n, 1, dtype=torch.long), torch.ones(n, 1)
    return Conditions(contexts, empty, ids, w, torch.arange(n) + 1000)


@pytest.mark.parametrize(("param", "solver", "spacing", "steps"), [
    ("eps", "ddim", "trailing", 250), ("edm", "ddim", "karras", 40), ("edm", "heun", "karras", 40),
    ("eps", "heun", "trailing", 40)])
def test_exact_gaussian_scores_give_the_data_mean_and_variance(param, solver, spacing, steps):
    """DDIM (1st order) on uniform timesteps needs more steps: measured std/s at 40, 100 and 250
    steps: 0.927, 0.978, 0.999."""
    mu, s, n = 0.7, 0.4, 2000
    p = PARAMS[param]
    out = sample(GaussianNet(p, s), p, _gaussian_conditions([mu], n),
                 SamplerConfig(solver=solver, steps=steps, spacing=spacing), (1, 1, 1), dtype=torch.float64)
    x = out.images.reshape(-1)
    assert abs(x.mean().item() - mu) < 4 * s / math.sqrt(n)
    assert abs(x.std().item() / s - 1) < 0.06


def test_a_50_50_mix_of_two_gaussian_classes_lands_at_the_midpoint():
    p = PARAMS["edm"]
    out = sample(GaussianNet(p, 0.3), p, _gaussian_conditions([-1.0, 2.0], 1000, mix=True),
                 SamplerConfig(solver="heun", steps=30), (1, 1, 1), dtype=torch.float64)
    assert abs(out.images.mean().item() - 0.5) < 4 * 0.3 / math.sqrt(1000)


def test_casd_source_label_is_pinned():
    c = conditions()
    real, synthetic = run(c, source=0).images, run(c, source=2).images
    assert not torch.allclose(real, synthetic)
    close(run(c, recipe="casd", solver="ddim", spacing="auto").images, real)


# bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "message"), [
    ({"mix_ids": torch.tensor([[0, 1]] * 4), "mix_weights": torch.tensor([[0.6, 0.6]] * 4)}, "sum to 1.2"),
    ({"mix_ids": torch.tensor([[0, 1]] * 4), "mix_weights": torch.tensor([[1.5, -0.5]] * 4)}, ">= 0"),
    ({"negative_ids": torch.tensor([0, 2, 3, 4])}, "row 0: the negative identity equals a positive"),
    ({"contexts": torch.zeros(5, 2, DIM)}, r"contexts\[0\] has zero norm"),
    ({"contexts": torch.full((5, 2, DIM), float("nan"))}, "NaN"),
    ({"mix_ids": torch.tensor([[7]] * 4)}, "mix_ids must index contexts"),
])
def test_bad_conditions_name_the_field(change, message):
    with pytest.raises(ConditionError, match=message):
        conditions(**change)


@pytest.mark.parametrize(("section", "message"), [
    ({"recipe": "dreambooth"}, "sampler.recipe"),
    ({"two_stage": {"t0": 1.5}}, "two_stage.t0"),
    ({"two_stage": {"th": 0}}, r"two_stage.th=0(\.0)? is out of range"),
    ({"negative": {"schedule": "exp"}}, "negative.schedule"),
    ({"eta": 2}, "sampler.eta"),
])
def test_bad_sampler_config_names_the_field(section, message):
    with pytest.raises(ConfigError, match=message):
        resolve(section)


def test_recipes_resolve_with_overrides():
    cfg = resolve({"recipe": "scoremix_adaptdiff_uiface", "steps": 12, "negative": {"w_max": 0.5}})
    assert (cfg.steps, cfg.cfg_scale, cfg.negative.schedule, cfg.negative.w_max) == (12, 1.0, "linear", 0.5)
    assert cfg.two_stage.mode == "fixed"
    with pytest.raises(ConfigError, match="EDM models use karras"):
        run(conditions(), "edm", spacing="trailing")


def test_a_jobs_sampler_section_is_resolved_once_at_load_and_round_trips():
    """generate's ``sampler`` (and preview's, identities' uncond source) load into a SamplerConfig: the
    recipe's settings, then the section's keys; the saved config reloads to the same settings."""
    from synthface_ray import config as sfconfig
    from synthface_ray.generate.config import Config

    cfg = sfconfig.from_dict(Config, {"sampler": {"recipe": "scoremix_adaptdiff_uiface", "steps": 12,
                                                  "negative": {"w_max": 0.5}}})
    assert isinstance(cfg.sampler, SamplerConfig)
    assert cfg.sampler == resolve({"recipe": "scoremix_adaptdiff_uiface", "steps": 12, "negative": {"w_max": 0.5}})
    assert (cfg.sampler.cfg_scale, cfg.sampler.two_stage.mode, cfg.sampler.negative.schedule) == (1.0, "fixed", "linear")
    again = sfconfig.from_dict(Config, yaml.safe_load(sfconfig.dump_yaml(cfg)))
    assert again.sampler == cfg.sampler
    assert sfconfig.from_dict(Config, {}).sampler == resolve({"recipe": "cfg"})
    with pytest.raises(ConfigError, match=r"two_stage.t0=1.5 is out of range"):
        sfconfig.from_dict(Config, {"sampler": {"two_stage": {"t0": 1.5}}})
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['sampler.stepz'\]"):
        sfconfig.from_dict(Config, {"sampler": {"stepz": 3}})


def test_a_nested_sampler_section_names_where_it_sits():
    from synthface_ray import config as sfconfig
    from synthface_ray.train.preview import PreviewConfig

    preview = sfconfig.from_dict(PreviewConfig, {"sampler": {"recipe": "adaptdiff", "steps": 4}}, "preview.")
    assert (preview.sampler_config().negative.w_max, preview.sampler_config().steps) == (1.0, 4)
    with pytest.raises(ConfigError, match=r"^preview.sampler.steps"):
        sfconfig.from_dict(PreviewConfig, {"sampler": {"steps": 0}}, "preview.")
    with pytest.raises(ConfigError, match=r"preview.sampler.recipe"):
        sfconfig.from_dict(PreviewConfig, {"sampler": {"recipe": "dreambooth"}}, "preview.")


class ScriptedMaps(ToyNet):
    """A ToyNet that stands in for the attention processors' recording: each forward writes the
    next scripted h_t into the AttentionStep it is given (as ``(rows, k, 1, 1)`` maps, which
    ``AttentionStep.recorded`` flattens and normalises back to the unit vectors scripted)."""

    def __init__(self, maps: list[torch.Tensor]) -> None:
        super().__init__()
        self.maps, self.calls, self.forwards = maps, 0, 0

    def forward(self, sample, timestep, context, source=None, attention_kwargs=None):
        self.forwards += 1
        step = (attention_kwargs or {}).get("injection")
        if step is not None and step.record_rows is not None:
            rows = int(step.record_rows.sum())  # the rows still in stage 1: here always the last ones
            step.maps.append(self.maps[min(self.calls, len(self.maps) - 1)][-rows:, :, None, None])
            self.calls += 1
        return super().forward(sample, timestep, context, source)


def test_adaptive_switch_follows_eq5_on_the_recorded_maps():
    """d_t = ||h_{t+1} - h_t||; a row switches at the first step where d falls below th after
    being above it (UIFace eq. 5). Row 0's maps move a lot for two steps and then stop; row 1's
    keep moving, so it switches only at the fallback."""
    from synthface_ray.sampling.composite import CompositeDenoiser
    from synthface_ray.sampling.solvers import sample_euler

    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    maps = [torch.stack([a, a]), torch.stack([b, b]), torch.stack([a, a]), torch.stack([a, b]),
            torch.stack([a, a]), torch.stack([a, b]), torch.stack([a, a]), torch.stack([a, b])]
    p, c = PARAMS["edm"], conditions(batch=2)
    cfg = resolve({"steps": 8, "two_stage": {"mode": "adaptive", "th": 0.1, "fallback_t0": 0.2}})
    guided = CompositeDenoiser(p.denoiser(ScriptedMaps(maps)), p, c, cfg, attention_hw=SHAPE[-2:])
    sigmas = p.sigmas(8)
    sample_euler(guided, torch.zeros(2, *SHAPE), sigmas)
    taus = [p.tau(s) for s in sigmas[:-1].tolist()]
    # row 0: d = [-, 1.41, 1.41, 0, ...]: switches at the 4th evaluation (index 3)
    assert guided.log.t0[0].item() == pytest.approx(taus[3], abs=1e-6)  # sigma reaches D as float32
    # row 1: d never falls below th -> the first grid step with t/T <= fallback_t0
    assert guided.log.t0[1].item() == pytest.approx(max(t for t in taus if t <= 0.2), abs=1e-6)


def test_adaptive_switch_reads_the_maps_once_per_step_at_its_first_evaluation():
    """With Heun (two evaluations per step) the eq. 5 maps are read at each step's first
    evaluation (the trajectory point at sigma_i), never at the correction at sigma_{i+1}."""
    from synthface_ray.sampling.composite import CompositeDenoiser
    from synthface_ray.sampling.solvers import sample_heun

    class CountingMaps(ScriptedMaps):
        def __init__(self, maps):
            super().__init__(maps)
            self.read_at = []

    class Reading(CompositeDenoiser):
        """Notes the network forward at which each read of the eq. 5 maps happens."""

        def _adaptive_switch(self, rows, cols, tau, recorded):
            maps.read_at.append(maps.forwards)
            super()._adaptive_switch(rows, cols, tau, recorded)

    a = torch.tensor([1.0, 0.0])
    p, c = PARAMS["edm"], conditions(batch=2)
    cfg = resolve({"steps": 4, "solver": "heun", "two_stage": {"mode": "adaptive", "th": 0.1, "fallback_t0": 0.0}})
    maps = CountingMaps([torch.stack([a, a])])
    sample_heun(Reading(p.denoiser(maps), p, c, cfg, attention_hw=SHAPE[-2:]), torch.zeros(2, *SHAPE), p.sigmas(4))
    assert maps.read_at == [1, 3, 5, 7]  # forwards: step 0 at 1-2, step 1 at 3-4, step 2 at 5-6, step 3 at 7


def test_fixed_two_stage_switches_at_the_first_evaluation_at_or_below_t0():
    """The stage of every evaluation follows its own noise level (UIFace eq. 4), Heun's corrections
    included: the logged switch point is the largest grid t/T <= t0, for every solver."""
    p = PARAMS["edm"]
    taus = [p.tau(s) for s in p.sigmas(6, "karras")[:-1].tolist()]
    for solver in ("ddim", "heun", "euler"):
        cfg = resolve({"steps": 6, "solver": solver, "two_stage": {"mode": "fixed", "t0": 0.4}})
        out = sample(ToyNet(), p, conditions(batch=2), cfg, SHAPE)
        expected = round(max(t for t in taus if t <= 0.4) * p.num_timesteps)
        assert out.t0.tolist() == [expected, expected], solver


def test_the_composite_denoiser_needs_the_solvers_step_index():
    from synthface_ray.sampling.composite import CompositeDenoiser

    p = PARAMS["edm"]
    guided = CompositeDenoiser(p.denoiser(ToyNet()), p, conditions(batch=2), resolve({}))
    with pytest.raises(TypeError, match="step index"):
        guided(torch.zeros(2, *SHAPE), torch.full((2,), 1.0))


def test_every_sampler_solver_runs_through_the_solver_registry():
    from synthface_ray.sampling.solvers import SOLVERS

    for name in recipes.SOLVER_NAMES:
        assert resolve({"solver": name}).resolved_solver() in SOLVERS, name
