"""Tiny real models and inputs for the generation tests: an untrained class-conditioned
generator (16x16, 10 identities), an untrained FR backbone (32x32 input: images are resized), an
identities table of its 16-d space and a plan with plain rows, ScoreMix pairs and negatives."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from gen_helpers import save_generator

from synthface_ray.data.identities import identities_table
from synthface_ray.mining.plan import plan_rows


@pytest.fixture(scope="session")
def gen_inputs(tmp_path_factory):
    """Paths of the generator, FR model, identities (ids 0..9) and a 44-row plan."""
    from synthface_ray.models.recognition.embedder import save_backbone
    from synthface_ray.models.recognition.iresnet import BackboneConfig, build_backbone

    root = tmp_path_factory.mktemp("geninputs")
    generator = save_generator(root / "generator")
    torch.manual_seed(0)
    fr_cfg = BackboneConfig(input_size=32, width=4, embedding_dim=16)
    fr = str(save_backbone(build_backbone(fr_cfg).eval(), fr_cfg, root / "fr"))
    emb = np.random.default_rng(0).standard_normal((10, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pq.write_table(identities_table(np.arange(10), emb, "class_center"), root / "ids.parquet")
    plan = plan_rows(np.arange(10), 4, negative_of={i: (i + 5) % 10 for i in range(10)},
                     mixes=[(100, [0, 1], [0.5, 0.5]), (101, [2, 7], [0.5, 0.5])], images_per_mix=2, seed=3)
    pq.write_table(plan, root / "plan.parquet")
    return {"generator": generator, "fr": fr, "identities": str(root / "ids.parquet"),
            "plan": str(root / "plan.parquet"), "root": root}

