"""Decode encoded face images into model tensors, skipping (or refusing) corrupt ones.

Images arrive as PNG/JPEG bytes in the ``image`` struct column. Training wants float tensors in
[-1, 1], CHW. A corrupt or undecodable image is skipped and reported with its row and path by
default; ``strict=True`` raises :class:`CorruptImageError` naming the row instead.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image, UnidentifiedImageError

from synthface_ray.data import schema

MAX_REPORTED = 20


class CorruptImageError(ValueError):
    """An image could not be decoded and strict mode is on."""


@dataclass
class DecodeReport:
    """Running count of skipped images with the first few (row, path, reason) examples."""

    skipped: int = 0
    decoded: int = 0
    examples: list[tuple[int, str | None, str]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # every skipped row (to align per-row columns)

    def add(self, row: int, path: str | None, reason: str) -> None:
        self.skipped += 1
        self.rows.append(row)
        if len(self.examples) < MAX_REPORTED:
            self.examples.append((row, path, reason))

    def summary(self) -> str:
        if not self.skipped:
            return f"decoded {self.decoded} images, none skipped"
        lines = [f"decoded {self.decoded} images, skipped {self.skipped} corrupt ones:"]
        lines += [f"  row {row}" + (f" ({path})" if path else "") + f": {why}" for row, path, why in self.examples]
        if self.skipped > len(self.examples):
            lines.append(f"  ... and {self.skipped - len(self.examples)} more")
        return "\n".join(lines)


def decode_image(data: bytes, resolution: int | None = None) -> np.ndarray:
    """Decode PNG/JPEG bytes to uint8 HxWx3 RGB, resized to ``resolution`` if it differs."""
    if not data:
        raise ValueError("empty image bytes")
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        rgb = img.convert("RGB")
    if resolution is not None and rgb.size != (resolution, resolution):
        rgb = rgb.resize((resolution, resolution), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return np.asarray(rgb, dtype=np.uint8)


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode uint8 HxWx3 as PNG bytes (no timestamps or metadata: identical pixels give
    identical bytes with the same Pillow/zlib build)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def to_model_range(pixels: np.ndarray) -> np.ndarray:
    """uint8 NHWC in [0, 255] -> float32 NCHW in [-1, 1]."""
    return (pixels.astype(np.float32).transpose(0, 3, 1, 2) / 127.5) - 1.0


def pixels_to_model(images):
    """A torch batch for a model: uint8 NHWC pixels become float32 NCHW in [-1, 1] (as
    :func:`to_model_range`, in contiguous NCHW memory); float batches are returned unchanged.

    The permuted view would otherwise reach the convolutions as channels-last strides: measured
    here (torch 2.13 CPU), an IResNet at width 4 under a DeepSpeed engine then hung or aborted
    with heap corruption in its first backward; contiguous NCHW input trains normally."""
    if images.dtype.is_floating_point:
        return images
    return (images.permute(0, 3, 1, 2).float() / 127.5 - 1.0).contiguous()


def from_model_range(images: np.ndarray) -> np.ndarray:
    """float NCHW in [-1, 1] -> uint8 NHWC (values outside the range are clipped)."""
    pixels = np.clip((np.asarray(images, np.float32) + 1.0) * 127.5 + 0.5, 0, 255)
    return pixels.astype(np.uint8).transpose(0, 2, 3, 1)


def _image_fields(column: pa.Array | pa.ChunkedArray) -> tuple[list[Any], list[Any]]:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.field("bytes").to_pylist(), column.field("path").to_pylist()


DECODE_ERRORS = (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)


def decode_or_report(data: bytes, row: int, path: str | None, resolution: int | None, *,
                     strict: bool, report: DecodeReport, like: np.ndarray | None = None) -> np.ndarray | None:
    """Decode one image; a corrupt one is recorded in ``report`` (None returned), or raises
    :class:`CorruptImageError` naming the row and path when ``strict``. ``like`` fixes the size
    every image must have when no ``resolution`` is given."""
    try:
        img = decode_image(data, resolution)
        if like is not None and img.shape != like.shape:
            raise ValueError(f"size {img.shape[1]}x{img.shape[0]} differs from {like.shape[1]}x{like.shape[0]}; set a resolution")
    except DECODE_ERRORS as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if strict:
            where = f"row {row}" + (f" ({path})" if path else "")
            raise CorruptImageError(f"cannot decode image at {where}: {reason}. "
                                    "Remove it or run without strict mode to skip it.") from exc
        report.add(row, path, reason)
        return None
    report.decoded += 1
    return img


def decode_column(column: pa.Array | pa.ChunkedArray, resolution: int | None, *, strict: bool = False,
                  row_offset: int = 0, report: DecodeReport | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode an ``image`` column; returns (uint8 NHWC pixels, indices of the rows kept).

    Without a ``resolution`` every image must share the first decoded image's size.
    """
    report = report if report is not None else DecodeReport()
    blobs, paths = _image_fields(column)
    pixels, kept = [], []
    for i, (blob, path) in enumerate(zip(blobs, paths)):
        img = decode_or_report(blob, row_offset + i, path, resolution, strict=strict, report=report,
                               like=pixels[0] if pixels and resolution is None else None)
        if img is not None:
            pixels.append(img)
            kept.append(i)
    shape = (0, resolution or 0, resolution or 0, 3)
    stacked = np.stack(pixels) if pixels else np.zeros(shape, np.uint8)
    return stacked, np.asarray(kept, dtype=np.int64)


def decode_batch(batch: pa.RecordBatch | pa.Table, resolution: int | None, *, strict: bool = False,
                 row_offset: int = 0, report: DecodeReport | None = None,
                 keep: Sequence[str] = (schema.LABEL, schema.SOURCE),
                 model_range: bool = True) -> dict[str, np.ndarray]:
    """Decode a faces batch into {"image": float32 NCHW [-1, 1], label, source, ...} numpy arrays
    (``model_range=False``: the uint8 NHWC pixels, 4x smaller to move around)."""
    pixels, kept = decode_column(batch.column(schema.IMAGE), resolution, strict=strict,
                                 row_offset=row_offset, report=report)
    out = {"image": to_model_range(pixels) if model_range else pixels}
    for name in keep:
        values = batch.column(name).to_numpy(zero_copy_only=False)
        out[name] = values[kept].astype(np.int64) if np.issubdtype(values.dtype, np.integer) else values[kept]
    return out


def to_grid(images, rows: int, cols: int, pad: int = 2) -> Image.Image:
    """Tile (rows*cols, 3, H, W) images in [-1, 1] (a CPU tensor or array) into one RGB image,
    row-major, ``pad`` white pixels around each (sample grids, the evaluation report's grid)."""
    arr = from_model_range(np.asarray(images))
    h, w = arr.shape[1:3]
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, img in enumerate(arr[: rows * cols]):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y:y + h, x:x + w] = img
    return Image.fromarray(canvas)
