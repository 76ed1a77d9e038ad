"""FRSession in one process (gloo, world size 1): learning, checkpoint/resume, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthface_ray import storage
from synthface_ray.config import ConfigError, from_dict
from synthface_ray.models.recognition.embedder import Embedder
from synthface_ray.train.recognition import FRSession, TrainFRConfig

BASE = {
    "backbone": {"input_size": 32, "width": 4, "embedding_dim": 16},
    "margin": {"name": "arcface", "s": 16.0, "m": 0.2},
    "optim": {"name": "sgd", "lr": 0.05, "milestones": [3], "micro_batch": 8},
    "num_classes": 4,
}


def make_cfg(**sections) -> TrainFRConfig:
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    for key, value in sections.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return from_dict(TrainFRConfig, data)


def batch(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(8, 3, 32, 32, generator=g) * 2 - 1, "label": torch.arange(8) % 4}


def session(cfg: TrainFRConfig) -> FRSession:
    return FRSession(cfg, 0, 1, torch.device("cpu"), "fp32")


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_checkpoint_restores_the_next_steps_exactly(process_group, tmp_path, stage):
    cfg = make_cfg(deepspeed={"zero_stage": stage}, augment={"flip": 0.5, "crop_scale": 0.8})
    a = session(cfg)
    for i in range(3):
        a.train_step([batch(i)])
    a.save(tmp_path)
    b = session(make_cfg(deepspeed={"zero_stage": stage}, augment={"flip": 0.5, "crop_scale": 0.8},
                         run={"seed": 7}))
    b.load(tmp_path)
    assert b.step == 3 and b.engine.get_lr() == a.engine.get_lr() == [0.05 * 0.1]  # milestone 3
    for i in (3, 4):
        assert float(a.train_step([batch(i)])) == float(b.train_step([batch(i)]))


def test_learns_a_fixed_batch_and_exports_an_embedder(process_group, tmp_path):
    s = session(make_cfg(optim={"name": "adamw", "lr": 3e-3, "milestones": []}, augment={"flip": 0.0}))
    fixed = batch(0)
    first = float(s.train_step([fixed]))
    for _ in range(40):
        last = float(s.train_step([fixed]))
    assert last < 0.3 * first, (first, last)
    s.export(storage.resolve(tmp_path / "fr"))
    embed = Embedder.from_pretrained(tmp_path / "fr", device="cpu")
    emb = embed(fixed["image"])
    centres = torch.load(tmp_path / "fr" / "centers.pt").numpy()
    assert (np.argmax(emb @ centres.T, axis=1) == fixed["label"].numpy()).all()


def test_config_validation():
    with pytest.raises(ConfigError, match="optim.name"):
        make_cfg(optim={"name": "lamb"})
    with pytest.raises(ConfigError, match="backbone.name"):
        make_cfg(backbone={"name": "vit"})
    with pytest.raises(ConfigError, match="margin.name"):
        make_cfg(margin={"name": "adaface"})
    with pytest.raises(ConfigError, match="holdout.identities=1"):
        make_cfg(holdout={"identities": 1})
    with pytest.raises(ConfigError, match="holdout.source=1"):
        make_cfg(holdout={"identities": 2, "source": 1})
    with pytest.raises(ConfigError, match="not both"):
        make_cfg(data={"path": "a", "sources": [{"path": "b"}]})
    with pytest.raises(ConfigError, match="weight"):
        make_cfg(data={"path": None, "sources": [{"path": "b", "weight": 0}]})


def test_zero3_export_gathers_the_partitioned_weights(process_group, tmp_path):
    s = session(make_cfg(deepspeed={"zero_stage": 3}))
    s.train_step([batch(0)])
    backbone, centres = s.trained()
    ref = session(make_cfg(deepspeed={"zero_stage": 0}))
    ref.train_step([batch(0)])
    ref_backbone, ref_centres = ref.trained()
    assert centres.shape == (4, 16)
    torch.testing.assert_close(centres, ref_centres, rtol=1e-4, atol=1e-5)
    for (k, v), (_, w) in zip(backbone.state_dict().items(), ref_backbone.state_dict().items(), strict=True):
        torch.testing.assert_close(v, w, rtol=1e-4, atol=1e-5, msg=k)


def test_initial_backbone_is_where_every_run_with_the_seed_starts(process_group):
    """The benchmark's random_init arm is the trained arms' starting point, seed for seed."""
    from synthface_ray.train.recognition import initial_backbone

    for seed in (0, 3):
        cfg = make_cfg(run={"seed": seed})
        start = session(cfg).engine.module.backbone.state_dict()
        floor = initial_backbone(cfg).state_dict()
        assert all(torch.equal(start[k], floor[k]) for k in floor)
    other = initial_backbone(make_cfg(run={"seed": 1})).state_dict()
    assert not all(torch.equal(other[k], floor[k]) for k in floor)
