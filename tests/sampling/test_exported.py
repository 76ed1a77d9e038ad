"""The composite sampler on a real (tiny, untrained) exported generator: loading, CASD source
pinning, UIFace attention injection and the adaptive two-stage switch through diffusers
attention processors."""

from __future__ import annotations

import pytest
import torch

from synthface_ray.models.generator import GeneratorConfig, IdentityGenerator
from synthface_ray.sampling import attention
from synthface_ray.sampling.composite import ConditionError, Conditions, sample
from synthface_ray.sampling.exported import load_generator
from synthface_ray.sampling.recipes import resolve

TINY = dict(sample_size=16, block_out_channels=(8, 16), cross_attention_levels=(False, True),
            attention_head_dim=8, norm_num_groups=4, context_dim=16, context_tokens=2,
            num_identities=10, num_sources=2)


@pytest.fixture(scope="module", params=["edm", "ddpm_eps"])
def exported(request, tmp_path_factory):
    torch.manual_seed(0)
    model = IdentityGenerator(GeneratorConfig(**TINY)).eval()
    with torch.no_grad():  # a visibly non-zero empty context and source embedding
        model.empty_context.normal_()
        model.source_embedding.weight.normal_()
    folder = tmp_path_factory.mktemp("gen") / "export"
    objective = {"name": "edm", "sigma_data": 0.5, "P_mean": -1.2, "P_std": 1.2} if request.param == "edm" \
        else {"name": "ddpm_eps", "num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02}
    model.save_pretrained(folder, extra_metadata={"objective": objective})
    return load_generator(folder)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def conds(gen, batch: int = 3) -> Conditions:
    ids = torch.arange(batch)
    return Conditions.single(gen.contexts(ids), gen.empty, ids, torch.arange(batch) + 7)


def test_loads_and_samples_every_recipe_family(exported):
    c = conds(exported)
    for recipe in ("conditional", "cfg", "uiface", "casd"):
        section = {"recipe": recipe, "steps": 4}
        if recipe == "casd" and exported.metadata["objective"]["name"] == "ddpm_eps":
            section["spacing"] = "karras"
        out = sample(exported.net, exported.param, c, section, exported.shape)
        assert out.images.shape == (3, *exported.shape) and torch.isfinite(out.images).all()


def test_source_label_changes_the_output_and_defaults_to_none(exported):
    c = conds(exported)
    real = sample(exported.net, exported.param, c, {"steps": 3, "source": 0}, exported.shape).images
    synthetic = sample(exported.net, exported.param, c, {"steps": 3, "source": 2}, exported.shape).images
    unset = sample(exported.net, exported.param, c, {"steps": 3}, exported.shape).images
    assert not torch.allclose(real, synthetic)
    torch.testing.assert_close(unset, real)  # the model's own default source is real (0)


def test_installed_processors_with_injection_off_reproduce_the_stock_output(exported):
    """Bit for bit against the module's own processors (``AttnProcessor2_0``, SDPA), which the
    injection processors run whenever no row of a forward needs the attention probabilities."""
    c, cfg = conds(exported), {"recipe": "uiface", "steps": 4}
    stock = sample(exported.net, exported.param, c, cfg, exported.shape).images
    previous = attention.install(exported.unet)
    try:
        idle = sample(exported.net, exported.param, c, cfg, exported.shape).images
    finally:
        attention.uninstall(exported.unet, previous)
    assert torch.equal(idle, stock)


def test_attention_injection_changes_stage_two_and_evaluates_the_empty_pass(exported):
    c, steps = conds(exported), 6
    base = {"steps": steps, "two_stage": {"mode": "fixed", "t0": 0.5}}
    plain = sample(exported.net, exported.param, c, base, exported.shape)
    inj = sample(exported.net, exported.param, c,
                 {**base, "two_stage": {**base["two_stage"], "attention_injection": True}},
                 exported.shape, unet=exported.unet)
    assert not torch.allclose(plain.images, inj.images)
    # cfg_scale 0: each stage costs one context per step; injection adds the empty pass it
    # reads from to every stage-2 step
    assert plain.nfe.tolist() == [steps] * 3
    stage2 = [s for s in exported.param.sigmas(steps)[:-1].tolist() if exported.param.tau(s) <= 0.5]
    assert inj.nfe.tolist() == [steps + len(stage2)] * 3
    assert (inj.t0 == plain.t0).all() and (plain.t0 >= 0).all()
    with pytest.raises(ConditionError, match="pass unet="):
        sample(exported.net, exported.param, c,
               {**base, "two_stage": {**base["two_stage"], "attention_injection": True}}, exported.shape)


def test_adaptive_switch_gives_each_sample_a_t0_between_fallback_and_T(exported):
    c = conds(exported, 4)
    cfg = resolve({"recipe": "uiface_adaptive", "steps": 10})
    out = sample(exported.net, exported.param, c, cfg, exported.shape, unet=exported.unet)
    T, p = exported.param.num_timesteps, exported.param
    taus = [p.tau(s) for s in p.sigmas(10)[:-1].tolist()]
    latest = max(t for t in taus if t <= cfg.two_stage.fallback_t0)  # the fallback's grid step
    assert ((out.t0 >= round(latest * T)) & (out.t0 <= T)).all(), out.t0
    assert torch.isfinite(out.images).all()


def test_injection_layers_are_chosen_by_module_name(exported):
    c = conds(exported)
    base = {"steps": 4, "two_stage": {"mode": "fixed", "t0": 0.5, "attention_injection": True}}
    everywhere = sample(exported.net, exported.param, c, base, exported.shape, unet=exported.unet)
    up_only = {**base, "two_stage": {**base["two_stage"], "layers": ["up_blocks"]}}
    some = sample(exported.net, exported.param, c, up_only, exported.shape, unet=exported.unet)
    assert not torch.allclose(everywhere.images, some.images)
    wrong = {**base, "two_stage": {**base["two_stage"], "layers": ["no_such_block"]}}
    with pytest.raises(ValueError, match="no attention module matches"):
        sample(exported.net, exported.param, c, wrong, exported.shape, unet=exported.unet)
    kinds = {type(p).__name__ for p in exported.unet.attn_processors.values()}
    assert "InjectionAttnProcessor" not in kinds  # the stock processors are back after each call
