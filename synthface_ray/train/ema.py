"""Exponential moving average of model weights (UIFace trains with EMA decay 0.999).

``EMA`` keeps a shadow copy of a model's parameters (and a copy of its buffers) and updates it in
place, ``shadow <- decay * shadow + (1 - decay) * param``, with one fused ``torch._foreach_lerp_``.
An optional warmup caps the decay at ``(1 + step) / (10 + step)`` (the TensorFlow / timm schedule)
so early, noisy weights are forgotten quickly.

DeepSpeed ZeRO-3: there the model's parameters are partitioned across ranks and a rank's
``param.data`` is an empty placeholder. The caller must gather them first, e.g.
``with deepspeed.zero.GatheredParameters(list(model.parameters())): ema.update(model)`` (and the
same around the constructor and :meth:`EMA.copy_to`, with ``modifier_rank=0`` for the latter).
This module does not import deepspeed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class EMA:
    """Shadow parameters and buffers of ``model``, keyed by their names."""

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = False) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay={decay!r} is out of range: allowed values are in [0, 1]")
        self.decay, self.warmup, self.step = decay, warmup, 0
        # fp32 shadow: a 0.999 lerp in bf16 would round most updates away
        self.shadow = {n: _master(p) for n, p in model.named_parameters()}
        self.buffers = {n: b.detach().clone() for n, b in model.named_buffers()}

    def effective_decay(self, decay: float | None = None) -> float:
        """``decay``, capped by ``(1 + step) / (10 + step)`` when warmup is on."""
        d = self.decay if decay is None else decay
        return min(d, (1 + self.step) / (10 + self.step)) if self.warmup else d

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float | None = None) -> float:
        """``shadow <- d shadow + (1 - d) param`` in place; buffers copied. Returns ``d`` used."""
        d = self.effective_decay(decay)
        params = dict(model.named_parameters())
        self._check_names(params, self.shadow, "parameters")
        names = list(self.shadow)
        torch._foreach_lerp_(
            [self.shadow[n] for n in names],
            [params[n].detach().to(self.shadow[n].dtype) for n in names],
            1.0 - d,
        )
        for name, buf in model.named_buffers():
            self.buffers[name].copy_(buf)
        self.step += 1
        return d

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the shadow parameters and buffers into ``model`` (e.g. before evaluation)."""
        params = dict(model.named_parameters())
        self._check_names(params, self.shadow, "parameters")
        for name, value in self.shadow.items():
            params[name].copy_(value.to(params[name].dtype))
        for name, buf in model.named_buffers():
            buf.copy_(self.buffers[name])

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: settings, step, shadow parameters and buffers."""
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "step": self.step,
            "shadow": dict(self.shadow),
            "buffers": dict(self.buffers),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; parameter names must match this EMA's."""
        self._check_names(state["shadow"], self.shadow, "parameters")
        self.decay, self.warmup, self.step = state["decay"], state["warmup"], int(state["step"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
        for name, value in state["buffers"].items():
            self.buffers[name].copy_(value)

    @staticmethod
    def _check_names(given: dict[str, Any], expected: dict[str, Any], what: str) -> None:
        if set(given) != set(expected):
            missing = sorted(set(expected) - set(given))
            extra = sorted(set(given) - set(expected))
            raise ValueError(
                f"EMA {what} do not match the model: missing {missing}, unexpected {extra}; "
                "build the EMA from the same model architecture"
            )


def _master(p: torch.Tensor) -> torch.Tensor:
    """A detached copy of ``p``; half-precision floats are kept in float32."""
    t = p.detach().clone()
    return t.float() if t.is_floating_point() and t.element_size() < 4 else t
