"""insightface datasets (``train.rec`` + ``train.idx`` [+ ``property``]) <-> faces tables.

Glue between the storage layer and the pure RecordIO codec in :mod:`.recordio`. Labels come
from the record headers (never renumbered), so a round trip returns every label.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from synthface_ray import storage
from synthface_ray.data import faces, schema
from synthface_ray.data.formats import recordio
from synthface_ray.data.formats.common import ImportOptions, checked_image, verified_rows
from synthface_ray.data.transforms import DecodeReport, decode_image
from synthface_ray.storage import Location, StorageConfig

REC, IDX, PROPERTY = "train.rec", "train.idx", "property"


def _rec_and_idx(src: str, idx: str | None, cfg: StorageConfig | None) -> tuple[Location, Location]:
    loc = storage.resolve(src, cfg)
    if storage.is_dir(loc):
        loc = loc.join(REC)
    if not loc.path.endswith(".rec"):
        raise ValueError(f"{src!r} is not a .rec file: pass the train.rec file or its folder")
    idx_loc = storage.resolve(idx, cfg) if idx else Location(loc.fs, loc.path[:-4] + ".idx", loc.uri[:-4] + ".idx")
    for need in (loc, idx_loc):
        if not storage.exists(need):
            raise FileNotFoundError(f"{need.uri} does not exist (RecordIO needs both .rec and .idx; "
                                    "set input.idx if the index lives elsewhere)")
    return loc, idx_loc


_UNREADABLE = ("not an insightface RecordIO pair: check that the .idx belongs to this .rec (input.idx), "
               "or re-create both (insightface's im2rec, or `synthface export --format recordio`)")


def _records(rec_loc: Location, idx_loc: Location) -> Iterator[recordio.FaceRecord]:
    """The face records of a ``.rec``/``.idx`` pair; an unreadable pair raises ``RecordIOError``
    naming the file and the fix."""
    try:
        index = recordio.read_index(io.BytesIO(storage.read_bytes(idx_loc)), idx_loc.uri)
        with rec_loc.fs.open_input_file(rec_loc.path) as rec:
            yield from recordio.iter_faces(rec, index, rec_loc.uri)
    except (recordio.RecordIOError, ValueError, OverflowError) as exc:
        named = str(exc) if rec_loc.uri in str(exc) or idx_loc.uri in str(exc) else f"{rec_loc.uri}: {exc}"
        raise recordio.RecordIOError(f"{named}; {_UNREADABLE}") from None


def iter_recordio_tables(src: str, opts: ImportOptions, cfg: StorageConfig | None, report: DecodeReport,
                         idx: str | None = None, rows_per_table: int = 1024) -> Iterator[pa.Table]:
    """Stream a RecordIO dataset as faces tables (label from each image's header)."""
    rec_loc, idx_loc = _rec_and_idx(src, idx, cfg)
    name = posixpath.basename(rec_loc.path)
    rows: dict[str, list[Any]] = {"image": [], "path": [], "label": []}
    for record in _records(rec_loc, idx_loc):
        where = f"{name}#{record.key}"
        data = checked_image(record.image, where, opts.resolution, opts.strict, report)
        if data is None:
            continue
        for key, value in zip(rows, (data, where, record.label)):
            rows[key].append(value)
        if len(rows["image"]) >= rows_per_table:
            yield schema.faces_table(rows["image"], rows["label"], opts.source, paths=rows["path"])
            rows = {k: [] for k in rows}
    if rows["image"]:
        yield schema.faces_table(rows["image"], rows["label"], opts.source, paths=rows["path"])


def _labels_grouped(dataset) -> bool:
    labels = dataset.to_table(columns=[schema.LABEL]).column(schema.LABEL)
    if len(labels) < 2:
        return True
    changes = pc.sum(pc.not_equal(labels.slice(1), labels.slice(0, len(labels) - 1))).as_py() or 0
    return changes + 1 == len(pc.unique(labels))


def export_recordio(src: str, dst: str, cfg: StorageConfig | None = None, *, overwrite: bool = False,
                    verify: bool = True, strict: bool = False,
                    allow_incomplete: bool = False) -> tuple[str, DecodeReport]:
    """Write ``dst/train.rec``, ``train.idx`` and ``property`` with true labels in every header.

    Labels already grouped (as every table this project writes) stream through with one identity
    in memory; otherwise the images are gathered and sorted by label first. An incomplete ``src``
    is refused, before anything is written, unless ``allow_incomplete``.
    """
    out = storage.resolve(dst, cfg)
    if storage.exists(out.join(IDX)) and not overwrite:
        raise faces.OutputExistsError(f"{out.join(IDX).uri} exists; choose another path or set output.overwrite=true")
    dataset = faces.open_faces(src, cfg, allow_incomplete=allow_incomplete)
    report, grouped = DecodeReport(), _labels_grouped(dataset)
    storage.delete_file(out.join(IDX))  # the index is published last: without it the pair is incomplete
    # contexts exit innermost first: the .rec is published before the .idx that completes the pair
    with storage.atomic_local_path(out.join(IDX)) as idx_tmp, storage.atomic_local_path(out.join(REC)) as rec_tmp:
        with open(rec_tmp, "w+b") as rec, open(idx_tmp, "w", encoding="utf-8") as idx:
            n_images, n_ids = recordio.write_faces(((label, data) for _, data, label in verified_rows(dataset, verify, strict, report)),
                                                   rec, idx, grouped=grouped)
    if n_images:
        first = next(b for b in dataset.to_batches(columns=[schema.IMAGE]) if b.num_rows)
        h, w = decode_image(first.column(schema.IMAGE).field("bytes")[0].as_py()).shape[:2]
        storage.atomic_write_text(out.join(PROPERTY), f"{n_ids},{h},{w}\n")
    return f"{n_images} images of {n_ids} identities as RecordIO", report
