"""The DET curve of a verification experiment as a PNG, drawn with PIL (no matplotlib).

DET (detection error trade-off, ISO/IEC 19795-1): FNMR against FMR over every threshold, both
axes log10, so that the low-FMR operating points FR is judged at (FMR100, FMR1000) are readable.
Built from the same fine genuine / impostor histograms as ``histogram.png`` and the report's
EER / FMR100 / FMR1000 (:func:`~synthface_ray.evaluate.separability.error_rates`), so the curve
passes through the figures printed beside it. Pure function of its inputs (same bytes).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from synthface_ray.evaluate.histogram import (
    AXIS_RGB,
    GRID_RGB,
    MARGIN,
    load_font,
    save_png,
    vertical_text,
)
from synthface_ray.evaluate.separability import (
    FMR100,
    FMR1000,
    eer_from_counts,
    error_rates,
    fnmr_at_fmr,
)

CURVE_RGB = (31, 119, 180)
POINT_RGB = (200, 55, 55)


def det_points(genuine_counts, impostor_counts) -> tuple[np.ndarray, np.ndarray]:
    """``(fmr, fnmr)`` at every bin-edge threshold, FMR increasing, with runs of equal FMR
    collapsed to their lowest FNMR (the curve's lower envelope: what a threshold can achieve)."""
    fmr, fnmr = error_rates(genuine_counts, impostor_counts)
    fmr, fnmr = fmr[::-1], fnmr[::-1]  # thresholds decreasing: FMR rises, FNMR falls
    keep = np.r_[fmr[1:] != fmr[:-1], True]  # the last point of each equal-FMR run has the lowest FNMR
    return fmr[keep], fnmr[keep]


def _log_floor(genuine_counts, impostor_counts) -> tuple[float, float]:
    """The smallest decades the pair counts resolve: half a pair of each kind, rounded down."""
    n_g, n_i = int(np.sum(genuine_counts)), int(np.sum(impostor_counts))
    return (math.floor(math.log10(0.5 / n_i)), math.floor(math.log10(0.5 / n_g)))


def _draw_log_axes(draw, box, x_decades: int, y_decades: int, font) -> None:
    x0, y0, x1, y1 = box
    for k in range(x_decades + 1):
        x = x0 + k / x_decades * (x1 - x0)
        draw.line([(x, y0), (x, y1)], fill=GRID_RGB)
        draw.text((x, y1 + 8), f"1e{k - x_decades}" if k < x_decades else "1", fill=AXIS_RGB, font=font, anchor="mt")
    for k in range(y_decades + 1):
        y = y1 - k / y_decades * (y1 - y0)
        draw.line([(x0, y), (x1, y)], fill=GRID_RGB)
        draw.text((x0 - 8, y), f"1e{k - y_decades}" if k < y_decades else "1", fill=AXIS_RGB, font=font, anchor="rm")
    draw.line([(x0, y0), (x0, y1), (x1, y1)], fill=AXIS_RGB)
    draw.text(((x0 + x1) / 2, y1 + 30), "false match rate (FMR, log scale)", fill=AXIS_RGB, font=font, anchor="mt")


def det_curve_png(genuine_counts, impostor_counts, path_or_buffer=None, title: str = "DET curve", *,
                  size: tuple[int, int] = (640, 520)) -> Image.Image:
    """Draw the DET curve (log-log) with the EER, FMR100 and FMR1000 operating points marked and
    save it as PNG to ``path_or_buffer`` (path, binary file, or None). Rates of 0 sit on the
    lowest decade the pair counts resolve. Returns the RGB image."""
    fmr, fnmr = det_points(genuine_counts, impostor_counts)
    fx, fy = _log_floor(genuine_counts, impostor_counts)
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = load_font(13)
    box = (MARGIN[0], MARGIN[1], size[0] - MARGIN[2], size[1] - MARGIN[3])

    def px(x: float, y: float) -> tuple[float, float]:
        lx, ly = math.log10(max(x, 10.0 ** fx)), math.log10(max(y, 10.0 ** fy))
        return (box[0] + (lx - fx) / -fx * (box[2] - box[0]), box[3] - (ly - fy) / -fy * (box[3] - box[1]))

    _draw_log_axes(draw, box, -fx, -fy, font)
    vertical_text(img, (16, (box[1] + box[3]) / 2), "false non-match rate (FNMR, log scale)", font)
    draw.line([px(x, y) for x, y in zip(fmr, fnmr)], fill=CURVE_RGB, width=2)
    eer = eer_from_counts(genuine_counts, impostor_counts)
    points = [(f"EER {eer:.4f}", eer, eer)] + [
        (f"FNMR {fnmr_at_fmr(genuine_counts, impostor_counts, at):.4f} at FMR {at:g}", at,
         fnmr_at_fmr(genuine_counts, impostor_counts, at)) for at in (FMR100, FMR1000)]
    for k, (label, x, y) in enumerate(points):
        cx, cy = px(x, y)
        draw.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], outline=POINT_RGB, width=2)
        draw.text((box[2] - 8, box[1] + 10 + 18 * k), label, fill=AXIS_RGB, font=font, anchor="rt")
    draw.text((size[0] / 2, 12), title, fill=AXIS_RGB, font=load_font(16), anchor="mt")
    save_png(img, path_or_buffer)
    return img


__all__ = ["det_curve_png", "det_points"]
