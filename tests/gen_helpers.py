"""Helpers of the generation tests: a tiny untrained generator export and a generate config
for the ``gen_inputs`` fixture (tests/generate/conftest.py)."""

from __future__ import annotations

import torch

from synthface_ray.models.generator import GeneratorConfig, IdentityGenerator

TINY = dict(sample_size=16, block_out_channels=(8, 16), cross_attention_levels=(False, True),
            attention_head_dim=8, norm_num_groups=4, context_dim=16, context_tokens=2,
            num_identities=10, embedding_dim=16)
EDM = {"name": "edm", "sigma_data": 0.5, "P_mean": -1.2, "P_std": 1.2}
SAMPLER = {"recipe": "scoremix_cfg", "solver": "ddim", "steps": 3,
           "negative": {"schedule": "linear", "w_max": 1.0}}


def save_generator(folder, condition: str = "class") -> str:
    torch.manual_seed(0)
    model = IdentityGenerator(GeneratorConfig(**TINY, condition=condition)).eval()
    with torch.no_grad():
        model.empty_context.normal_()
    model.save_pretrained(folder, extra_metadata={"objective": EDM})
    return str(folder)


def gen_config(inputs, out, name="run", **overrides):
    """A generate Config for the tiny inputs (override with dotted keys)."""
    from synthface_ray import config
    from synthface_ray.generate.config import Config

    base = [f"input.plan={inputs['plan']}", f"input.identities={inputs['identities']}",
            f"model.generator={inputs['generator']}", f"model.fr={inputs['fr']}",
            f"output.path={out}", f"output.name={name}", "output.rows_per_file=12",
            "pool.micro_batch=5", "pool.cpus_per_actor=0.25", "pool.fr_cpus=0.25",
            "pool.encode_cpus=0.5", "grid.identities=3", "grid.images=3", "grid.mixes=2"]
    sets = base + [f"{k}={v}" for k, v in overrides.items()]
    cfg = config.load(Config, None, sets)
    cfg.sampler = dict(SAMPLER)
    return cfg
