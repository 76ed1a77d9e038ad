"""IResNet backbones in the insightface layout (Deng et al., ArcFace; arcface_torch).

Stem ``conv3x3(64) - BN - PReLU``; four stages of improved basic blocks
``BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN`` (+ 1x1-conv shortcut where the shape
changes), each stage halving the resolution; head ``BN - Dropout - Flatten - FC - BN`` to a
512-d embedding (the last BN without a learnable scale). Depths 18/34/50/100 differ only in blocks
per stage. ``width`` scales all channels (64 in insightface) for small CPU models; the input
side must be a multiple of 16 between 32 and 112 (112 -> a 7x7 map before the head).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from synthface_ray.config import ConfigError, check_choice, check_range

#: blocks per stage, by depth (insightface iresnet18/34/50/100)
DEPTHS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}


@dataclass
class BackboneConfig:
    """``name`` from :data:`BACKBONES`; ``input_size`` in 32..112, a multiple of 16."""

    name: str = "iresnet18"
    input_size: int = 32
    width: int = 64
    embedding_dim: int = 512
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_choice("backbone.name", self.name, BACKBONES)
        check_range("backbone.input_size", self.input_size, 32, 112)
        if self.input_size % 16:
            raise ConfigError(
                f"backbone.input_size={self.input_size} must be a multiple of 16 (four stride-2 "
                "stages): use 32, 48, 64, 80, 96 or 112"
            )
        check_range("backbone.width", self.width, 1)
        check_range("backbone.embedding_dim", self.embedding_dim, 1)
        check_range("backbone.dropout", self.dropout, 0.0, 0.99)


class IBasicBlock(nn.Module):
    """``BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN`` plus the (projected) input."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in, eps=1e-5),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out, eps=1e-5),
            nn.PReLU(c_out),
            nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out, eps=1e-5),
        )
        self.shortcut = (
            nn.Identity() if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out, eps=1e-5))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class IResNet(nn.Module):
    """Image batch (B, 3, S, S) in [-1, 1] -> embedding (B, embedding_dim), not normalised."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        widths = (w, 2 * w, 4 * w, 8 * w)
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w, eps=1e-5),
                                  nn.PReLU(w))
        stages, c_in = [], w
        for c_out, blocks in zip(widths, DEPTHS[config.name]):
            layers = [IBasicBlock(c_in, c_out, 2)] + [IBasicBlock(c_out, c_out, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        side = config.input_size // 16
        self.head = nn.Sequential(
            nn.BatchNorm2d(c_in, eps=1e-5), nn.Dropout(config.dropout), nn.Flatten(),
            nn.Linear(c_in * side * side, config.embedding_dim),
        )
        self.features = nn.BatchNorm1d(config.embedding_dim, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False  # insightface: BN without a learnable scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.input_size
        if x.dim() != 4 or x.shape[1:] != (3, s, s):
            raise ValueError(f"expected images of shape (B, 3, {s}, {s}) (backbone.input_size={s}), "
                             f"got {tuple(x.shape)}")
        return self.features(self.head(self.stages(self.stem(x))))


def _iresnet(config: BackboneConfig) -> IResNet:
    return IResNet(config)


#: backbone name -> constructor from a :class:`BackboneConfig`
BACKBONES: dict[str, Callable[[BackboneConfig], nn.Module]] = {name: _iresnet for name in DEPTHS}


def build_backbone(config: BackboneConfig) -> nn.Module:
    return BACKBONES[config.name](config)


__all__ = ["BACKBONES", "DEPTHS", "BackboneConfig", "IBasicBlock", "IResNet", "build_backbone"]
