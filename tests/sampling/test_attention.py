"""UIFace attention injection (eq. 6-7) and cross-attention recording (eq. 5) on a tiny,
randomly initialised diffusers UNet built from config (nothing is downloaded)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor

from synthface_ray.sampling.attention import (
    AttentionStep,
    InjectionAttnProcessor,
    install,
    renormalize,
    spatial_shape,
    uninstall,
)

N, TOKENS, CTX_DIM = 3, 2, 16  # samples, context tokens, context width
# batch = [cond_0, cond_1, cond_2, empty_0, empty_1, empty_2]; cond_2 is left without injection
PAIRS = torch.tensor([3, 4, -1, -1, -1, -1])
EMPTY = torch.tensor([False, False, False, True, True, True])
TIGHT = {"rtol": 1e-6, "atol": 1e-6}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny CPU forwards are far faster (and deterministic) on one intra-op thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def unet() -> UNet2DConditionModel:
    """Transformer blocks at 8x8 (down 0, up 1 twice) and 4x4 (mid), heads of width 8 / 16."""
    torch.manual_seed(0)
    model = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=CTX_DIM,
        layers_per_block=1, attention_head_dim=4, norm_num_groups=8)
    return model.eval()


def _inputs(hw: tuple[int, int] = (8, 8)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CFG-style batch: the same latents twice, identity contexts then a shared empty context."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 4, *hw, generator=g)
    cond = torch.randn(N, TOKENS, CTX_DIM, generator=g)
    empty = torch.randn(1, TOKENS, CTX_DIM, generator=g).expand(N, -1, -1)
    return torch.cat([x, x]), torch.full((2 * N,), 10.0), torch.cat([cond, empty])


def _stock(unet: UNet2DConditionModel, *args: torch.Tensor) -> torch.Tensor:
    """Output with diffusers' plain ``AttnProcessor`` everywhere."""
    previous = dict(unet.attn_processors)
    unet.set_attn_processor(AttnProcessor())
    try:
        with torch.no_grad():
            return unet(args[0], args[1], encoder_hidden_states=args[2]).sample
    finally:
        unet.set_attn_processor(previous)


def _run(unet: UNet2DConditionModel, step: AttentionStep, *args: torch.Tensor,
         names: list[str] | None = None) -> torch.Tensor:
    """Output with injection processors installed (and removed afterwards), ``step`` passed with
    the forward."""
    previous = install(unet, names)
    try:
        step.clear()
        with torch.no_grad():
            return unet(args[0], args[1], encoder_hidden_states=args[2], cross_attention_kwargs=step.kwargs()).sample
    finally:
        uninstall(unet, previous)


def test_idle_matches_stock_attn_processor(unet):
    """No pairs / all -1 / inject=False, record off: identical to ``AttnProcessor``."""
    args = _inputs()
    ref = _stock(unet, *args)
    for step, pairs in [(AttentionStep(), None), (AttentionStep(), torch.full((6,), -1)),
                       (AttentionStep(inject=False), PAIRS)]:
        step.pairs = pairs
        torch.testing.assert_close(_run(unet, step, *args), ref, **TIGHT)
    step = AttentionStep(record=True, debug=True)
    step.record_rows = EMPTY  # recording and debug capture do not change the output either
    torch.testing.assert_close(_run(unet, step, *args), ref, **TIGHT)


def test_processor_4d_group_norm_residual_matches_stock():
    """The AttnProcessor structure (4-D input, group norm, residual, rescale) is kept, and
    rows without a pair are unchanged when another row is injected."""
    torch.manual_seed(0)
    attn = Attention(query_dim=8, heads=2, dim_head=4, norm_num_groups=4,
                     residual_connection=True, rescale_output_factor=2.0).eval()
    x = torch.randn(2, 8, 3, 5)
    with torch.no_grad():
        ref = AttnProcessor()(attn, x)
        step = AttentionStep()
        torch.testing.assert_close(InjectionAttnProcessor()(attn, x, injection=step), ref, **TIGHT)
        step.pairs = torch.tensor([1, -1])
        out = InjectionAttnProcessor()(attn, x, injection=step)
    torch.testing.assert_close(out[1], ref[1], **TIGHT)
    assert not torch.allclose(out[0], ref[0])


def test_injection_is_row_local(unet):
    """Empty rows and rows with pair -1 match stock processing of the same batch exactly;
    injected conditional rows change."""
    args = _inputs()
    ref = _stock(unet, *args)
    step = AttentionStep()
    step.pairs = PAIRS
    out = _run(unet, step, *args)
    keep = PAIRS < 0
    torch.testing.assert_close(out[keep], ref[keep], **TIGHT)
    for i in (0, 1):
        assert (out[i] - ref[i]).abs().max() > 1e-4


def _default(unet: UNet2DConditionModel, *args: torch.Tensor) -> torch.Tensor:
    """Output with the UNet's own processors (``AttnProcessor2_0``: SDPA)."""
    with torch.no_grad():
        return unet(args[0], args[1], encoder_hidden_states=args[2]).sample


def test_rows_without_maps_run_the_modules_own_processor_bit_for_bit(unet):
    """Only injected rows, their partners and recorded rows take the probability path; every
    other row (and every forward with nothing to do) is computed by the module's own processor,
    so its output is the default UNet's exactly, whatever the rest of the batch does."""
    args = _inputs()
    ref = _default(unet, *args)
    assert torch.equal(_run(unet, AttentionStep(), *args), ref)  # nothing to do: the default
    out = _run(unet, AttentionStep(pairs=PAIRS), *args)  # rows 0, 1 inject from 3, 4
    free = torch.tensor([2, 5])
    assert torch.equal(out[free], ref[free])
    assert not torch.allclose(out[:2], ref[:2])
    recording = AttentionStep(record=True, record_rows=torch.tensor([False] * 5 + [True]))
    out = _run(unet, recording, *args)
    assert torch.equal(out[:5], ref[:5]) and recording.recorded().shape[0] == 1


def test_no_warning_about_the_injection_keyword_on_modules_without_injection(unet):
    """Modules left out by ``names`` get the keyword too (the UNet passes
    ``cross_attention_kwargs`` to every attention module): they take and ignore it, silently."""
    import logging

    from diffusers.utils import logging as dlogging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = dlogging.get_logger("diffusers.models.attention_processor")
    logger.addHandler(handler)
    try:
        args = _inputs()
        out = _run(unet, AttentionStep(pairs=PAIRS), *args, names=["mid_block"])
    finally:
        logger.removeHandler(handler)
    assert not [r for r in records if "not expected" in r.getMessage()]
    assert torch.isfinite(out).all()


def _debug_probs(unet) -> AttentionStep:
    """A debug AttentionStep after one injected forward."""
    step = AttentionStep(debug=True)
    step.pairs = PAIRS
    _run(unet, step, *_inputs())
    return step


def test_self_attention_maps_replaced_by_pair(unet):
    """UIFace sec. 3.4: h_self^c = h_self^{c_e} in every attn1 layer; other rows untouched."""
    step = _debug_probs(unet)
    names = [n for n in step.last_probs if n.endswith("attn1")]
    assert len(names) == 4
    changed = 0
    for name in names:
        raw, used = step.last_raw_probs[name], step.last_probs[name]
        assert raw.shape[:2] == (6, 4) and raw.shape[2] == raw.shape[3]
        for i in (0, 1):
            torch.testing.assert_close(used[i], raw[PAIRS[i]], rtol=0, atol=0)
            changed += not torch.allclose(used[i], raw[i])
        torch.testing.assert_close(used[2:], raw[2:], rtol=0, atol=0)
    # the first layer sees identical inputs in a row and its pair; later ones differ
    assert changed >= 2 * (len(names) - 1)


def _zscore(m: torch.Tensor) -> torch.Tensor:
    """Standardise over the spatial (query) axis."""
    return (m - m.mean(-2, keepdim=True)) / m.std(-2, correction=0, keepdim=True)


def test_cross_attention_renormalised_to_pair_stats(unet):
    """UIFace eq. 6-7: the injected map has the pair's mean and std over the spatial (query)
    axis for every head and token, and is an increasing affine map of its own raw map."""
    step = _debug_probs(unet)
    names = [n for n in step.last_probs if n.endswith("attn2")]
    assert len(names) == 4
    for name in names:
        raw, used = step.last_raw_probs[name], step.last_probs[name]
        assert raw.shape[0] == 6 and raw.shape[-1] == TOKENS
        for i in (0, 1):
            p = PAIRS[i]
            torch.testing.assert_close(used[i].mean(-2), raw[p].mean(-2), rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(used[i].std(-2, correction=0), raw[p].std(-2, correction=0),
                                       rtol=1e-3, atol=1e-6)
            torch.testing.assert_close(_zscore(used[i]), _zscore(raw[i]), rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(used[2:], raw[2:], rtol=0, atol=0)


def test_renormalize_formula_and_constant_map():
    """eq. 7 by hand on random maps; a constant (zero-std) map becomes the source mean."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 10, 4, generator=g), torch.rand(2, 3, 10, 4, generator=g)
    mu_a, sd_a = a.mean(2, keepdim=True), a.std(2, correction=0, keepdim=True)
    mu_b, sd_b = b.mean(2, keepdim=True), b.std(2, correction=0, keepdim=True)
    torch.testing.assert_close(renormalize(a, b), (a - mu_a) / sd_a * sd_b + mu_b)
    const = torch.ones(1, 1, 10, 1)
    torch.testing.assert_close(renormalize(const, b[:1, :1, :, :1]),
                               b[:1, :1, :, :1].mean(2, keepdim=True).expand(1, 1, 10, 1))


def _manual_h(step: AttentionStep, rows: torch.Tensor) -> torch.Tensor:
    """eq. 5 map recomputed from the debug probabilities: head mean, area-resize to the smallest
    map, layer mean, flatten, L2-normalise."""
    maps = []
    for name, raw in step.last_raw_probs.items():
        if name.endswith("attn2"):
            m = raw[rows].mean(1).transpose(1, 2)
            side = int(m.shape[-1] ** 0.5)
            maps.append(m.reshape(*m.shape[:2], side, side))
    side = min(m.shape[-1] for m in maps)
    mean = torch.stack([F.interpolate(m, size=(side, side), mode="area") for m in maps]).mean(0)
    return F.normalize(mean.flatten(1), dim=1)


def test_recording_shapes_norm_and_rows(unet):
    """h_t (eq. 5): (n_empty, tokens * 4 * 4), unit norm, only record_rows, informative."""
    args = _inputs()
    step = AttentionStep(inject=False, record=True, debug=True)
    assert step.recorded() is None
    step.record_rows = EMPTY
    _run(unet, step, *args)
    h = step.recorded()
    assert h.shape == (3, TOKENS * 4 * 4)
    torch.testing.assert_close(h.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(h, _manual_h(step, EMPTY))
    assert h.std(dim=1).min() > 1e-4  # not the constant a token average would give
    assert (h[0] - h[1]).abs().max() > 1e-4  # different latents, different maps

    step.record_rows = torch.ones(6, dtype=torch.bool)
    _run(unet, step, *args)
    torch.testing.assert_close(step.recorded()[EMPTY], h, **TIGHT)
    step.clear()
    assert step.recorded() is None

    off = AttentionStep(record=False)
    off.record_rows = EMPTY
    _run(unet, off, *args)
    assert off.recorded() is None


def test_recording_non_square_needs_sample_hw(unet):
    """Maps of a 8x12 input unflatten with ``sample_hw``; smallest map is 4x6."""
    args = _inputs((8, 12))
    step = AttentionStep(record=True)
    step.record_rows = EMPTY
    with pytest.raises(ValueError, match="sample_hw"):
        _run(unet, step, *args)
    step.sample_hw = (8, 12)
    _run(unet, step, *args)
    assert step.recorded().shape == (3, TOKENS * 4 * 6)


def test_batch_permutation_equivariance(unet):
    """Permuting the batch (and remapping pairs) permutes outputs and recorded maps."""
    x, t, ctx = _inputs()
    step = AttentionStep(record=True)
    step.pairs, step.record_rows = PAIRS, EMPTY
    out = _run(unet, step, x, t, ctx)
    h = step.recorded()

    perm = torch.tensor([4, 0, 5, 2, 3, 1])  # new row j holds old row perm[j]
    inv = torch.argsort(perm)
    old = PAIRS[perm]
    step.pairs = torch.where(old >= 0, inv[old.clamp_min(0)], old)
    step.record_rows = EMPTY[perm]
    out_p = _run(unet, step, x[perm], t[perm], ctx[perm])
    torch.testing.assert_close(out_p, out[perm], rtol=1e-5, atol=1e-5)
    # recorded rows come in (new) batch order: old empty rows perm[j] for recorded j
    old_rows = perm[EMPTY[perm]]
    rank = {int(r): k for k, r in enumerate(EMPTY.nonzero().flatten())}
    torch.testing.assert_close(step.recorded(), h[[rank[int(r)] for r in old_rows]],
                               rtol=1e-5, atol=1e-6)


def test_install_by_name_and_uninstall(unet):
    """Default: every attn1/attn2 of transformer blocks; names select by prefix; uninstall
    restores the very same processor objects; unknown names are an error."""
    before = dict(unet.attn_processors)
    previous = install(unet)
    chosen = [k for k, p in unet.attn_processors.items() if isinstance(p, InjectionAttnProcessor)]
    assert len(chosen) == 8 and all(k.endswith(("attn1.processor", "attn2.processor"))
                                    for k in chosen)
    uninstall(unet, previous)
    assert all(unet.attn_processors[k] is before[k] for k in before)

    one = "up_blocks.1.attentions.0.transformer_blocks.0.attn2"
    previous = install(unet, ["mid_block", one])
    chosen = {k for k, p in unet.attn_processors.items() if isinstance(p, InjectionAttnProcessor)}
    assert chosen == {"mid_block.attentions.0.transformer_blocks.0.attn1.processor",
                      "mid_block.attentions.0.transformer_blocks.0.attn2.processor",
                      "up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor"}
    # the processors hold no shared state: each forward brings its own AttentionStep
    assert not hasattr(unet.attn_processors[next(iter(chosen))], "controller")
    uninstall(unet, previous)
    assert all(unet.attn_processors[k] is before[k] for k in before)
    with pytest.raises(ValueError, match="no attention module"):
        install(unet, ["down_blocks.9"])
    assert all(unet.attn_processors[k] is before[k] for k in before)


def test_bad_pairs_and_record_rows_rejected(unet):
    """Shapes must match the batch; pair indices must be -1 or a row of the batch."""
    args = _inputs()
    for pairs in (torch.tensor([3, 4, -1]), torch.tensor([6, -1, -1, -1, -1, -1]),
                  torch.tensor([-2, -1, -1, -1, -1, -1])):
        step = AttentionStep()
        step.pairs = pairs
        with pytest.raises(ValueError, match="pairs"):
            _run(unet, step, *args)
    step = AttentionStep(record=True)
    step.record_rows = EMPTY[:3]
    with pytest.raises(ValueError, match="record_rows"):
        _run(unet, step, *args)


def test_spatial_shape():
    assert spatial_shape(64) == (8, 8)
    assert spatial_shape(24, (8, 12)) == (4, 6)
    assert spatial_shape(96, (8, 12)) == (8, 12)
    with pytest.raises(ValueError):
        spatial_shape(24)
