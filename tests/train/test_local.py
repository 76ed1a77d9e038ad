"""FR training in one process from pixels in memory (the downstream objective of tune trials):
it learns, it is deterministic for a seed, and it refuses input it cannot train on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthface_ray.config import from_dict
from synthface_ray.data.toyfaces import ToyFacesConfig, render_arrays
from synthface_ray.train.local import class_ids, train_in_memory
from synthface_ray.train.recognition import TrainFRConfig

RECIPE = {"backbone": {"input_size": 32, "width": 4, "embedding_dim": 16},
          "margin": {"s": 16.0, "m": 0.2}, "optim": {"micro_batch": 8, "max_steps": 12, "lr": 0.05}}


def test_class_ids_are_dense_in_label_order():
    ids, n = class_ids(np.array([105, 7, 105, 30]))
    assert ids.tolist() == [2, 0, 2, 1] and n == 3


def test_trains_deterministically_and_the_loss_falls(process_group):
    pixels, labels = render_arrays(ToyFacesConfig(identities=4, images_per_identity=6, resolution=32))
    cfg = from_dict(TrainFRConfig, RECIPE)
    first, loss = train_in_memory(cfg, pixels, labels + 100)
    again, loss_again = train_in_memory(cfg, pixels, labels + 100)
    assert loss == loss_again
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    short, short_loss = train_in_memory(from_dict(TrainFRConfig, {**RECIPE, "optim": {**RECIPE["optim"], "max_steps": 1}}),
                                        pixels, labels)
    assert loss < short_loss  # 12 steps fit the 4 identities better than 1
    assert not first.training


def test_refuses_pixels_of_another_size_or_one_identity(process_group):
    cfg = from_dict(TrainFRConfig, RECIPE)
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
        train_in_memory(cfg, np.zeros((4, 16, 16, 3), np.uint8), np.arange(4))
    with pytest.raises(ValueError, match="2 or more identities"):
        train_in_memory(cfg, np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.int64))
