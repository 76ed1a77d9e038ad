"""Embedder: unit-norm embeddings independent of batch size; export round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthface_ray.models.recognition.embedder import Embedder, save_backbone
from synthface_ray.models.recognition.iresnet import BackboneConfig, build_backbone


@pytest.fixture
def trained_backbone():
    """A tiny backbone whose BatchNorm running statistics are no longer the defaults."""
    torch.manual_seed(0)
    cfg = BackboneConfig(input_size=32, width=4, embedding_dim=16)
    net = build_backbone(cfg).train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 3, 32, 32))
    return net, cfg


def test_unit_norm_and_batch_size_independent(trained_backbone):
    net, cfg = trained_backbone
    embed = Embedder(net, cfg, device="cpu")
    x = torch.rand(9, 3, 32, 32) * 2 - 1
    full = embed(x, batch_size=9)
    ones = np.concatenate([embed(x[i:i + 1]) for i in range(9)])
    assert np.allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)
    assert np.allclose(full, ones, atol=1e-5)
    assert np.allclose(embed(x, batch_size=4), full, atol=1e-5)
    pixels = ((x.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    assert np.allclose(embed(pixels), embed(pixels.permute(0, 3, 1, 2).float() / 127.5 - 1), atol=1e-6)


def test_export_round_trip(trained_backbone, tmp_path):
    net, cfg = trained_backbone
    save_backbone(net, cfg, tmp_path / "fr")
    loaded = Embedder.from_pretrained(tmp_path / "fr", device="cpu")
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    assert np.array_equal(loaded(x), Embedder(net, cfg, device="cpu")(x))
    with pytest.raises(FileNotFoundError, match="exported FR backbone"):
        Embedder.from_pretrained(tmp_path / "nothing")
