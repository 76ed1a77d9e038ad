"""Training monitoring on rank 0: metrics history, TensorBoard, sample grids, loss curve.

Everything lands in the run folder (``<run.storage_path>/<run.name>/``, local or ``s3://``):
``metrics.jsonl`` (one JSON object per report), ``samples/step_NNNNNNN.png``, ``loss_curve.png``
and ``tensorboard/``. TensorBoard writes local files, so for an S3 run folder the event files are
written to a local folder and copied up at every checkpoint.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw

from synthface_ray import storage
from synthface_ray.storage import Location

log = logging.getLogger(__name__)
METRICS_FILE, SAMPLES_DIR, TB_DIR, CURVE_FILE = "metrics.jsonl", "samples", "tensorboard", "loss_curve.png"


def read_metrics(run_dir: Location) -> list[dict[str, Any]]:
    """The ``metrics.jsonl`` history of a run folder ([] when there is none yet)."""
    loc = run_dir.join(METRICS_FILE)
    if not storage.exists(loc):
        return []
    text = storage.read_bytes(loc).decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class Monitor:
    """Rank-0 sink for metrics and images. ``resume_step`` drops history past the checkpoint a
    resumed run restarts from, so the curve has no duplicate steps."""

    def __init__(self, run_dir: Location, resume_step: int = 0) -> None:
        self.run_dir = run_dir
        self.history = [m for m in read_metrics(run_dir) if m.get("step", 0) <= resume_step]
        local = not run_dir.is_s3
        self.tb_local = run_dir.join(TB_DIR).path if local else tempfile.mkdtemp(prefix="synthface-tb-")
        self._tb_upload = not local
        self.writer = _summary_writer(self.tb_local)

    def log(self, metrics: dict[str, Any]) -> None:
        """Append one report (must carry ``step``) to history, metrics.jsonl and TensorBoard."""
        self.history.append(metrics)
        text = "".join(json.dumps(m, sort_keys=True) + "\n" for m in self.history)
        storage.atomic_write_text(self.run_dir.join(METRICS_FILE), text)
        if self.writer is not None:
            for key, value in metrics.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"train/{key}", value, metrics["step"])
            self.writer.flush()

    def scalars(self, group: str, values: dict[str, Any], step: int) -> None:
        """Log the numeric ``values`` to TensorBoard as ``<group>/<key>`` at ``step`` (e.g. the
        held-out verification at the end of FR training); the caller keeps its own JSON."""
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{group}/{key}", value, step)
        self.writer.flush()

    def image(self, step: int, grid: Image.Image) -> Location:
        """Save a sample grid as ``samples/step_NNNNNNN.png`` (and in TensorBoard)."""
        buf = io.BytesIO()
        grid.save(buf, format="PNG")
        loc = self.run_dir.join(SAMPLES_DIR, f"step_{step:07d}.png")
        storage.atomic_write_bytes(loc, buf.getvalue())
        if self.writer is not None:
            import numpy as np

            self.writer.add_image("samples", np.asarray(grid), step, dataformats="HWC")
            self.writer.flush()
        return loc

    def curve(self) -> Location | None:
        """Render the loss curve of the history to ``loss_curve.png``."""
        points = [(m["step"], m["loss"]) for m in self.history if "loss" in m]
        if len(points) < 2:
            return None
        buf = io.BytesIO()
        plot_curve(points, "training loss").save(buf, format="PNG")
        loc = self.run_dir.join(CURVE_FILE)
        storage.atomic_write_bytes(loc, buf.getvalue())
        return loc

    def sync(self) -> None:
        """Copy local TensorBoard files to an S3 run folder (no-op for local runs)."""
        if not self._tb_upload:
            return
        for name in os.listdir(self.tb_local):
            with open(os.path.join(self.tb_local, name), "rb") as fh:
                storage.atomic_write_bytes(self.run_dir.join(TB_DIR, name), fh.read())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.sync()


def _summary_writer(logdir: str):
    """A tensorboardX ``SummaryWriter``, or None (with a warning) when it is not installed."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        log.warning("tensorboardX is not installed: no TensorBoard logs (pip install tensorboardX)")
        return None
    return SummaryWriter(logdir=logdir, flush_secs=30)


def plot_curve(points: Sequence[tuple[float, float]], title: str, size: tuple[int, int] = (640, 360),
               log_y: bool = True) -> Image.Image:
    """A minimal line plot (PIL only): x = step, y = value (log10 scale by default)."""
    import math

    w, h = size
    left, right, top, bottom = 70, 20, 30, 40
    xs = [p[0] for p in points]
    ys = [math.log10(max(p[1], 1e-12)) if log_y else p[1] for p in points]
    x0, x1 = min(xs), max(xs) or 1
    y0, y1 = min(ys), max(ys)
    y1 = y1 if y1 > y0 else y0 + 1
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle([left, top, w - right, h - bottom], outline="black")

    def px(x: float, y: float) -> tuple[float, float]:
        fx = (x - x0) / ((x1 - x0) or 1)
        return left + fx * (w - left - right), h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)

    draw.line([px(x, y) for x, y in zip(xs, ys)], fill=(31, 119, 180), width=2)
    for frac in (0.0, 0.5, 1.0):
        yv = y0 + frac * (y1 - y0)
        label = f"{10 ** yv:.3g}" if log_y else f"{yv:.3g}"
        draw.text((5, px(x0, yv)[1] - 6), label, fill="black")
        xv = x0 + frac * (x1 - x0)
        draw.text((px(xv, y0)[0] - 15, h - bottom + 8), f"{xv:.0f}", fill="black")
    draw.text((left, 8), f"{title} (y: {'log scale' if log_y else 'linear'}, x: step)", fill="black")
    return img


def eta_text(remaining_steps: int, steps_per_s: float) -> str:
    """Time left at the current rate as ``h:mm:ss`` (``?`` before any rate is known)."""
    if steps_per_s <= 0 or remaining_steps < 0:
        return "?"
    seconds = round(remaining_steps / steps_per_s)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


__all__ = ["Monitor", "eta_text", "plot_curve", "read_metrics"]
