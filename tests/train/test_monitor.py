"""The rank-0 monitor: TensorBoard scalars (read back with TensorBoard's own reader) and the ETA
of the training step lines."""

from __future__ import annotations

import pytest

from synthface_ray import storage
from synthface_ray.train.monitor import Monitor, eta_text, read_metrics


@pytest.mark.parametrize("remaining, rate, text", [
    (0, 2.0, "0:00:00"), (100, 2.0, "0:00:50"), (7200, 1.0, "2:00:00"), (3725, 1.0, "1:02:05"),
    (10, 0.0, "?"), (-1, 1.0, "?")])
def test_eta_text(remaining, rate, text):
    assert eta_text(remaining, rate) == text


def test_scalars_and_log_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = storage.resolve(str(tmp_path / "run"))
    monitor = Monitor(run)
    monitor.log({"step": 2, "loss": 1.5, "lr": 0.1})
    monitor.scalars("heldout", {"accuracy": 0.75, "eer": 0.2, "name": "not a number", "ok": True}, 2)
    monitor.close()
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["heldout/accuracy", "heldout/eer", "train/loss", "train/lr"]
    assert [(e.step, e.value) for e in acc.Scalars("heldout/accuracy")] == [(2, 0.75)]
    assert read_metrics(run) == [{"step": 2, "loss": 1.5, "lr": 0.1}]
