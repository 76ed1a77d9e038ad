"""UIFace attention injection (eq. 6-7) and cross-attention recording (eq. 5) on diffusers'
attention-processor API.

A batched UNet forward holds *empty-context* rows (conditioned on the learnable ``c_e``) and
*conditional* rows (identity context ``c``) of the same samples. The caller builds one
:class:`AttentionStep` per forward, saying per row which row is its empty-context partner
(``pairs``) and which rows to record (``record_rows``), and passes it WITH that forward
(diffusers' ``cross_attention_kwargs={"injection": step}``; the generator's ``attention_kwargs``).
The processors hold no state between forwards; what they record lands in that step object.

- Self-attention (``attn1``), UIFace sec. 3.4: ``h_self^c = h_self^{c_e}``. The probability map of
  conditional row ``i`` is replaced by that of its partner ``p(i)``; the values stay row ``i``'s.
- Cross-attention (``attn2``), UIFace eq. 6-7: ``h_cross^c`` is renormalised to the mean and std of
  ``h_cross^{c_e}``. The paper takes them "along the spatial dimensions", so they are computed over
  the query (pixel) axis separately for every row, head and context token.
- Recording, UIFace eq. 5 (``h_t``): per recorded row, the cross-attention probabilities averaged
  over heads, resized to the smallest recorded resolution, averaged over layers, flattened
  (token-major) and L2-normalised: a ``(n_rows, context_tokens * h_min * w_min)`` tensor.

Where the maps are needed: only the rows injected (``pairs >= 0``), the partners they read from,
and the recorded rows (every row with ``debug``) need the attention probabilities themselves. Those
rows go through diffusers' ``AttnProcessor`` (the processor that materialises the probabilities),
with the probabilities rewritten between its softmax and its product with the values; every other
row, and every forward with nothing to inject or record, goes through the module's own processor
(``AttnProcessor2_0``, i.e. ``scaled_dot_product_attention``, by default). Which path a row takes
depends only on its own sample's state, so a row's output does not depend on the rest of the batch.

Every operation is row-local: a row's output depends only on its own hidden states and on its
partner's un-injected maps of the same layer, so permuting the batch (and remapping ``pairs``)
permutes the outputs. Pure torch + diffusers; nothing happens at import time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

_EPS = 1e-8  # floor on sigma_c in eq. 7 (a constant map, e.g. a single-token context, has std 0)
KWARG = "injection"  # the cross_attention_kwargs key that carries an AttentionStep to the processors


@dataclass
class AttentionStep:
    """The inputs of the injection processors for ONE UNet forward, and what they record in it.

    ``pairs``: ``(batch,)`` long; for row ``i`` the index of its empty-context row in the SAME
    batch, or ``-1`` (no injection for that row). ``None`` = no injection at all.
    ``record_rows``: ``(batch,)`` bool; rows whose cross-attention maps are recorded (the empty
    rows, for UIFace eq. 5). ``None`` = record nothing.
    ``inject`` / ``record``: switch injection / recording off whatever ``pairs`` / ``record_rows`` say.
    ``sample_hw``: spatial size of the UNet input; only needed to unflatten the maps of
    non-square inputs for recording (square maps are inferred from the token count).
    ``debug``: keep each processor's probabilities in ``last_raw_probs`` (as computed) and
    ``last_probs`` (as used, after injection), keyed by module name, each shaped
    ``(batch, heads, query_len, key_len)``.
    """

    pairs: torch.Tensor | None = None
    record_rows: torch.Tensor | None = None
    inject: bool = True
    record: bool = False
    debug: bool = False
    sample_hw: tuple[int, int] | None = None
    maps: list[torch.Tensor] = field(default_factory=list)
    last_probs: dict[str, torch.Tensor] = field(default_factory=dict)
    last_raw_probs: dict[str, torch.Tensor] = field(default_factory=dict)

    def clear(self) -> None:
        """Drop what a forward recorded (maps, debug probabilities), to reuse the inputs."""
        self.maps = []
        self.last_probs = {}
        self.last_raw_probs = {}

    def kwargs(self) -> dict[str, AttentionStep]:
        """``cross_attention_kwargs`` that hand this step to the processors of one forward."""
        return {KWARG: self}

    def active_pairs(self, batch: int, device: torch.device) -> torch.Tensor | None:
        """``pairs`` validated for a batch of ``batch`` rows, or ``None`` if nothing is injected."""
        if not self.inject or self.pairs is None:
            return None
        pairs = self.pairs.to(device=device, dtype=torch.long)
        if pairs.shape != (batch,):
            raise ValueError(f"pairs has shape {tuple(pairs.shape)}, expected ({batch},)")
        if bool(((pairs < -1) | (pairs >= batch)).any()):
            raise ValueError(f"pairs must be -1 or a row index in [0, {batch})")
        return pairs if bool((pairs >= 0).any()) else None

    def active_record_rows(self, batch: int, device: torch.device) -> torch.Tensor | None:
        """``record_rows`` validated for a batch of ``batch`` rows, or ``None`` if not recording."""
        if not self.record or self.record_rows is None:
            return None
        rows = self.record_rows.to(device=device, dtype=torch.bool)
        if rows.shape != (batch,):
            raise ValueError(f"record_rows has shape {tuple(rows.shape)}, expected ({batch},)")
        return rows if bool(rows.any()) else None

    def add_map(self, probs: torch.Tensor, rows: torch.Tensor) -> None:
        """Store one cross-attention layer's head-averaged map of the recorded rows (UIFace eq. 5).

        ``probs``: ``(batch, heads, q, k)``; stored as ``(n_rows, k, h, w)`` float32.
        """
        mean = probs[rows].detach().float().mean(dim=1)  # (n, q, k)
        h, w = spatial_shape(mean.shape[1], self.sample_hw)
        self.maps.append(mean.transpose(1, 2).reshape(mean.shape[0], mean.shape[2], h, w))

    def recorded(self) -> torch.Tensor | None:
        """``h_t`` of UIFace eq. 5 for the rows of ``record_rows`` (in batch order), from every
        cross-attention layer of the forward: ``(n_rows, F)``, unit L2 norm per row.

        Each layer's map is resized (area interpolation) to the smallest recorded resolution,
        the layers are averaged, and the ``(k, h, w)`` map is flattened and L2-normalised. The
        context tokens are kept apart: the per-pixel average over tokens of softmax
        probabilities is the constant ``1 / k``, which would carry no information.
        """
        if not self.maps:
            return None
        h, w = min((m.shape[-2:] for m in self.maps), key=lambda s: s[0] * s[1])
        resized = [m if m.shape[-2:] == (h, w) else F.interpolate(m, size=(h, w), mode="area")
                   for m in self.maps]
        mean = torch.stack(resized).mean(dim=0)
        return F.normalize(mean.flatten(1), dim=1)


def spatial_shape(tokens: int, sample_hw: tuple[int, int] | None = None) -> tuple[int, int]:
    """``(h, w)`` of a feature map flattened to ``tokens`` pixels: square when ``sample_hw`` is
    ``None``, otherwise with the aspect ratio of ``sample_hw`` (the UNet input size)."""
    if sample_hw is None:
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ValueError(f"cannot unflatten {tokens} pixels to a square map; set "
                             "AttentionStep.sample_hw to the UNet input size")
        return side, side
    height, width = sample_hw
    factor = math.sqrt(height * width / tokens)
    h, w = max(1, round(height / factor)), max(1, round(width / factor))
    if h * w != tokens:
        raise ValueError(f"cannot unflatten {tokens} pixels with the aspect of {sample_hw}")
    return h, w


def inject_self(probs: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Self-attention injection (UIFace sec. 3.4, ``h_self^c = h_self^{c_e}``): row ``i`` with
    ``pairs[i] >= 0`` takes the map of row ``pairs[i]``. ``probs``: ``(batch, heads, q, k)``."""
    rows = (pairs >= 0).nonzero(as_tuple=True)[0]
    out = probs.clone()
    out[rows] = probs[pairs[rows]]
    return out


def renormalize(target: torch.Tensor, source: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """UIFace eq. 6-7: ``(h^c - mu_c) / sigma_c * sigma_ce + mu_ce``, with mean and std taken
    "along the spatial dimensions", i.e. over the query axis (dim -2) separately for every row,
    head and context token. ``target`` (``h_cross^c``) and ``source`` (``h_cross^{c_e}``):
    ``(n, heads, q, k)``. The std is the population one (the result does not depend on the
    choice, both stds being over the same number of pixels); ``sigma_c`` is floored at ``eps``.
    """
    mu_c, mu_e = target.mean(dim=-2, keepdim=True), source.mean(dim=-2, keepdim=True)
    sigma_c = target.std(dim=-2, correction=0, keepdim=True)
    sigma_e = source.std(dim=-2, correction=0, keepdim=True)
    return (target - mu_c) / sigma_c.clamp_min(eps) * sigma_e + mu_e


def inject_cross(probs: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Cross-attention injection (UIFace eq. 6-7): row ``i`` with ``pairs[i] >= 0`` is
    renormalised to the spatial mean/std of row ``pairs[i]``.
    ``probs``: ``(batch, heads, q, k)``."""
    rows = (pairs >= 0).nonzero(as_tuple=True)[0]
    out = probs.clone()
    out[rows] = renormalize(probs[rows], probs[pairs[rows]]).to(probs.dtype)
    return out


@dataclass
class _Plan:
    """One layer's work in one forward: the rows that need the probabilities (``need``), the
    injection ``pairs`` and the recorded ``rows``, all in the coordinates of the call's batch."""

    need: torch.Tensor
    pairs: torch.Tensor | None
    rows: torch.Tensor | None

    def needed_only(self) -> _Plan:
        """The same plan for a call on the needed rows alone (pairs re-indexed into them)."""
        index = torch.cumsum(self.need.long(), 0) - 1  # batch row -> row among the needed ones
        pairs = None
        if self.pairs is not None:
            pairs = self.pairs[self.need]
            pairs = torch.where(pairs >= 0, index[pairs.clamp_min(0)], pairs)
        ones = torch.ones(int(self.need.sum()), dtype=torch.bool, device=self.need.device)
        return _Plan(ones, pairs, None if self.rows is None else self.rows[self.need])


def plan_rows(step: AttentionStep | None, batch: int, is_cross: bool, device) -> _Plan | None:
    """Which rows of a layer's call need the attention probabilities: injected rows, their
    partners, recorded rows (cross-attention only), every row with ``debug``. ``None``: none."""
    if step is None:
        return None
    pairs = step.active_pairs(batch, device)
    rows = step.active_record_rows(batch, device) if is_cross else None
    if pairs is None and rows is None and not step.debug:
        return None
    need = torch.full((batch,), step.debug, dtype=torch.bool, device=device)
    if pairs is not None:
        injected = pairs >= 0
        need |= injected
        need[pairs[injected]] = True
    if rows is not None:
        need |= rows
    return _Plan(need, pairs, rows)


class _ProbabilityHook:
    """``attn`` as diffusers' ``AttnProcessor`` sees it, except that the probabilities of
    ``get_attention_scores`` pass through ``rewrite`` before the product with the values."""

    def __init__(self, attn: Attention, rewrite: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self._attn, self._rewrite = attn, rewrite

    def __getattr__(self, name: str):
        return getattr(self._attn, name)

    def get_attention_scores(self, query, key, attention_mask=None) -> torch.Tensor:
        return self._rewrite(self._attn.get_attention_scores(query, key, attention_mask))


def _subset(t: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t[rows]


class InjectionAttnProcessor:
    """UIFace attention injection and recording for one attention module.

    Per forward it takes an :class:`AttentionStep` as the ``injection`` keyword (diffusers hands
    it over from ``cross_attention_kwargs``). Rows that need the probabilities (:func:`plan_rows`)
    run diffusers' ``AttnProcessor`` with the probabilities rewritten (eq. 6-7 for
    cross-attention, direct replacement for self-attention) and cross-attention maps of the
    recorded rows stored in the step (eq. 5); all other rows run ``fallback``, the module's own
    processor (``AttnProcessor2_0`` when none is given). With no step, or nothing to do, the call
    is exactly ``fallback``'s. Cross-attention is a call with ``encoder_hidden_states`` or a module
    with ``is_cross_attention`` set. An attention mask or ``temb`` sends every row to the
    probability path (the UNets here use neither).
    """

    def __init__(self, name: str = "", fallback=None) -> None:
        self.name = name
        self.fallback = fallback if fallback is not None else AttnProcessor2_0()
        self._with_probs = AttnProcessor()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args, injection: AttentionStep | None = None, **kwargs) -> torch.Tensor:
        """Attention of ``hidden_states`` (3-D or 4-D) over itself or ``encoder_hidden_states``."""
        is_cross = (encoder_hidden_states is not None
                    or bool(getattr(attn, "is_cross_attention", False)))
        batch = hidden_states.shape[0]
        plan = plan_rows(injection, batch, is_cross, hidden_states.device)
        if plan is None:
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb,
                                 *args, **kwargs)
        if bool(plan.need.all()) or attention_mask is not None or temb is not None:
            return self._probability_path(attn, hidden_states, encoder_hidden_states, attention_mask,
                                          temb, injection, plan, is_cross)
        need, keep = plan.need, ~plan.need
        probs_out = self._probability_path(attn, hidden_states[need], _subset(encoder_hidden_states, need),
                                           None, None, injection, plan.needed_only(), is_cross)
        rest = self.fallback(attn, hidden_states[keep], _subset(encoder_hidden_states, keep), None, None)
        out = probs_out.new_empty((batch, *probs_out.shape[1:]))
        out[need], out[keep] = probs_out, rest
        return out

    def _probability_path(self, attn, hidden_states, encoder_hidden_states, attention_mask, temb,
                          step: AttentionStep, plan: _Plan, is_cross: bool) -> torch.Tensor:
        def rewrite(probs: torch.Tensor) -> torch.Tensor:
            return self.rewrite(probs, attn.heads, is_cross, step, plan)

        return self._with_probs(_ProbabilityHook(attn, rewrite), hidden_states, encoder_hidden_states,
                                attention_mask, temb)

    def rewrite(self, probs: torch.Tensor, heads: int, is_cross: bool, step: AttentionStep,
                plan: _Plan) -> torch.Tensor:
        """Record (cross-attention, eq. 5) and inject (eq. 6-7 / self replacement) one layer's
        ``(rows * heads, q, k)`` probabilities of the plan's rows; returned in the same shape."""
        probs4 = probs.view(probs.shape[0] // heads, heads, *probs.shape[1:])
        if plan.rows is not None:
            step.add_map(probs4, plan.rows)
        out = probs4
        if plan.pairs is not None:
            out = inject_cross(probs4, plan.pairs) if is_cross else inject_self(probs4, plan.pairs)
        if step.debug:
            step.last_raw_probs[self.name] = probs4.detach().clone()
            step.last_probs[self.name] = out.detach().clone()
        return out.reshape(probs.shape)


def _module_name(key: str) -> str:
    """Module name of an ``attn_processors`` key (``"<module>.processor"``)."""
    return key.removesuffix(".processor")


def _selected(module: str, names: Sequence[str] | None) -> bool:
    """Whether an attention module gets an injection processor: every ``attn1``/``attn2`` of a
    transformer block by default, else those equal to or under one of ``names``."""
    if names is None:
        parts = module.split(".")
        return "transformer_blocks" in parts and parts[-1] in ("attn1", "attn2")
    for name in names:
        prefix = _module_name(name).rstrip(".")
        if module == prefix or module.startswith(prefix + "."):
            return True
    return False


class IgnoreInjection:
    """A module's own processor, on the modules without injection, that accepts (and ignores) the
    ``injection`` keyword, so that diffusers does not warn about it on every forward."""

    def __init__(self, processor) -> None:
        self.processor = processor

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, *args,
                 injection: AttentionStep | None = None, **kwargs) -> torch.Tensor:
        return self.processor(attn, hidden_states, *args, **kwargs)


def install(unet: torch.nn.Module, names: Sequence[str] | None = None) -> dict:
    """Install :class:`InjectionAttnProcessor` on the attention modules of a diffusers
    ``UNet2DConditionModel`` by module name (all ``attn1``/``attn2`` of transformer blocks when
    ``names`` is None; otherwise the modules whose name equals, or lies under, one of ``names``)
    via ``unet.set_attn_processor``, each falling back to the module's current processor; the
    other modules get :class:`IgnoreInjection` around theirs. Returns the previous processors
    (``{key: processor}`` for every attention module) so :func:`uninstall` can restore them.
    """
    if isinstance(names, str):
        names = [names]
    previous = dict(unet.attn_processors)
    chosen = {key for key in previous if _selected(_module_name(key), names)}
    if not chosen:
        raise ValueError(f"no attention module matches {names!r}")
    new = {key: InjectionAttnProcessor(_module_name(key), proc) if key in chosen else IgnoreInjection(proc)
           for key, proc in previous.items()}
    unet.set_attn_processor(new)  # consumes the dict it is given
    return previous


def uninstall(unet: torch.nn.Module, previous: dict) -> None:
    """Restore the processors returned by :func:`install`."""
    unet.set_attn_processor(dict(previous))


__all__ = ["KWARG", "AttentionStep", "IgnoreInjection", "InjectionAttnProcessor", "inject_cross",
           "inject_self", "install", "plan_rows", "renormalize", "spatial_shape", "uninstall"]
