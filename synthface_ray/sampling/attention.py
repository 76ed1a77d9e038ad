"""UIFace attention injection (eq. 6-7) and cross-attention recording (eq. 5) as diffusers
attention processors.

A batched UNet forward holds *empty-context* rows (conditioned on the learnable ``c_e``) and
*conditional* rows (identity context ``c``) of the same samples. An :class:`InjectionController`
shared by every processor of one UNet says, per row, which row is its empty-context partner
(``pairs``) and which rows to record (``record_rows``); the caller sets both before a forward.

- Self-attention (``attn1``), UIFace sec. 3.4: ``h_self^c = h_self^{c_e}``. The probability map of
  conditional row ``i`` is replaced by that of its partner ``p(i)``; the values stay row ``i``'s.
- Cross-attention (``attn2``), UIFace eq. 6-7: ``h_cross^c`` is renormalised to the mean and std of
  ``h_cross^{c_e}``. The paper takes them "along the spatial dimensions", so they are computed over
  the query (pixel) axis separately for every row, head and context token.
- Recording, UIFace eq. 5 (``h_t``): per recorded row, the cross-attention probabilities averaged
  over heads, resized to the smallest recorded resolution, averaged over layers, flattened
  (token-major) and L2-normalised: a ``(n_rows, context_tokens * h_min * w_min)`` tensor.

Every operation is row-local: a row's output depends only on its own hidden states and on its
partner's un-injected maps of the same layer, so permuting the batch (and remapping ``pairs``)
permutes the outputs. Pure torch + diffusers; nothing happens at import time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

_EPS = 1e-8  # floor on sigma_c in eq. 7 (a constant map, e.g. a single-token context, has std 0)


class InjectionController:
    """Shared state for the processors of one UNet.

    ``pairs``: ``(batch,)`` long; for row ``i`` the index of its empty-context row in the SAME
    batch, or ``-1`` (no injection for that row). ``None`` = no injection at all.
    ``record_rows``: ``(batch,)`` bool; rows whose cross-attention maps are recorded (the empty
    rows, for UIFace eq. 5). ``None`` = record nothing.
    ``sample_hw``: spatial size of the UNet input; only needed to unflatten the maps of
    non-square inputs for recording (square maps are inferred from the token count).
    ``debug``: keep each processor's probabilities of the last call in ``last_raw_probs`` (as
    computed) and ``last_probs`` (as used, after injection), keyed by module name, each shaped
    ``(batch, heads, query_len, key_len)``.
    """

    def __init__(self, inject: bool = True, record: bool = False, debug: bool = False) -> None:
        self.inject = inject
        self.record = record
        self.debug = debug
        self.pairs: torch.Tensor | None = None
        self.record_rows: torch.Tensor | None = None
        self.sample_hw: tuple[int, int] | None = None
        self.last_probs: dict[str, torch.Tensor] = {}
        self.last_raw_probs: dict[str, torch.Tensor] = {}
        self._maps: list[torch.Tensor] = []

    def reset_step(self) -> None:
        """Clear the recorded maps (and debug probabilities); call before each forward."""
        self._maps = []
        self.last_probs = {}
        self.last_raw_probs = {}

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
        return rows

    def add_map(self, probs: torch.Tensor, rows: torch.Tensor) -> None:
        """Store one cross-attention layer's head-averaged map of the recorded rows (UIFace eq. 5).

        ``probs``: ``(batch, heads, q, k)``; stored as ``(n_rows, k, h, w)`` float32.
        """
        mean = probs[rows].detach().float().mean(dim=1)  # (n, q, k)
        h, w = spatial_shape(mean.shape[1], self.sample_hw)
        self._maps.append(mean.transpose(1, 2).reshape(mean.shape[0], mean.shape[2], h, w))

    def recorded(self) -> torch.Tensor | None:
        """``h_t`` of UIFace eq. 5 for the rows of ``record_rows`` (in batch order), from every
        cross-attention call since :meth:`reset_step`: ``(n_rows, F)``, unit L2 norm per row.

        Each layer's map is resized (area interpolation) to the smallest recorded resolution,
        the layers are averaged, and the ``(k, h, w)`` map is flattened and L2-normalised. The
        context tokens are kept apart: the per-pixel average over tokens of softmax
        probabilities is the constant ``1 / k``, which would carry no information.
        """
        if not self._maps:
            return None
        h, w = min((m.shape[-2:] for m in self._maps), key=lambda s: s[0] * s[1])
        resized = [m if m.shape[-2:] == (h, w) else F.interpolate(m, size=(h, w), mode="area")
                   for m in self._maps]
        mean = torch.stack(resized).mean(dim=0)
        return F.normalize(mean.flatten(1), dim=1)


def spatial_shape(tokens: int, sample_hw: tuple[int, int] | None = None) -> tuple[int, int]:
    """``(h, w)`` of a feature map flattened to ``tokens`` pixels: square when ``sample_hw`` is
    ``None``, otherwise with the aspect ratio of ``sample_hw`` (the UNet input size)."""
    if sample_hw is None:
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ValueError(f"cannot unflatten {tokens} pixels to a square map; set "
                             "InjectionController.sample_hw to the UNet input size")
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


class InjectionAttnProcessor:
    """diffusers' plain ``AttnProcessor`` with UIFace attention injection and recording.

    The probabilities from ``attn.get_attention_scores`` are rewritten per row (eq. 6-7 for
    cross-attention, direct replacement for self-attention) before ``bmm`` with the values, and
    cross-attention maps of the recorded rows are stored for eq. 5. With no active pairs and no
    recording it computes exactly what ``AttnProcessor`` does. Cross-attention is a call with
    ``encoder_hidden_states`` or a module with ``is_cross_attention`` set.
    """

    def __init__(self, controller: InjectionController, name: str = "") -> None:
        self.controller = controller
        self.name = name

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args, **kwargs) -> torch.Tensor:
        """Attention of ``hidden_states`` (3-D or 4-D) over itself or ``encoder_hidden_states``."""
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape)
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        is_cross = (encoder_hidden_states is not None
                    or bool(getattr(attn, "is_cross_attention", False)))
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        query = attn.head_to_batch_dim(query)

        attention_probs = attn.get_attention_scores(query, key, attention_mask)
        attention_probs = self.rewrite(attention_probs, attn.heads, is_cross)
        hidden_states = torch.bmm(attention_probs, value)
        hidden_states = attn.batch_to_head_dim(hidden_states)
        hidden_states = attn.to_out[0](hidden_states)  # linear proj
        hidden_states = attn.to_out[1](hidden_states)  # dropout

        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(
                batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def rewrite(self, probs: torch.Tensor, heads: int, is_cross: bool) -> torch.Tensor:
        """Record (cross-attention, eq. 5) and inject (eq. 6-7 / self replacement) one layer's
        ``(batch * heads, q, k)`` probabilities; returned in the same shape. Untouched if idle."""
        ctl = self.controller
        batch = probs.shape[0] // heads
        pairs = ctl.active_pairs(batch, probs.device)
        rows = ctl.active_record_rows(batch, probs.device) if is_cross else None
        if pairs is None and rows is None and not ctl.debug:
            return probs
        probs4 = probs.view(batch, heads, *probs.shape[1:])
        if rows is not None and bool(rows.any()):
            ctl.add_map(probs4, rows)
        out = probs4
        if pairs is not None:
            out = inject_cross(probs4, pairs) if is_cross else inject_self(probs4, pairs)
        if ctl.debug:
            ctl.last_raw_probs[self.name] = probs4.detach().clone()
            ctl.last_probs[self.name] = out.detach().clone()
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


def install(unet: torch.nn.Module, controller: InjectionController,
            names: Sequence[str] | None = None) -> dict:
    """Install :class:`InjectionAttnProcessor` on the attention modules of a diffusers
    ``UNet2DConditionModel`` by module name (all ``attn1``/``attn2`` of transformer blocks when
    ``names`` is None; otherwise the modules whose name equals, or lies under, one of ``names``)
    via ``unet.set_attn_processor``. Returns the previous processors (``{key: processor}`` for
    every attention module) so :func:`uninstall` can restore them.
    """
    if isinstance(names, str):
        names = [names]
    previous = dict(unet.attn_processors)
    chosen = {key for key in previous if _selected(_module_name(key), names)}
    if not chosen:
        raise ValueError(f"no attention module matches {names!r}")
    new = {key: InjectionAttnProcessor(controller, _module_name(key)) if key in chosen else proc
           for key, proc in previous.items()}
    unet.set_attn_processor(new)  # consumes the dict it is given
    return previous


def uninstall(unet: torch.nn.Module, previous: dict) -> None:
    """Restore the processors returned by :func:`install`."""
    unet.set_attn_processor(dict(previous))


__all__ = ["InjectionAttnProcessor", "InjectionController", "inject_cross", "inject_self",
           "install", "renormalize", "spatial_shape", "uninstall"]
