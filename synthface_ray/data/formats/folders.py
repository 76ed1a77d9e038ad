"""Image folders: ``root/<identity>/*.{jpg,jpeg,png}`` <-> faces tables (local or S3)."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from synthface_ray import storage
from synthface_ray.data import faces, schema
from synthface_ray.data.formats.common import (
    IMAGE_SUFFIXES,
    LABEL_MAP,
    ImportOptions,
    checked_image,
    contiguous_labels,
    image_suffix,
    label_map_csv,
    progress_bar,
    verified_rows,
)
from synthface_ray.data.transforms import DecodeReport
from synthface_ray.storage import Location, StorageConfig

#: present in an export tree while it is being written; importing such a tree is refused
INCOMPLETE = ".synthface-export-incomplete"


def scan_folders(root: Location) -> dict[str, list[str]]:
    """Map identity directory name -> sorted image paths under ``root``."""
    if not storage.is_dir(root):
        raise FileNotFoundError(f"{root.uri} is not a directory: expected root/<identity>/*.jpg|png")
    if storage.exists(root.join(INCOMPLETE)):
        raise ValueError(f"{root.uri} is an interrupted `synthface export` ({INCOMPLETE} is present): "
                         "re-run the export with output.overwrite=true")
    selector = pafs.FileSelector(root.path, recursive=True)
    groups: dict[str, list[str]] = {}
    for info in root.fs.get_file_info(selector):
        if info.type != pafs.FileType.File or not info.path.lower().endswith(IMAGE_SUFFIXES):
            continue
        parts = posixpath.relpath(info.path, root.path).split("/")
        if len(parts) != 2 or parts[0].startswith("."):
            continue  # images must sit exactly one level down, in their identity's folder
        groups.setdefault(parts[0], []).append(info.path)
    if not groups:
        raise FileNotFoundError(f"no images found under {root.uri}: expected root/<identity>/*.jpg|jpeg|png")
    return {name: sorted(paths) for name, paths in sorted(groups.items())}


def folder_labels(names: list[str], label_from: str) -> dict[str, int]:
    """Labels per identity folder: sorted position (``index``) or the folder name as an int."""
    if label_from == "index":
        return {name: i for i, name in enumerate(names)}
    bad = [n for n in names if not n.isdigit()]
    if bad:
        raise ValueError(f"input.label_from=name needs integer folder names; these are not: {bad[:5]}")
    return {name: int(name) for name in names}


def iter_folder_tables(root: Location, opts: ImportOptions, report: DecodeReport,
                       rows_per_table: int = 1024) -> Iterator[pa.Table]:
    """Faces tables of the images under ``root`` (one progress bar over them all, ``import``)."""
    groups = scan_folders(root)
    labels = folder_labels(list(groups), opts.label_from)
    rows: dict[str, list[Any]] = {"image": [], "path": [], "label": [], "identity": []}
    with progress_bar(sum(len(paths) for paths in groups.values()), "import") as bar:
        for name, paths in groups.items():
            for path in paths:
                rel = posixpath.relpath(path, root.path)
                data = checked_image(storage.read_bytes(Location(root.fs, path, path)), rel,
                                     opts.resolution, opts.strict, report)
                bar.update(1)
                if data is None:
                    continue
                for key, value in zip(rows, (data, rel, labels[name], name)):
                    rows[key].append(value)
                if len(rows["image"]) >= rows_per_table:
                    yield _table(rows, opts.source)
                    rows = {k: [] for k in rows}
    if rows["image"]:
        yield _table(rows, opts.source)


def _table(rows: dict[str, list[Any]], source: int) -> pa.Table:
    return schema.faces_table(rows["image"], rows["label"], source, paths=rows["path"],
                              extra={schema.IDENTITY: pa.array(rows["identity"], pa.string())})


def iter_folders_tables(src: str, opts: ImportOptions, cfg: StorageConfig | None, report: DecodeReport,
                        **_: Any) -> Iterator[pa.Table]:
    """Importer entry point (see :data:`synthface_ray.data.formats.IMPORTERS`)."""
    return iter_folder_tables(storage.resolve(src, cfg), opts, report)


def export_folders(src: str, dst: str, cfg: StorageConfig | None = None, *, overwrite: bool = False,
                   verify: bool = True, strict: bool = False, allow_incomplete: bool = False,
                   relabel: bool = False) -> tuple[str, DecodeReport]:
    """Write a faces dataset as ``dst/<label:06d>/<row>.<png|jpg>``; returns the decode report.
    With ``relabel`` the folders are numbered 0..K-1 in label order and ``dst/labels.csv`` maps
    each to its original label. An incomplete ``src`` is refused, before anything is written,
    unless ``allow_incomplete``."""
    dataset = faces.open_faces(src, cfg, allow_incomplete=allow_incomplete)
    out = storage.resolve(dst, cfg)
    if storage.exists(out) and storage.list_files(out, recursive=True) and not overwrite:
        raise faces.OutputExistsError(f"{out.uri} is not empty; choose another path or set output.overwrite=true")
    mapping = None
    if relabel:
        mapping = contiguous_labels(pc.unique(dataset.to_table(columns=[schema.LABEL]).column(schema.LABEL)).to_pylist())
    storage.atomic_write_text(out.join(INCOMPLETE), "export in progress\n")
    storage.delete_file(out.join(LABEL_MAP))  # a map of an earlier export would not describe this one
    report, written = DecodeReport(), 0
    for row, data, label in verified_rows(dataset, verify, strict, report):
        label = mapping[label] if mapping is not None else label
        storage.atomic_write_bytes(out.join(label_folder(label), f"{row:08d}{image_suffix(data)}"), data)
        written += 1
    if mapping is not None:
        storage.atomic_write_text(out.join(LABEL_MAP), label_map_csv(mapping))
    storage.delete_file(out.join(INCOMPLETE))
    relabelled = f" (labels relabelled 0..{len(mapping) - 1}, map in {LABEL_MAP})" if mapping else ""
    return f"{written} images as image folders{relabelled}", report


def label_folder(label: int) -> str:
    """Folder per label, zero-padded so that sorted order is label order: importing the
    export back with ``label_from=name`` (or ``index`` for labels 0..K-1) restores every label."""
    return f"{label:06d}"
