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
    from synthface_ray.sampling.recipes import SamplerConfig

    base = [f"input.plan={inputs['plan']}", f"input.identities={inputs['identities']}",
            f"model.generator={inputs['generator']}", f"model.fr={inputs['fr']}",
            f"output.path={out}", f"output.name={name}", "output.rows_per_file=12",
            "pool.micro_batch=5", "pool.cpus_per_actor=0.25", "pool.fr_cpus=0.25",
            "pool.encode_cpus=0.5", "grid.identities=3", "grid.images=3", "grid.mixes=2"]
    sets = base + [f"{k}={v}" for k, v in overrides.items()]
    cfg = config.load(Config, None, sets)
    cfg.sampler = SamplerConfig.from_section(dict(SAMPLER))  # as a config file's section resolves at load
    return cfg


def make_gen_inputs(root, images_per_identity: int = 4, images_per_mix: int = 2) -> dict:
    """Tiny real models and inputs under ``root``: an untrained class-conditioned generator
    (16x16, 10 identities), an untrained FR backbone (32x32 input), an identities table of its
    16-d space and a plan with plain rows, two ScoreMix pairs and negatives."""
    import numpy as np
    import pyarrow.parquet as pq

    from synthface_ray.data.identities import identities_table
    from synthface_ray.mining.plan import plan_rows
    from synthface_ray.models.recognition.embedder import save_backbone
    from synthface_ray.models.recognition.iresnet import BackboneConfig, build_backbone

    generator = save_generator(root / "generator")
    torch.manual_seed(0)
    fr_cfg = BackboneConfig(input_size=32, width=4, embedding_dim=16)
    fr = str(save_backbone(build_backbone(fr_cfg).eval(), fr_cfg, root / "fr"))
    emb = np.random.default_rng(0).standard_normal((10, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pq.write_table(identities_table(np.arange(10), emb, "class_center"), root / "ids.parquet")
    plan = plan_rows(np.arange(10), images_per_identity, negative_of={i: (i + 5) % 10 for i in range(10)},
                     mixes=[(100, [0, 1], [0.5, 0.5]), (101, [2, 7], [0.5, 0.5])],
                     images_per_mix=images_per_mix, seed=3)
    pq.write_table(plan, root / "plan.parquet")
    return {"generator": generator, "fr": fr, "identities": str(root / "ids.parquet"),
            "plan": str(root / "plan.parquet"), "root": root, "rows": plan.num_rows}
