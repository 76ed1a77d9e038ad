"""Shared pieces of the importers and exporters: options, image checks, label maps, progress
bars, format sniffing."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from synthface_ray.config import check_range
from synthface_ray.data import schema, transforms
from synthface_ray.data.transforms import DecodeReport
from synthface_ray.progress import progress_bar

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: written beside an export made with ``output.relabel=true``: the exported label of each original one
LABEL_MAP = "labels.csv"


@dataclass
class ImportOptions:
    """How images are taken in: resize/re-encode, source label, strictness, label numbering."""

    resolution: int | None = None  # None keeps the original bytes; else decode, resize, PNG
    source: int = 0  # CASD source label written to every row (0 = real)
    strict: bool = False  # raise on the first corrupt image instead of skipping it
    label_from: Literal["index", "name"] = "index"  # folders: sorted position, or the int dir name
    rows_per_shard: int = 10_000

    def __post_init__(self) -> None:
        if self.resolution is not None:
            check_range("input.resolution", self.resolution, 8, 1024)
        check_range("input.source", self.source, 0)
        check_range("output.rows_per_shard", self.rows_per_shard, 1)


def checked_image(data: bytes, where: str, resolution: int | None, strict: bool,
                  report: DecodeReport) -> bytes | None:
    """Return bytes to store for one image, or None when it is corrupt (and not strict).

    Every image is decoded once, so a corrupt one is caught at import rather than mid-training.
    """
    row = report.skipped + report.decoded
    pixels = transforms.decode_or_report(data, row, where, resolution, strict=strict, report=report)
    if pixels is None:
        return None
    return data if resolution is None else transforms.encode_png(pixels)


def verified_rows(dataset: Any, verify: bool, strict: bool, report: DecodeReport,
                  desc: str = "export") -> Iterator[tuple[int, bytes, int]]:
    """(row, image bytes, label) of a faces dataset for an exporter; with ``verify`` each image is
    decoded first and a corrupt one is skipped and reported by row and stored path (or raises).
    Shows a progress bar (:func:`progress_bar`, ``desc``) over the dataset's rows."""
    row = 0
    with progress_bar(dataset.count_rows(), desc) as bar:
        for batch in dataset.to_batches(columns=[schema.IMAGE, schema.LABEL]):
            images = batch.column(schema.IMAGE)
            for data, path, label in zip(images.field("bytes").to_pylist(), images.field("path").to_pylist(),
                                         batch.column(schema.LABEL).to_pylist()):
                ok = not verify or transforms.decode_or_report(data, row, path, None, strict=strict,
                                                               report=report) is not None
                if ok:
                    yield row, data, int(label)
                row += 1
            bar.update(batch.num_rows)


def _integer_label(label: Any) -> int:
    """``label`` as an int; ValueError naming it when it is not an integer (bools included)."""
    if isinstance(label, bool) or not isinstance(label, numbers.Integral):
        raise ValueError(f"label {label!r} ({type(label).__name__}) is not an integer: relabelling "
                         "maps integer identity labels to 0..K-1")
    return int(label)


def contiguous_labels(labels: Iterable[Any]) -> dict[int, int]:
    """Original label -> new label: the distinct labels in ascending order numbered 0..K-1 (so
    the order of identities is kept). ValueError for a label that is not an integer."""
    distinct = sorted({_integer_label(label) for label in labels})
    return {original: new for new, original in enumerate(distinct)}


def label_map_csv(mapping: Mapping[int, int]) -> str:
    """The :data:`LABEL_MAP` file: a ``label,original_label`` header, then one line per label in
    exported-label order."""
    lines = [f"{new},{original}" for original, new in sorted(mapping.items(), key=lambda kv: kv[1])]
    return "label,original_label\n" + "".join(line + "\n" for line in lines)


def check_exportable_labels(labels: Iterable[int], relabel: bool) -> None:
    """Refuse negative labels unless ``relabel``: insightface (and class-index trainers) need
    labels 0..N-1, where N is the class count written beside the export."""
    low = min(labels, default=0)
    if low < 0 and not relabel:
        raise ValueError(f"the dataset has negative labels (lowest {low}); a trainer needs labels "
                         "0..N-1: pass --set output.relabel=true to number them 0..K-1 "
                         f"(the map is written to {LABEL_MAP})")


def image_suffix(data: bytes) -> str:
    """File suffix for encoded image bytes, from their magic number."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    return ".img"
