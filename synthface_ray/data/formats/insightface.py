"""insightface datasets (``train.rec`` + ``train.idx`` [+ ``property``]) <-> faces tables.

Glue between the storage layer and the pure RecordIO codec in :mod:`.recordio`. Labels come
from the record headers (never renumbered, unless an export asks for ``relabel``), so a round
trip returns every label. ``property`` holds ``num_classes,height,width`` as insightface's
``load_property`` reads it; ``num_classes`` is max label + 1, so that every label is a valid class
index (a set whose labels have gaps, e.g. generated identities 0..113 of which 66 are present,
has more classes than identities).
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
from synthface_ray.data.formats.common import (
    LABEL_MAP,
    ImportOptions,
    check_exportable_labels,
    checked_image,
    contiguous_labels,
    label_map_csv,
    progress_bar,
    verified_rows,
)
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
    """The face records of a ``.rec``/``.idx`` pair, with a progress bar (``import``); an
    unreadable pair raises ``RecordIOError`` naming the file and the fix."""
    try:
        index = recordio.read_index(io.BytesIO(storage.read_bytes(idx_loc)), idx_loc.uri)
        with rec_loc.fs.open_input_file(rec_loc.path) as rec:
            bounds = recordio.identity_range(rec, index)
            total = bounds[0] - 1 if bounds is not None else len(index)
            with progress_bar(total, "import") as bar:
                for record in recordio.iter_faces(rec, index, rec_loc.uri):
                    yield record
                    bar.update(1)
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


def _labels_grouped(labels: pa.ChunkedArray | pa.Array) -> bool:
    """Whether each label's rows are contiguous."""
    if len(labels) < 2:
        return True
    changes = pc.sum(pc.not_equal(labels.slice(1), labels.slice(0, len(labels) - 1))).as_py() or 0
    return changes + 1 == len(pc.unique(labels))


def property_text(num_classes: int, height: int, width: int) -> str:
    """The ``property`` file: ``num_classes,height,width`` (insightface ``load_property``)."""
    return f"{num_classes},{height},{width}\n"


def export_recordio(src: str, dst: str, cfg: StorageConfig | None = None, *, overwrite: bool = False,
                    verify: bool = True, strict: bool = False, allow_incomplete: bool = False,
                    relabel: bool = False) -> tuple[str, DecodeReport]:
    """Write ``dst/train.rec``, ``train.idx`` and ``property`` with true labels in every header.

    ``property`` gives max label + 1 classes: every label is a valid class index. With
    ``relabel`` the labels are numbered 0..K-1 in ascending order instead (K identities, K
    classes) and ``labels.csv`` maps each exported label to the original one (an identity whose
    every image is skipped as corrupt keeps its number, unused). Negative labels
    are refused unless ``relabel``. Labels already grouped (as every table this project writes)
    stream through with one identity in memory; otherwise the images are gathered and sorted by
    label first. An incomplete ``src`` is refused, before anything is written, unless
    ``allow_incomplete``. ``property`` and ``labels.csv`` are written before the pair, whose
    ``.idx`` completes the export.
    """
    out = storage.resolve(dst, cfg)
    if storage.exists(out.join(IDX)) and not overwrite:
        raise faces.OutputExistsError(f"{out.join(IDX).uri} exists; choose another path or set output.overwrite=true")
    dataset = faces.open_faces(src, cfg, allow_incomplete=allow_incomplete)
    labels = dataset.to_table(columns=[schema.LABEL]).column(schema.LABEL)
    check_exportable_labels(pc.unique(labels).to_pylist(), relabel)
    mapping = contiguous_labels(pc.unique(labels).to_pylist()) if relabel else None
    report, grouped, top = DecodeReport(), _labels_grouped(labels), [-1]

    def pairs() -> Iterator[tuple[int, bytes]]:
        for _, data, label in verified_rows(dataset, verify, strict, report):
            label = mapping[label] if mapping is not None else label
            top[0] = max(top[0], label)
            yield label, data

    for stale in (IDX, PROPERTY, LABEL_MAP):  # the index first: without it the pair is incomplete
        storage.delete_file(out.join(stale))
    # contexts exit innermost first: the .rec is published before the .idx that completes the pair
    with storage.atomic_local_path(out.join(IDX)) as idx_tmp, storage.atomic_local_path(out.join(REC)) as rec_tmp:
        with open(rec_tmp, "w+b") as rec, open(idx_tmp, "w", encoding="utf-8") as idx:
            n_images, n_ids = recordio.write_faces(pairs(), rec, idx, grouped=grouped)
        if n_images:
            first = next(b for b in dataset.to_batches(columns=[schema.IMAGE]) if b.num_rows)
            h, w = decode_image(first.column(schema.IMAGE).field("bytes")[0].as_py()).shape[:2]
            storage.atomic_write_text(out.join(PROPERTY), property_text(top[0] + 1, h, w))
        if mapping is not None:
            storage.atomic_write_text(out.join(LABEL_MAP), label_map_csv(mapping))
    notes = [f"property: {top[0] + 1} classes"] if n_images else []
    notes += [f"labels relabelled 0..{len(mapping) - 1}, map in {LABEL_MAP}"] if mapping else []
    return f"{n_images} images of {n_ids} identities as RecordIO" + (f" ({'; '.join(notes)})" if notes else ""), report
