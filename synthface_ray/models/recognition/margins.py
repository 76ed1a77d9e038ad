"""Margin-based softmax heads for face recognition.

All margins here are cases of the combined margin of insightface's ``CombinedMarginLoss``:
for the target class, ``logit = s (cos(m1 theta + m2) - m3)`` with ``theta = arccos(cos)``; other
classes keep ``s cos``.

- ArcFace (Deng et al. 2019, eq. 3): ``m1 = 1, m2 = 0.5, m3 = 0`` (additive angular margin).
- CosFace (Wang et al. 2018, eq. 4): ``m1 = 1, m2 = 0, m3 = 0.35`` (additive cosine margin).
- SphereFace-style multiplicative ``m1 > 1`` (with ``m2 = m3 = 0``).

A margin is a callable ``(cosine (B, C), labels (B,)) -> logits (B, C)``, chosen by name through
:data:`MARGINS` and handed to :class:`MarginHead` (as arcface_torch's ``PartialFC(margin_loss=...)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from synthface_ray.config import ConfigError, check_choice, check_range

Margin = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def filter_interclass(cosine: torch.Tensor, labels: torch.Tensor, threshold: float) -> torch.Tensor:
    """Zero the non-target cosines above ``threshold`` (arcface_torch's
    ``interclass_filtering_threshold``): a synthetic identity too close to another one is not
    pushed away from it. ``threshold <= 0`` disables."""
    if threshold <= 0:
        return cosine
    with torch.no_grad():
        dirty = cosine > threshold
        dirty[torch.arange(len(labels), device=labels.device), labels] = False
    return cosine.masked_fill(dirty, 0.0)


class CombinedMargin:
    """``s (cos(m1 theta + m2) - m3)`` on the target logit, ``s cos`` elsewhere.

    For the additive angular case (``m1 = 1``), once ``theta + m2 > pi`` the function stops being
    monotonic in theta; as insightface, the target logit then becomes ``cos theta - m2 sin m2``
    (a linear continuation) so that the loss keeps pushing theta down.
    """

    def __init__(self, s: float = 64.0, m1: float = 1.0, m2: float = 0.5, m3: float = 0.0,
                 interclass_threshold: float = 0.0) -> None:
        self.s, self.m1, self.m2, self.m3 = s, m1, m2, m3
        self.interclass_threshold = interclass_threshold

    def __call__(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = filter_interclass(cosine.clamp(-1, 1), labels, self.interclass_threshold)
        rows = torch.arange(len(labels), device=labels.device)
        target = cosine[rows, labels]
        new = target_logit(target, self.m1, self.m2, self.m3)
        return self.s * cosine.index_put((rows, labels), new.to(cosine.dtype))


def target_logit(cos_t: torch.Tensor, m1: float, m2: float, m3: float) -> torch.Tensor:
    """``cos(m1 theta + m2) - m3`` with insightface's fallback ``cos theta - m2 sin m2`` where
    ``theta > pi - m2`` (only for ``m1 = 1, m2 > 0``)."""
    if m1 == 1.0 and m2 == 0.0:
        return cos_t - m3
    theta = torch.arccos(cos_t.clamp(-1 + 1e-7, 1 - 1e-7))
    out = torch.cos(m1 * theta + m2) - m3
    if m1 == 1.0 and m2 > 0:
        out = torch.where(theta > math.pi - m2, cos_t - m2 * math.sin(m2) - m3, out)
    return out


@dataclass
class MarginConfig:
    """``name``: arcface, cosface or combined (explicit ``m1, m2, m3``); ``s`` the scale.
    ``m`` is the margin of arcface (radians, 0.5) or cosface (0.35 when null)."""

    name: str = "arcface"
    s: float = 64.0
    m: float | None = None
    m1: float = 1.0
    m2: float = 0.0
    m3: float = 0.0
    interclass_threshold: float = 0.0

    def __post_init__(self) -> None:
        check_choice("margin.name", self.name, MARGINS)
        check_range("margin.s", self.s, 1e-6)
        check_range("margin.interclass_threshold", self.interclass_threshold, 0.0, 1.0)
        if self.m is not None and self.m < 0:
            raise ConfigError(f"margin.m={self.m} must be >= 0")


def _arcface(c: MarginConfig) -> Margin:
    return CombinedMargin(c.s, 1.0, 0.5 if c.m is None else c.m, 0.0, c.interclass_threshold)


def _cosface(c: MarginConfig) -> Margin:
    return CombinedMargin(c.s, 1.0, 0.0, 0.35 if c.m is None else c.m, c.interclass_threshold)


def _combined(c: MarginConfig) -> Margin:
    return CombinedMargin(c.s, c.m1, c.m2, c.m3, c.interclass_threshold)


#: margin name -> factory from a :class:`MarginConfig`
MARGINS: dict[str, Callable[[MarginConfig], Margin]] = {
    "arcface": _arcface, "cosface": _cosface, "combined": _combined,
}


def build_margin(config: MarginConfig) -> Margin:
    return MARGINS[config.name](config)


class MarginHead(nn.Module):
    """Class centres ``W`` (C, D); cross-entropy over ``margin(normalize(x) normalize(W)^T)``."""

    def __init__(self, num_classes: int, embedding_dim: int, margin: Margin) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, embedding_dim) * 0.01)
        self.margin = margin

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float()))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy loss of the margin logits."""
        n = self.weight.shape[0]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n):
            raise ValueError(f"labels must be in [0, {n}) (num_classes={n}), got "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        return F.cross_entropy(self.margin(self.cosine(embeddings), labels), labels)

    def centers(self) -> torch.Tensor:
        """Unit-norm class centres (C, D)."""
        return F.normalize(self.weight.detach().float())


__all__ = [
    "MARGINS", "CombinedMargin", "MarginConfig", "MarginHead", "build_margin", "filter_interclass",
    "target_logit",
]
