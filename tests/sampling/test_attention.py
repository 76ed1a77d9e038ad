"""UIFace attention injection (eq. 6-7) and cross-attention recording (eq. 5) on a tiny,
randomly initialised diffusers UNet built from config (nothing is downloaded)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor

from synthface_ray.sampling.attention import (
    InjectionAttnProcessor,
    InjectionController,
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


def _run(unet: UNet2DConditionModel, ctl: InjectionController, *args: torch.Tensor,
         names: list[str] | None = None) -> torch.Tensor:
    """Output with injection processors installed (and removed afterwards)."""
    previous = install(unet, ctl, names)
    try:
        ctl.reset_step()
        with torch.no_grad():
            return unet(args[0], args[1], encoder_hidden_states=args[2]).sample
    finally:
        uninstall(unet, previous)


def test_idle_matches_stock_attn_processor(unet):
    """No pairs / all -1 / inject=False, record off: identical to ``AttnProcessor``."""
    args = _inputs()
    ref = _stock(unet, *args)
    for ctl, pairs in [(InjectionController(), None), (InjectionController(), torch.full((6,), -1)),
                       (InjectionController(inject=False), PAIRS)]:
        ctl.pairs = pairs
        torch.testing.assert_close(_run(unet, ctl, *args), ref, **TIGHT)
    ctl = InjectionController(record=True, debug=True)
    ctl.record_rows = EMPTY  # recording and debug capture do not change the output either
    torch.testing.assert_close(_run(unet, ctl, *args), ref, **TIGHT)


def test_processor_4d_group_norm_residual_matches_stock():
    """The AttnProcessor structure (4-D input, group norm, residual, rescale) is kept, and
    rows without a pair are unchanged when another row is injected."""
    torch.manual_seed(0)
    attn = Attention(query_dim=8, heads=2, dim_head=4, norm_num_groups=4,
                     residual_connection=True, rescale_output_factor=2.0).eval()
    x = torch.randn(2, 8, 3, 5)
    with torch.no_grad():
        ref = AttnProcessor()(attn, x)
        ctl = InjectionController()
        torch.testing.assert_close(InjectionAttnProcessor(ctl)(attn, x), ref, **TIGHT)
        ctl.pairs = torch.tensor([1, -1])
        out = InjectionAttnProcessor(ctl)(attn, x)
    torch.testing.assert_close(out[1], ref[1], **TIGHT)
    assert not torch.allclose(out[0], ref[0])


def test_injection_is_row_local(unet):
    """Empty rows and rows with pair -1 match stock processing of the same batch exactly;
    injected conditional rows change."""
    args = _inputs()
    ref = _stock(unet, *args)
    ctl = InjectionController()
    ctl.pairs = PAIRS
    out = _run(unet, ctl, *args)
    keep = PAIRS < 0
    torch.testing.assert_close(out[keep], ref[keep], **TIGHT)
    for i in (0, 1):
        assert (out[i] - ref[i]).abs().max() > 1e-4


def _debug_probs(unet) -> InjectionController:
    """A debug controller after one injected forward."""
    ctl = InjectionController(debug=True)
    ctl.pairs = PAIRS
    _run(unet, ctl, *_inputs())
    return ctl


def test_self_attention_maps_replaced_by_pair(unet):
    """UIFace sec. 3.4: h_self^c = h_self^{c_e} in every attn1 layer; other rows untouched."""
    ctl = _debug_probs(unet)
    names = [n for n in ctl.last_probs if n.endswith("attn1")]
    assert len(names) == 4
    changed = 0
    for name in names:
        raw, used = ctl.last_raw_probs[name], ctl.last_probs[name]
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
    ctl = _debug_probs(unet)
    names = [n for n in ctl.last_probs if n.endswith("attn2")]
    assert len(names) == 4
    for name in names:
        raw, used = ctl.last_raw_probs[name], ctl.last_probs[name]
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


def _manual_h(ctl: InjectionController, rows: torch.Tensor) -> torch.Tensor:
    """eq. 5 map recomputed from the debug probabilities: head mean, area-resize to the smallest
    map, layer mean, flatten, L2-normalise."""
    maps = []
    for name, raw in ctl.last_raw_probs.items():
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
    ctl = InjectionController(inject=False, record=True, debug=True)
    assert ctl.recorded() is None
    ctl.record_rows = EMPTY
    _run(unet, ctl, *args)
    h = ctl.recorded()
    assert h.shape == (3, TOKENS * 4 * 4)
    torch.testing.assert_close(h.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(h, _manual_h(ctl, EMPTY))
    assert h.std(dim=1).min() > 1e-4  # not the constant a token average would give
    assert (h[0] - h[1]).abs().max() > 1e-4  # different latents, different maps

    ctl.record_rows = torch.ones(6, dtype=torch.bool)
    _run(unet, ctl, *args)
    torch.testing.assert_close(ctl.recorded()[EMPTY], h, **TIGHT)
    ctl.reset_step()
    assert ctl.recorded() is None

    off = InjectionController(record=False)
    off.record_rows = EMPTY
    _run(unet, off, *args)
    assert off.recorded() is None


def test_recording_non_square_needs_sample_hw(unet):
    """Maps of a 8x12 input unflatten with ``sample_hw``; smallest map is 4x6."""
    args = _inputs((8, 12))
    ctl = InjectionController(record=True)
    ctl.record_rows = EMPTY
    with pytest.raises(ValueError, match="sample_hw"):
        _run(unet, ctl, *args)
    ctl.sample_hw = (8, 12)
    _run(unet, ctl, *args)
    assert ctl.recorded().shape == (3, TOKENS * 4 * 6)


def test_batch_permutation_equivariance(unet):
    """Permuting the batch (and remapping pairs) permutes outputs and recorded maps."""
    x, t, ctx = _inputs()
    ctl = InjectionController(record=True)
    ctl.pairs, ctl.record_rows = PAIRS, EMPTY
    out = _run(unet, ctl, x, t, ctx)
    h = ctl.recorded()

    perm = torch.tensor([4, 0, 5, 2, 3, 1])  # new row j holds old row perm[j]
    inv = torch.argsort(perm)
    old = PAIRS[perm]
    ctl.pairs = torch.where(old >= 0, inv[old.clamp_min(0)], old)
    ctl.record_rows = EMPTY[perm]
    out_p = _run(unet, ctl, x[perm], t[perm], ctx[perm])
    torch.testing.assert_close(out_p, out[perm], rtol=1e-5, atol=1e-5)
    # recorded rows come in (new) batch order: old empty rows perm[j] for recorded j
    old_rows = perm[EMPTY[perm]]
    rank = {int(r): k for k, r in enumerate(EMPTY.nonzero().flatten())}
    torch.testing.assert_close(ctl.recorded(), h[[rank[int(r)] for r in old_rows]],
                               rtol=1e-5, atol=1e-6)


def test_install_by_name_and_uninstall(unet):
    """Default: every attn1/attn2 of transformer blocks; names select by prefix; uninstall
    restores the very same processor objects; unknown names are an error."""
    before = dict(unet.attn_processors)
    ctl = InjectionController()
    previous = install(unet, ctl)
    chosen = [k for k, p in unet.attn_processors.items() if isinstance(p, InjectionAttnProcessor)]
    assert len(chosen) == 8 and all(k.endswith(("attn1.processor", "attn2.processor"))
                                    for k in chosen)
    uninstall(unet, previous)
    assert all(unet.attn_processors[k] is before[k] for k in before)

    one = "up_blocks.1.attentions.0.transformer_blocks.0.attn2"
    previous = install(unet, ctl, ["mid_block", one])
    chosen = {k for k, p in unet.attn_processors.items() if isinstance(p, InjectionAttnProcessor)}
    assert chosen == {"mid_block.attentions.0.transformer_blocks.0.attn1.processor",
                      "mid_block.attentions.0.transformer_blocks.0.attn2.processor",
                      "up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor"}
    assert unet.attn_processors[next(iter(chosen))].controller is ctl
    uninstall(unet, previous)
    assert all(unet.attn_processors[k] is before[k] for k in before)
    with pytest.raises(ValueError, match="no attention module"):
        install(unet, ctl, ["down_blocks.9"])
    assert all(unet.attn_processors[k] is before[k] for k in before)


def test_bad_pairs_and_record_rows_rejected(unet):
    """Shapes must match the batch; pair indices must be -1 or a row of the batch."""
    args = _inputs()
    for pairs in (torch.tensor([3, 4, -1]), torch.tensor([6, -1, -1, -1, -1, -1]),
                  torch.tensor([-2, -1, -1, -1, -1, -1])):
        ctl = InjectionController()
        ctl.pairs = pairs
        with pytest.raises(ValueError, match="pairs"):
            _run(unet, ctl, *args)
    ctl = InjectionController(record=True)
    ctl.record_rows = EMPTY[:3]
    with pytest.raises(ValueError, match="record_rows"):
        _run(unet, ctl, *args)


def test_spatial_shape():
    assert spatial_shape(64) == (8, 8)
    assert spatial_shape(24, (8, 12)) == (4, 6)
    assert spatial_shape(96, (8, 12)) == (8, 12)
    with pytest.raises(ValueError):
        spatial_shape(24)
