"""Margin heads against hand-computed logits (ArcFace, CosFace, combined, inter-class filter)."""

from __future__ import annotations

import math

import pytest
import torch

from synthface_ray.config import ConfigError
from synthface_ray.models.recognition.margins import (
    MARGINS,
    CombinedMargin,
    MarginConfig,
    MarginHead,
    build_margin,
)

COS = torch.tensor([[0.8, 0.1, -0.3], [0.2, 0.6, 0.95]])
LABELS = torch.tensor([0, 1])


def test_arcface_adds_an_angle_to_the_target_only():
    out = build_margin(MarginConfig("arcface", s=10.0))(COS, LABELS)
    t0, t1 = math.cos(math.acos(0.8) + 0.5), math.cos(math.acos(0.6) + 0.5)
    expected = 10 * torch.tensor([[t0, 0.1, -0.3], [0.2, t1, 0.95]])
    assert torch.allclose(out, expected, atol=1e-6)


def test_cosface_subtracts_from_the_target_cosine():
    out = build_margin(MarginConfig("cosface", s=2.0, m=0.4))(COS, LABELS)
    assert torch.allclose(out, 2 * torch.tensor([[0.4, 0.1, -0.3], [0.2, 0.2, 0.95]]), atol=1e-6)


def test_combined_margin_formula_and_arcface_fallback_past_pi():
    m = CombinedMargin(s=1.0, m1=1.0, m2=0.5, m3=0.1)
    cos = torch.tensor([[0.5, 0.0], [-0.95, 0.0]])  # theta = 60 deg; theta = 161.8 deg > pi - 0.5
    out = m(cos, torch.tensor([0, 0]))
    assert out[0, 0].item() == pytest.approx(math.cos(math.acos(0.5) + 0.5) - 0.1, abs=1e-6)
    assert out[1, 0].item() == pytest.approx(-0.95 - 0.5 * math.sin(0.5) - 0.1, abs=1e-6)
    mult = CombinedMargin(s=1.0, m1=2.0, m2=0.0, m3=0.0)(torch.tensor([[0.5]]), torch.tensor([0]))
    assert mult.item() == pytest.approx(math.cos(2 * math.acos(0.5)), abs=1e-6)


def test_interclass_filter_zeroes_close_non_target_classes():
    out = CombinedMargin(s=1.0, m2=0.0, m3=0.0, interclass_threshold=0.5)(COS, LABELS)
    assert torch.allclose(out, torch.tensor([[0.8, 0.1, -0.3], [0.2, 0.6, 0.0]]), atol=1e-6)


def test_margin_head_loss_and_label_check():
    torch.manual_seed(0)
    head = MarginHead(3, 4, build_margin(MarginConfig("arcface", s=8.0)))
    emb = torch.randn(2, 4)
    loss = head(emb, LABELS)
    logits = build_margin(MarginConfig("arcface", s=8.0))(head.cosine(emb), LABELS)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, LABELS).item())
    assert torch.allclose(head.centers().norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        head(emb, torch.tensor([0, 3]))


def test_margin_config_validation():
    assert set(MARGINS) == {"arcface", "cosface", "combined"}
    with pytest.raises(ConfigError, match="margin.name"):
        MarginConfig("sphereface2")
    with pytest.raises(ConfigError, match="margin.interclass_threshold"):
        MarginConfig(interclass_threshold=1.5)
