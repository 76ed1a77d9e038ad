"""IResNet backbones: shapes for every registered depth, the insightface layout, overfitting."""

from __future__ import annotations

import pytest
import torch

from synthface_ray.config import ConfigError
from synthface_ray.models.recognition.iresnet import (
    BACKBONES,
    DEPTHS,
    BackboneConfig,
    build_backbone,
)
from synthface_ray.models.recognition.margins import MarginConfig, MarginHead, build_margin


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_maps_images_to_embeddings(name):
    net = build_backbone(BackboneConfig(name=name, input_size=32, width=4, embedding_dim=16)).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 16) and torch.isfinite(out).all()
    blocks = sum(len(stage) for stage in net.stages)
    assert blocks == sum(DEPTHS[name])


def test_insightface_head_and_input_sizes():
    net = build_backbone(BackboneConfig(input_size=112, width=8))
    assert net.head[-1].in_features == 64 * 7 * 7  # 112 px -> 7x7 map of 8 * width channels
    assert not net.features.weight.requires_grad
    with pytest.raises(ValueError, match=r"\(B, 3, 112, 112\)"):
        net(torch.randn(1, 3, 32, 32))
    with pytest.raises(ConfigError, match="multiple of 16"):
        BackboneConfig(input_size=40)
    with pytest.raises(ConfigError, match="backbone.name"):
        BackboneConfig(name="resnet18")


def test_tiny_iresnet_overfits_a_tiny_set():
    torch.manual_seed(0)
    net = build_backbone(BackboneConfig(input_size=32, width=8, embedding_dim=32))
    head = MarginHead(4, 32, build_margin(MarginConfig("arcface", s=16.0, m=0.2)))
    x = torch.rand(16, 3, 32, 32) * 2 - 1
    y = torch.arange(16) % 4
    opt = torch.optim.AdamW(list(net.parameters()) + list(head.parameters()), lr=3e-3)
    first = None
    for _ in range(60):
        loss = head(net(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = head.cosine(net(x)).argmax(dim=1)
    assert loss.item() < 0.2 * first and (pred == y).all(), (first, loss.item())
