"""The composite sampler: every guidance method of the seeds as per-sample weights over contexts,
evaluated in one batched network forward per solver evaluation.

At each noise level every row ``r`` gets a weight vector ``W[r]`` over the batch's context table
(its identity contexts, the empty context ``c_e`` last), summing to 1, and the guided denoiser is
``D(x_r) = sum_k W[r, k] D(x_r; sigma, c_k)``. Because the weights sum to 1 and
``D = x - sigma eps``, this is the same combination of epsilons the papers write:

* conditional: ``P = e_c``; ScoreMix: ``P = sum_i lambda_i e_{c_i}`` (convex, ScoreMix eq. for
  eps-hat);
* CFG with scale w: ``W = P + w (P - e_empty)`` (UIFace eq. 4, second case);
* negative condition: ``W += w(t) (P - e_{c-})``, i.e. ``(1 + w) eps(c+) - w eps(c-)``
  (NegFaceDiff; AdaptDiff's ``w(t) = w_max (1 - t/T)``), combinable with CFG and mixes;
* UIFace two-stage: ``W = e_empty`` while ``t > t0`` (eq. 4, first case: ``t in [t0, T]``; the
  open end at ``t0`` makes t0 = T exactly CFG on grids that start at T, as EDM's does), per sample;
* CASD: the source label is pinned (``class_labels``, 0 = real).

Only the non-zero ``(row, context)`` pairs go through the network, so zero-weight terms cost
nothing and a context shared by several terms of a row is evaluated once; the number of
evaluations per row (NFE) is recorded. Noise comes from one ``torch.Generator`` per row seeded
with the row's seed, so a row's image does not depend on its batch, the batch size or the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from synthface_ray.models.parameterization import ContextDenoiser, Parameterization
from synthface_ray.sampling.attention import AttentionStep, install, uninstall
from synthface_ray.sampling.recipes import SamplerConfig, resolve
from synthface_ray.sampling.solvers import SOLVERS

WEIGHT_ATOL = 1e-5


class ConditionError(ValueError):
    """A batch of conditions the sampler cannot honour (the message names the field)."""


@dataclass
class Conditions:
    """One batch of rows to sample.

    ``contexts`` (K, tokens, dim): the distinct identity contexts the rows refer to;
    ``empty`` (tokens, dim): the empty context c_e; ``mix_ids`` (B, m) long: each row's positive
    contexts (indices into ``contexts``, -1 = padding; one id = plain conditional);
    ``mix_weights`` (B, m): their weights lambda (>= 0, summing to 1 over the row's ids);
    ``negative_ids`` (B,) long: the negative context or -1; ``seeds`` (B,) long.
    """

    contexts: torch.Tensor
    empty: torch.Tensor
    mix_ids: torch.Tensor
    mix_weights: torch.Tensor
    seeds: torch.Tensor
    negative_ids: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.mix_ids = torch.as_tensor(self.mix_ids, dtype=torch.long)
        if self.mix_ids.dim() == 1:
            self.mix_ids = self.mix_ids[:, None]
        self.mix_weights = torch.as_tensor(self.mix_weights, dtype=torch.float64).reshape(self.mix_ids.shape)
        self.seeds = torch.as_tensor(self.seeds, dtype=torch.long).reshape(-1)
        b = self.mix_ids.shape[0]
        neg = self.negative_ids
        self.negative_ids = (torch.full((b,), -1, dtype=torch.long) if neg is None
                             else torch.as_tensor(neg, dtype=torch.long).reshape(-1))
        validate(self)

    @property
    def batch(self) -> int:
        return self.mix_ids.shape[0]

    @classmethod
    def single(cls, contexts: torch.Tensor, empty: torch.Tensor, ids, seeds, negative_ids=None) -> Conditions:
        """Each row conditioned on one context (``ids`` (B,))."""
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1, 1)
        return cls(contexts, empty, ids, torch.ones(ids.shape, dtype=torch.float64), seeds, negative_ids)


def _check_contexts(c: Conditions) -> None:
    for name, t in (("contexts", c.contexts), ("empty", c.empty)):
        if not torch.isfinite(t).all():
            raise ConditionError(f"{name} holds NaN or infinite values: check the identity embeddings")
    norms = c.contexts.flatten(1).norm(dim=1)
    if (norms == 0).any():
        bad = int(torch.nonzero(norms == 0)[0])
        raise ConditionError(f"contexts[{bad}] has zero norm: an identity embedding is all zeros")
    if c.empty.shape != c.contexts.shape[1:]:
        raise ConditionError(f"empty has shape {tuple(c.empty.shape)} but contexts are "
                             f"{tuple(c.contexts.shape[1:])}")


def _check_weights(c: Conditions) -> None:
    valid = c.mix_ids >= 0
    if not valid.any(dim=1).all():
        raise ConditionError("mix_ids: a row has no positive context (all -1)")
    w = torch.where(valid, c.mix_weights, torch.zeros_like(c.mix_weights))
    if (w < 0).any():
        raise ConditionError(f"mix_weights must be >= 0, got {w[w < 0][0].item():g}")
    sums = w.sum(dim=1)
    bad = (sums - 1).abs() > WEIGHT_ATOL
    if bad.any():
        r = int(torch.nonzero(bad)[0])
        raise ConditionError(f"mix_weights of row {r} sum to {sums[r].item():.6g}, not 1: ScoreMix "
                             "weights are convex (e.g. 0.5/0.5)")


def validate(c: Conditions) -> None:
    """Raise :class:`ConditionError` naming the field for anything the sampler cannot honour."""
    k, b = c.contexts.shape[0], c.mix_ids.shape[0]
    if c.seeds.shape != (b,) or c.negative_ids.shape != (b,) or c.mix_weights.shape != c.mix_ids.shape:
        raise ConditionError(f"seeds {tuple(c.seeds.shape)}, negative_ids {tuple(c.negative_ids.shape)}"
                             f" and mix_weights {tuple(c.mix_weights.shape)} must match {b} rows")
    for name, ids in (("mix_ids", c.mix_ids), ("negative_ids", c.negative_ids)):
        if ((ids < -1) | (ids >= k)).any():
            raise ConditionError(f"{name} must index contexts (0..{k - 1}) or be -1")
    same = (c.mix_ids == c.negative_ids[:, None]) & (c.negative_ids[:, None] >= 0)
    if same.any():
        r = int(torch.nonzero(same.any(dim=1))[0])
        raise ConditionError(f"row {r}: the negative identity equals a positive one "
                             f"(context {int(c.negative_ids[r])}); pick another negative")
    _check_weights(c)
    _check_contexts(c)


# weights --------------------------------------------------------------------------------------
@dataclass
class Weights:
    """The fixed parts of the per-row weights over ``K + 1`` contexts (empty last)."""

    positive: torch.Tensor  # P (B, K+1)
    negative: torch.Tensor  # one-hot of the negative (B, K+1); zero rows without one
    empty: torch.Tensor  # one-hot of c_e (B, K+1)

    @classmethod
    def of(cls, c: Conditions) -> Weights:
        b, k = c.batch, c.contexts.shape[0]
        rows = torch.arange(b)[:, None].expand_as(c.mix_ids)
        valid = c.mix_ids >= 0
        pos = torch.zeros(b, k + 1, dtype=torch.float64)
        pos.index_put_((rows[valid], c.mix_ids[valid]), c.mix_weights[valid], accumulate=True)
        neg = torch.zeros_like(pos)
        has = c.negative_ids >= 0
        neg[has, c.negative_ids[has]] = 1.0
        empty = torch.zeros_like(pos)
        empty[:, k] = 1.0
        return cls(pos, neg, empty)


def guided_weights(w: Weights, cfg_scale: float, negative_w: float, stage1: torch.Tensor) -> torch.Tensor:
    """``W = P + w_cfg (P - E) + w_neg(t) (P - N)`` per row (rows without a negative skip that
    term), and ``W = E`` for rows still in UIFace's first stage. Every row sums to 1."""
    out = w.positive.clone()
    if cfg_scale:
        out += cfg_scale * (w.positive - w.empty)
    if negative_w:
        has = w.negative.any(dim=1, keepdim=True)
        out += negative_w * torch.where(has, w.positive - w.negative, torch.zeros_like(out))
    return torch.where(stage1[:, None], w.empty, out)


@dataclass
class StepLog:
    """Per row: evaluations so far, and the ``t/T`` where stage 2 began (-1: never / no stages)."""

    nfe: torch.Tensor
    t0: torch.Tensor = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.t0 is None:
            self.t0 = torch.full_like(self.nfe, -1.0, dtype=torch.float64)


# the guided denoiser --------------------------------------------------------------------------
class CompositeDenoiser:
    """``D(x; sigma, step)`` for a batch of rows under a :class:`~synthface_ray.sampling.recipes.
    SamplerConfig`: builds the evaluation's weights, runs the network once on the non-zero
    ``(row, context)`` pairs and combines. Keeps each row's NFE and two-stage switch point.

    ``step`` is the solver's step index (:mod:`synthface_ray.sampling.solvers` passes it to every
    evaluation). Which rows are in UIFace's first stage is decided per evaluation from its own
    noise level (fixed ``t0``, the adaptive fallback); the adaptive switch of eq. 5 reads the
    empty context's attention maps once per step, at the step's first evaluation (the point of
    the trajectory at ``sigma_i``; Heun's correction at ``sigma_{i+1}`` is not recorded).

    ``attention_hw``: the image size when UIFace's attention processors are installed in the
    network (:func:`synthface_ray.sampling.attention.install`), else ``None``. Each evaluation then
    builds its :class:`~synthface_ray.sampling.attention.AttentionStep` (which row injects from
    which, which rows are recorded) and passes it with that forward; nothing is kept in the
    processors between evaluations."""

    takes_step = True

    def __init__(self, denoise: ContextDenoiser, param: Parameterization, cond: Conditions,
                 cfg: SamplerConfig, attention_hw: tuple[int, int] | None = None) -> None:
        self.denoise, self.param, self.cond, self.cfg = denoise, param, cond, cfg
        self.weights = Weights.of(cond)
        self.table = torch.cat([cond.contexts, cond.empty[None]])
        two = cfg.two_stage.mode
        self.stage1 = torch.full((cond.batch,), two != "off", dtype=torch.bool)
        self.log = StepLog(torch.zeros(cond.batch, dtype=torch.long))
        self.attention_hw = attention_hw
        self._step: int | None = None  # the solver step of the last evaluation
        self._h_prev: torch.Tensor | None = None
        self._d_prev: torch.Tensor | None = None

    def _switch(self, rows: torch.Tensor, tau: float) -> None:
        rows = rows & self.stage1
        self.stage1 &= ~rows
        self.log.t0[rows] = tau

    def _update_stages(self, tau: float) -> None:
        """Fixed t0: stage 1 while ``tau > t0``; adaptive: also the fallback switch point."""
        ts = self.cfg.two_stage
        limit = ts.t0 if ts.mode == "fixed" else ts.fallback_t0
        if ts.mode != "off" and tau <= limit:
            self._switch(torch.ones_like(self.stage1), tau)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, step: int | None = None) -> torch.Tensor:
        if step is None:
            raise TypeError("CompositeDenoiser needs the solver's step index: call it through a solver of "
                            "synthface_ray.sampling.solvers (they pass step=i)")
        tau = self.param.tau(float(sigma.reshape(-1)[0]))
        first, self._step = step != self._step, step
        self._update_stages(tau)
        W = guided_weights(self.weights, self.cfg.cfg_scale, self.cfg.negative.weight(tau), self.stage1)
        inject = self.attention_hw is not None and self.cfg.two_stage.attention_injection
        rows, cols = self._pairs(W, inject)
        step_inputs = self._attention_step(rows, cols)
        out = self._forward(x, sigma, rows, cols, W, step_inputs)
        if first and self.cfg.two_stage.mode == "adaptive" and step_inputs is not None:
            self._adaptive_switch(rows, cols, tau, step_inputs.recorded())
        return out.clamp(-1, 1) if self.cfg.clip_denoised else out

    def _pairs(self, W: torch.Tensor, inject: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The (row, context) pairs to evaluate: the non-zero weights, plus the empty context of
        second-stage rows when attention injection needs it beside their conditional pass
        (weight 0), and of first-stage rows when the adaptive switch reads its attention."""
        need = W != 0
        if inject:
            need[:, -1] |= ~self.stage1
        rows, cols = torch.nonzero(need, as_tuple=True)
        return rows, cols

    def _forward(self, x, sigma, rows, cols, W, attention: AttentionStep | None) -> torch.Tensor:
        labels = None
        if self.cfg.source is not None:
            labels = torch.full((rows.numel(),), self.cfg.source, dtype=torch.long, device=x.device)
        context = self.table.to(device=x.device, dtype=x.dtype)[cols.to(x.device)]
        d = self.denoise(x[rows.to(x.device)], sigma.reshape(-1)[:1].expand(rows.numel()), context, labels,
                         attention_kwargs=None if attention is None else attention.kwargs())
        w = W[rows, cols].to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        out = torch.zeros_like(x).index_add_(0, rows.to(x.device), w * d)
        self.log.nfe += torch.bincount(rows, minlength=self.cond.batch)
        return out

    def _attention_step(self, rows, cols) -> AttentionStep | None:
        """This forward's inputs for the attention processors (``None`` when none are installed):
        each second-stage conditional entry's partner is its row's empty-context entry."""
        if self.attention_hw is None:
            return None
        ts = self.cfg.two_stage
        is_empty = cols == self.table.shape[0] - 1
        where_empty = torch.full((self.cond.batch,), -1, dtype=torch.long)
        where_empty[rows[is_empty]] = torch.nonzero(is_empty, as_tuple=True)[0]
        pairs = where_empty[rows]
        pairs[is_empty | self.stage1[rows]] = -1
        return AttentionStep(pairs=pairs, record_rows=is_empty, inject=ts.attention_injection,
                             record=ts.mode == "adaptive", sample_hw=self.attention_hw)

    def _adaptive_switch(self, rows, cols, tau: float, maps: torch.Tensor | None) -> None:
        """UIFace eq. 5: ``d_t = ||h_{t+1} - h_t||``; switch where ``d_{t+1} > th`` and ``d_t < th``.
        ``maps``: ``h_t`` of this forward's empty-context entries (in entry order)."""
        empty_rows = rows[cols == self.table.shape[0] - 1]
        if maps is None or not len(empty_rows):
            return
        h = torch.zeros(self.cond.batch, maps.shape[1], dtype=maps.dtype)
        h[empty_rows] = maps.detach().cpu()
        seen = torch.zeros(self.cond.batch, dtype=torch.bool)
        seen[empty_rows] = True
        if self._h_prev is not None:
            d = (h - self._h_prev).norm(dim=1)
            if self._d_prev is not None:
                th = self.cfg.two_stage.th
                self._switch(seen & (self._d_prev > th) & (d < th), tau)
            self._d_prev = d
        self._h_prev = h


# the API --------------------------------------------------------------------------------------
@dataclass
class SampleResult:
    """``images`` (B, C, H, W) float in the model's data range; per row ``nfe`` (network
    evaluations) and ``t0`` (the timestep, out of the model's T (1000 for EDM), where UIFace's
    second stage began; -1 without stages)."""

    images: torch.Tensor
    nfe: torch.Tensor
    t0: torch.Tensor


class _RowStreams:
    """One generator per row: the initial noise, then the ancestral noise of each step."""

    def __init__(self, seeds: torch.Tensor, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds.tolist()]

    def __call__(self, step: int = 0) -> torch.Tensor:
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.gens])


def sample(net, param: Parameterization, cond: Conditions, config, shape: tuple[int, ...], *,
           device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
           unet=None) -> SampleResult:
    """Sample one image per row of ``cond``: a pure function of (network, conditions, sampler
    config); no Ray. ``net`` speaks the generator's call convention
    (:func:`~synthface_ray.models.parameterization.call_net`); ``shape`` is one image's
    (C, H, W); ``config`` a :class:`~synthface_ray.sampling.recipes.SamplerConfig` or a YAML
    ``sampler`` section. ``unet``: the diffusers UNet inside ``net``, needed by UIFace's
    attention injection and adaptive switch (their processors are installed for this call and
    removed after it; ``net`` must then take ``attention_kwargs``, as the generator does)."""
    cfg = resolve(config)
    ts = cfg.two_stage
    needs_attention = ts.attention_injection or ts.mode == "adaptive"
    if needs_attention and unet is None:
        raise ConditionError("two_stage.attention_injection / two_stage.mode=adaptive need the "
                             "UNet's attention maps: pass unet= (the diffusers UNet inside net)")
    if not needs_attention:
        return _sample(net, param, cond, cfg, shape, device, dtype, None)
    previous = install(unet, ts.layers)
    try:
        return _sample(net, param, cond, cfg, shape, device, dtype, tuple(shape[-2:]))
    finally:
        uninstall(unet, previous)


def _sample(net, param, cond, cfg, shape, device, dtype, attention_hw) -> SampleResult:
    sigmas = param.sigmas(cfg.steps, cfg.spacing)
    guided = CompositeDenoiser(param.denoiser(net), param, cond, cfg, attention_hw)
    streams = _RowStreams(cond.seeds, tuple(shape))
    x = (streams() * param.init_scale(sigmas[0].item())).to(device=device, dtype=dtype)
    with torch.no_grad():
        x = SOLVERS[cfg.resolved_solver()](guided, x, sigmas, eta=cfg.resolved_eta(), noise=streams)
    t0 = torch.where(guided.log.t0 >= 0, (guided.log.t0 * param.num_timesteps).round(), guided.log.t0)
    return SampleResult(x, guided.log.nfe.clone(), t0.long())


__all__ = [
    "CompositeDenoiser", "ConditionError", "Conditions", "SampleResult", "Weights", "guided_weights",
    "sample", "validate",
]
