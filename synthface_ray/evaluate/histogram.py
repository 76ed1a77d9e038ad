"""Genuine / impostor score histograms as a PNG, drawn with PIL (no matplotlib).

The figure of NegFaceDiff / AdaptDiff's identity-separability evaluation (AdaptDiff Fig. 1 and
supplementary Fig. 3): the normalised histograms of genuine and impostor cosine scores on one
plot, here with the EER threshold as a dashed vertical line. Pure function of its inputs: the
same input gives the same PNG bytes (PIL's default font, no timestamps in the file).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from synthface_ray.evaluate.separability import (
    HIST_BINS,
    EvaluationError,
    ScoreHistogram,
    eer_threshold,
)

GENUINE_RGB = (46, 139, 87)
IMPOSTOR_RGB = (200, 55, 55)
EER_RGB = (40, 40, 40)
AXIS_RGB = (0, 0, 0)
GRID_RGB = (225, 225, 225)
MARGIN = (78, 42, 24, 58)  # left, top, right, bottom (pixels)


def _as_counts(values, name: str, bins: int) -> np.ndarray:
    """An integer array is read as histogram counts over equal bins of [-1, 1] (as in
    ``SeparabilityResult.genuine_counts``); a float array as raw cosine scores, binned here."""
    arr = np.asarray(values)
    if arr.ndim != 1 or not arr.size:
        raise EvaluationError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        if (arr < 0).any() or not arr.sum():
            raise EvaluationError(f"{name} counts must be non-negative with a positive total")
        return arr.astype(np.int64)
    if not np.isfinite(arr).all():
        raise EvaluationError(f"{name} scores contain NaN or infinity")
    return ScoreHistogram.from_scores(arr, bins).counts


def _display_range(gc: np.ndarray, ic: np.ndarray) -> tuple[float, float]:
    """The occupied part of [-1, 1], widened to multiples of 0.1."""
    occupied = np.flatnonzero(gc + ic)
    width = 2.0 / len(gc)
    lo = math.floor((-1.0 + occupied[0] * width) * 10 + 1e-9) / 10
    hi = math.ceil((-1.0 + (occupied[-1] + 1) * width) * 10 - 1e-9) / 10
    return max(lo, -1.0), min(max(hi, lo + 0.1), 1.0)


def _rebin(counts: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """Fraction of all scores in each of ``bins`` display bins of [lo, hi] (fine bins are
    assigned by their centre; scores outside [lo, hi] count in the total but are not drawn)."""
    width = 2.0 / len(counts)
    centres = -1.0 + (np.arange(len(counts)) + 0.5) * width
    inside = (centres >= lo) & (centres < hi)
    idx = ((centres[inside] - lo) / (hi - lo) * bins).astype(np.intp).clip(0, bins - 1)
    return np.bincount(idx, weights=counts[inside], minlength=bins) / counts.sum()


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    step = _nice_step(hi - lo, target)
    first = math.ceil(lo / step - 1e-9)
    return [round(k * step, 10) for k in range(first, int(math.floor(hi / step + 1e-9)) + 1)]


def load_font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _draw_axes(draw: ImageDraw.ImageDraw, box, xr, ymax, font) -> None:
    x0, y0, x1, y1 = box
    sx = lambda v: x0 + (v - xr[0]) / (xr[1] - xr[0]) * (x1 - x0)  # noqa: E731
    sy = lambda v: y1 - v / ymax * (y1 - y0)  # noqa: E731
    for v in nice_ticks(0.0, ymax):
        draw.line([(x0, sy(v)), (x1, sy(v))], fill=GRID_RGB)
        draw.line([(x0 - 5, sy(v)), (x0, sy(v))], fill=AXIS_RGB)
        draw.text((x0 - 8, sy(v)), f"{v:g}", fill=AXIS_RGB, font=font, anchor="rm")
    for v in nice_ticks(*xr, target=7):
        draw.line([(sx(v), y1), (sx(v), y1 + 5)], fill=AXIS_RGB)
        draw.text((sx(v), y1 + 8), f"{v:g}", fill=AXIS_RGB, font=font, anchor="mt")
    draw.line([(x0, y0), (x0, y1), (x1, y1)], fill=AXIS_RGB, width=1)
    draw.text(((x0 + x1) / 2, y1 + 30), "cosine similarity score", fill=AXIS_RGB, font=font,
              anchor="mt")


def vertical_text(img: Image.Image, centre, text: str, font) -> None:
    """``text`` rotated 90 degrees counter-clockwise, centred at ``centre``."""
    left, top, right, bottom = ImageDraw.Draw(img).textbbox((0, 0), text, font=font)
    label = Image.new("L", (int(right - left) + 2, int(bottom - top) + 2), 0)
    ImageDraw.Draw(label).text((1 - left, 1 - top), text, fill=255, font=font)
    label = label.rotate(90, expand=True)
    at = (int(centre[0] - label.width / 2), int(centre[1] - label.height / 2))
    img.paste(AXIS_RGB, (*at, at[0] + label.width, at[1] + label.height), label)


def _draw_bars(draw, box, heights: np.ndarray, ymax: float, rgb) -> None:
    """Filled translucent bars with an opaque step outline."""
    x0, y0, x1, y1 = box
    w = (x1 - x0) / len(heights)
    outline = [(x0, y1)]
    for k, h in enumerate(heights):
        top = y1 - h / ymax * (y1 - y0)
        if h > 0:
            draw.rectangle([x0 + k * w, top, x0 + (k + 1) * w, y1], fill=rgb + (90,))
        outline += [(x0 + k * w, top), (x0 + (k + 1) * w, top)]
    draw.line(outline + [(x1, y1)], fill=rgb + (255,), width=2)


def _draw_dashed_vline(draw, x: float, y0: float, y1: float) -> None:
    y = y0
    while y < y1:
        draw.line([(x, y), (x, min(y + 6, y1))], fill=EER_RGB, width=2)
        y += 10


def _draw_legend(draw, x1: float, y0: float, entries, font) -> None:
    width = 14 + max(draw.textlength(label, font=font) for label, _ in entries) + 30
    left, top = x1 - width, y0 + 8
    draw.rectangle([left, top, x1 - 8, top + 8 + 20 * len(entries)], fill=(255, 255, 255, 230),
                   outline=GRID_RGB)
    for k, (label, rgb) in enumerate(entries):
        y = top + 14 + 20 * k
        if rgb == EER_RGB:
            draw.line([(left + 8, y - 6), (left + 8, y + 6)], fill=rgb, width=2)
        else:
            draw.rectangle([left + 6, y - 5, left + 18, y + 5], fill=rgb + (140,), outline=rgb)
        draw.text((left + 26, y), label, fill=AXIS_RGB, font=font, anchor="lm")


def save_png(img: Image.Image, path_or_buffer) -> None:
    if path_or_buffer is None:
        return
    if isinstance(path_or_buffer, str | Path):
        Path(path_or_buffer).parent.mkdir(parents=True, exist_ok=True)
    img.save(path_or_buffer, format="PNG")


def score_histogram_png(genuine, impostor, path_or_buffer=None,
                        title: str = "Genuine and impostor score distributions", *,
                        display_bins: int = 100, size: tuple[int, int] = (800, 500),
                        score_range: tuple[float, float] | None = None,
                        bins: int = HIST_BINS) -> Image.Image:
    """Draw the normalised genuine and impostor histograms (each sums to 1 over its scores) on
    one plot with axes, tick labels, a legend and the EER threshold, and save it as PNG to
    ``path_or_buffer`` (a path, a binary file object, or None: not saved). Returns the RGB image.

    ``genuine`` / ``impostor``: integer arrays are counts over equal bins of [-1, 1] (e.g.
    ``SeparabilityResult.genuine_counts``; both the same length); float arrays are raw scores,
    binned into ``bins`` fine bins. The EER threshold comes from the fine histograms
    (:func:`~synthface_ray.evaluate.separability.eer_threshold`). ``score_range``: the x range
    (default: the occupied range widened to multiples of 0.1), split into ``display_bins`` bars.
    """
    gc, ic = _as_counts(genuine, "genuine", bins), _as_counts(impostor, "impostor", bins)
    if gc.shape != ic.shape:
        raise EvaluationError(f"genuine ({gc.size}) and impostor ({ic.size}) histograms have "
                              "different numbers of bins")
    lo, hi = score_range if score_range is not None else _display_range(gc, ic)
    if not -1.0 <= lo < hi <= 1.0 or display_bins < 1:
        raise EvaluationError(f"score_range=({lo}, {hi}) must satisfy -1 <= lo < hi <= 1 and "
                              f"display_bins={display_bins} must be >= 1")
    gh, ih = _rebin(gc, lo, hi, display_bins), _rebin(ic, lo, hi, display_bins)
    ymax = max(gh.max(), ih.max(), 1e-12) * 1.12
    thr = eer_threshold(gc, ic)
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img, "RGBA")
    font, title_font = load_font(13), load_font(16)
    box = (MARGIN[0], MARGIN[1], size[0] - MARGIN[2], size[1] - MARGIN[3])
    _draw_axes(draw, box, (lo, hi), ymax, font)
    vertical_text(img, (16, (box[1] + box[3]) / 2), "fraction of pairs per bin", font)
    _draw_bars(draw, box, ih, ymax, IMPOSTOR_RGB)
    _draw_bars(draw, box, gh, ymax, GENUINE_RGB)
    if lo <= thr <= hi:
        _draw_dashed_vline(draw, box[0] + (thr - lo) / (hi - lo) * (box[2] - box[0]), box[1],
                           box[3])
    draw.text((size[0] / 2, 12), title, fill=AXIS_RGB, font=title_font, anchor="mt")
    _draw_legend(draw, box[2], box[1], [(f"genuine (n={int(gc.sum()):,})", GENUINE_RGB),
                                        (f"impostor (n={int(ic.sum()):,})", IMPOSTOR_RGB),
                                        (f"EER threshold {thr:.3f}", EER_RGB)], font)
    save_png(img, path_or_buffer)
    return img


__all__ = ["load_font", "save_png", "nice_ticks", "score_histogram_png", "vertical_text"]
