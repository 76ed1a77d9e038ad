"""Objective-vs-knob scatter plots as PNG, drawn with PIL (no matplotlib), one per searched knob.

Numeric knobs get a linear (or, for log-uniform ones, log10) axis; categorical ones one column
per candidate. Completed trials are blue, trials stopped early grey (their objective is from a
smaller rung), the best red.
"""

from __future__ import annotations

import io
import math

from PIL import Image, ImageDraw

from synthface_ray.evaluate.histogram import (
    AXIS_RGB,
    GRID_RGB,
    load_font,
    nice_ticks,
    vertical_text,
)

COLOURS = {"completed": (40, 90, 200), "stopped": (150, 150, 150), "best": (210, 40, 40)}
SIZE, MARGIN = (640, 420), (84, 40, 24, 64)  # left, top, right, bottom


def _span(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.06
    return lo - pad, hi + pad


def _x_positions(xs: list, log: bool) -> tuple[list[float], list[tuple[float, str]], tuple[float, float]]:
    """Plot coordinates of the knob values, tick (position, label) pairs and the axis range."""
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
        pos = [math.log10(x) if log else float(x) for x in xs]
        lo, hi = _span(pos)
        ticks = [(t, f"{10 ** t:.3g}" if log else f"{t:g}") for t in nice_ticks(lo, hi, 6)]
        return pos, ticks, (lo, hi)
    cats = list(dict.fromkeys(str(x) for x in xs))
    pos = [float(cats.index(str(x))) for x in xs]
    return pos, [(float(i), c) for i, c in enumerate(cats)], (-0.5, len(cats) - 0.5)


def knob_png(xs: list, ys: list[float], kinds: list[str], knob: str, ylabel: str, log: bool = False) -> bytes:
    """PNG bytes of ``ys`` against ``xs``; ``kinds[i]`` in completed / stopped / best."""
    img = Image.new("RGB", SIZE, (255, 255, 255))
    draw, font = ImageDraw.Draw(img), load_font(13)
    x0, y0, x1, y1 = MARGIN[0], MARGIN[1], SIZE[0] - MARGIN[2], SIZE[1] - MARGIN[3]
    pos, xticks, (xlo, xhi) = _x_positions(xs, log)
    ylo, yhi = _span(ys) if ys else (0.0, 1.0)
    sx = lambda v: x0 + (v - xlo) / (xhi - xlo) * (x1 - x0)  # noqa: E731
    sy = lambda v: y1 - (v - ylo) / (yhi - ylo) * (y1 - y0)  # noqa: E731
    for v in nice_ticks(ylo, yhi):
        draw.line([(x0, sy(v)), (x1, sy(v))], fill=GRID_RGB)
        draw.text((x0 - 8, sy(v)), f"{v:g}", fill=AXIS_RGB, font=font, anchor="rm")
    for v, label in xticks:
        draw.line([(sx(v), y1), (sx(v), y1 + 5)], fill=AXIS_RGB)
        draw.text((sx(v), y1 + 8), label, fill=AXIS_RGB, font=font, anchor="mt")
    draw.line([(x0, y0), (x0, y1), (x1, y1)], fill=AXIS_RGB)
    order = sorted(range(len(ys)), key=lambda i: ("stopped", "completed", "best").index(kinds[i]))
    for i in order:
        r = 7 if kinds[i] == "best" else 5
        cx, cy = sx(pos[i]), sy(ys[i])
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=COLOURS[kinds[i]], outline=AXIS_RGB)
    draw.text(((x0 + x1) / 2, y1 + 34), knob + (" (log scale)" if log else ""), fill=AXIS_RGB,
              font=font, anchor="mt")
    draw.text(((x0 + x1) / 2, 12), f"{ylabel} vs {knob}  (blue: every rung, grey: stopped early, "
              "red: best)", fill=AXIS_RGB, font=font, anchor="mt")
    vertical_text(img, (18, (y0 + y1) / 2), ylabel, font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["knob_png"]
