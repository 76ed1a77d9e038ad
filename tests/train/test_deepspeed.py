"""DeepSpeed config and a real single-process engine (gloo) on ZeRO stages 0, 2 and 3."""

from __future__ import annotations

import pytest
import torch

from synthface_ray.config import ConfigError
from synthface_ray.train import deepspeed as ds


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="deepspeed.zero_stage=4"):
        ds.DeepSpeedConfig(zero_stage=4)
    with pytest.raises(ConfigError, match="deepspeed.precision"):
        ds.DeepSpeedConfig(precision="fp8")
    with pytest.raises(ConfigError, match="zero_stage >= 1"):
        ds.DeepSpeedConfig(zero_stage=0, offload_optimizer=True)


def test_precision_on_cpu():
    cpu = torch.device("cpu")
    assert ds.resolve_precision("auto", cpu) == "fp32"
    assert ds.resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="fp16 is not supported on CPU"):
        ds.resolve_precision("fp16", cpu)


def test_ds_config_batch_arithmetic_and_precision():
    out = ds.ds_config(ds.DeepSpeedConfig(zero_stage=3), 8, 2, 4, "bf16")
    assert out["train_batch_size"] == 64 and out["zero_optimization"]["stage"] == 3
    assert out["bf16"] == {"enabled": True} and "fp16" not in out
    assert "fp16" not in ds.ds_config(ds.DeepSpeedConfig(), 1, 1, 1, "fp32")


def _engine(stage: int, seed: int = 0):
    import deepspeed

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    config = ds.ds_config(ds.DeepSpeedConfig(zero_stage=stage), 4, 1, 1, "fp32")
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=config, dist_init_required=False)
    return engine


def _step(engine, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(4, 6, generator=g), torch.randn(4, 1, generator=g)
    loss = torch.nn.functional.mse_loss(engine(x), y)
    engine.backward(loss)
    engine.step()
    return loss.item()


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_checkpoint_restore_gives_identical_next_loss(process_group, tmp_path, stage):
    engine = _engine(stage)
    for i in range(3):
        _step(engine, i)
    engine.save_checkpoint(str(tmp_path), tag="ckpt", client_state={"step": 3})
    expected = [_step(engine, 3), _step(engine, 4)]
    fresh = _engine(stage, seed=123)  # different init: only the checkpoint can make them agree
    _, client = fresh.load_checkpoint(str(tmp_path), tag="ckpt")
    assert client["step"] == 3
    # step 3's loss checks the weights; step 4's also checks the AdamW moments restored by step 3
    assert [_step(fresh, 3), _step(fresh, 4)] == expected
