"""Faces tables on disk or S3: sharded Parquet plus a manifest written last.

A faces dataset is a directory (or S3 prefix) of ``part-NNNNN.parquet`` shards, a ``README.md``
dataset card (for Hugging Face ``datasets``: ``load_dataset(folder)`` reads the shards, and only
them, see :func:`dataset_card`) and a ``manifest.json`` listing the shards. The manifest is written
after every shard is complete (the card just before it), so its presence is what marks a dataset
complete; readers given a directory use it when present and
refuse a folder of our shards without it (an interrupted run) unless told to read it anyway. A
single Parquet file, or a directory of Parquet files from another tool, is read as well.
"""

from __future__ import annotations

import datetime as _dt
import posixpath
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from synthface_ray import storage
from synthface_ray.data import schema
from synthface_ray.storage import Location, StorageConfig

MANIFEST = "manifest.json"
CONFIG = "config.yaml"
CARD = "README.md"
SHARD_PATTERN = re.compile(r"^part-(\d{5,})\.parquet$")  # 6+ digits past shard 99,999
#: the shards' names as a glob, for the dataset card's ``data_files`` (matches :func:`shard_name`)
SHARD_GLOB = "part-*.parquet"
FORMAT = "synthface-faces"


class OutputExistsError(FileExistsError):
    """The destination already holds a complete dataset and overwrite is off."""


def shard_name(index: int) -> str:
    """``part-00042.parquet``: 5 digits, more past shard 99,999 (parse with :func:`shard_index`)."""
    return f"part-{index:05d}.parquet"


def shard_index(name: str) -> int | None:
    """The shard number of a file name made by :func:`shard_name`, else None."""
    match = SHARD_PATTERN.match(name)
    return int(match.group(1)) if match else None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def prepare_output(loc: Location, overwrite: bool) -> Location:
    """Make ``loc`` ready for a new dataset; returns the folder to write it in.

    A complete dataset (one with a manifest) is kept unless ``overwrite``. When overwriting, the
    new dataset is written beside it, in the hidden ``.<name>.replacing``, and swapped in only once
    complete (:func:`finish`): a run killed on the way leaves the old dataset as it was. Leftover
    ``part-*.parquet`` shards of an interrupted run (no manifest) are removed; other files stay.
    A complete replacement left by a run killed during its swap is swapped in first.
    """
    storage.finish_replacement(loc, MANIFEST)
    if storage.exists(loc.join(MANIFEST)):
        if not overwrite:
            raise OutputExistsError(
                f"{loc.uri} already holds a complete dataset ({MANIFEST} exists). Choose another "
                "output path or pass --set output.overwrite=true to replace it."
            )
        folder = storage.replacement_of(loc)
        storage.remove_folder(folder)
        storage.ensure_dir(folder)
        return folder
    for path in storage.list_files(loc, ".parquet"):
        if SHARD_PATTERN.match(path.rsplit("/", 1)[-1]):
            loc.fs.delete_file(path)
    storage.ensure_dir(loc)
    return loc


def finish(folder: Location, loc: Location) -> None:
    """Swap the complete dataset written in ``folder`` (see :func:`prepare_output`) into ``loc``."""
    if folder.path != loc.path:
        storage.replace_folder(folder, loc, MANIFEST)


@dataclass
class FacesWriter:
    """Write faces tables as fixed-size Parquet shards; :meth:`close` writes the manifest.

    Each shard is published atomically; the dataset is complete only once ``close`` returns.
    Files that belong with the dataset (config, grid) go in :attr:`folder` before ``close``: when
    overwriting a complete dataset that is its replacement, swapped in by ``close``.
    """

    loc: Location
    rows_per_shard: int = 10_000
    overwrite: bool = False
    kind: str = "faces"
    folder: Location = field(init=False)
    _buffer: list[pa.Table] = field(default_factory=list, init=False, repr=False)
    _buffered: int = field(default=0, init=False)
    _files: list[dict[str, Any]] = field(default_factory=list, init=False)
    _schema: pa.Schema | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.rows_per_shard < 1:
            raise ValueError(f"rows_per_shard must be >= 1, got {self.rows_per_shard}")
        self.folder = prepare_output(self.loc, self.overwrite)

    @property
    def rows(self) -> int:
        return sum(f["rows"] for f in self._files) + self._buffered

    def write(self, table: pa.Table) -> None:
        """Buffer ``table``; every full shard is written. Faces tables are written with
        :func:`schema.storage_schema` (``image`` an Image for Hugging Face ``datasets``)."""
        if self._schema is None:
            self._schema = table.schema
            if self.kind == "faces":
                schema.validate_faces_schema(table.schema, "table to write")
                self._schema = schema.storage_schema(table.schema)
        if self.kind == "faces":
            schema.check_no_null_images(table, "table to write")
        if not table.schema.equals(self._schema, check_metadata=True):
            table = table.cast(self._schema)
        self._buffer.append(table)
        self._buffered += table.num_rows
        while self._buffered >= self.rows_per_shard:
            self._flush(self.rows_per_shard)

    def _flush(self, n: int) -> None:
        table = pa.concat_tables(self._buffer)
        head, rest = table.slice(0, n), table.slice(n)
        name = shard_name(len(self._files))
        with storage.atomic_local_path(self.folder.join(name)) as tmp:
            pq.write_table(head, tmp, compression="zstd")
        self._files.append({"path": name, "rows": head.num_rows})
        self._buffer = [rest] if rest.num_rows else []
        self._buffered = rest.num_rows

    def close(self, **metadata: Any) -> dict[str, Any]:
        """Flush the last shard and publish the manifest (and swap a replacement in); returns it."""
        if self._buffered:
            self._flush(self._buffered)
        manifest = publish_manifest(self.folder, self._files, self._schema, self.kind, **metadata)
        finish(self.folder, self.loc)
        return manifest


def dataset_card(kind: str, rows: int, shards: int) -> str:
    """The ``README.md`` of a dataset folder: YAML front matter whose ``configs`` point Hugging
    Face ``datasets`` at the shards (without it ``load_dataset(folder)`` picks its JSON loader
    when the sidecar JSON files outnumber the shards), then a short description."""
    return (
        "---\n"
        "configs:\n"
        "- config_name: default\n"
        f'  data_files: "{SHARD_GLOB}"\n'
        "---\n\n"
        f"# synthface {kind} dataset\n\n"
        f"{rows} rows in {shards} Parquet shard(s) (`{SHARD_GLOB}`), written by synthface-ray.\n"
        f"`{MANIFEST}` is written last: without it the dataset is incomplete.\n\n"
        "Columns: `image` (struct<bytes, path>: PNG/JPEG bytes; a Hugging Face `datasets` Image),\n"
        "`label` (int64 identity), `source` (int64: 0 real, 1.. synthetic) and any extra columns.\n\n"
        "```python\n"
        "import datasets\n"
        'ds = datasets.load_dataset("path/to/this/folder", split="train")  # ds[0]["image"] is a PIL image\n'
        "```\n"
    )


def publish_manifest(loc: Location, files: list[dict[str, Any]], table_schema: pa.Schema | None,
                     kind: str = "faces", **metadata: Any) -> dict[str, Any]:
    """Write the dataset card (:func:`dataset_card`), then ``manifest.json`` (the last write of a
    dataset: it marks it complete); returns the manifest. The card names the shards by a glob, so
    it never makes a folder complete: a folder with a card and no manifest is still refused."""
    rows = sum(f["rows"] for f in files)
    storage.atomic_write_text(loc.join(CARD), dataset_card(kind, rows, len(files)))
    manifest = {
        "format": FORMAT,
        "kind": kind,
        "version": 1,
        "rows": rows,
        "files": files,
        "schema": [f"{f.name}: {f.type}" for f in (table_schema or pa.schema([]))],
        "created_at": _now(),
        **metadata,
    }
    storage.atomic_write_json(loc.join(MANIFEST), manifest)
    return manifest


def write_faces(table_or_batches: pa.Table | Sequence[pa.Table] | Iterator[pa.Table], uri: str,
                cfg: StorageConfig | None = None, rows_per_shard: int = 10_000,
                overwrite: bool = False, **metadata: Any) -> dict[str, Any]:
    """Write one table or an iterable of tables as a faces dataset; returns the manifest."""
    writer = FacesWriter(storage.resolve(uri, cfg), rows_per_shard, overwrite)
    tables = [table_or_batches] if isinstance(table_or_batches, pa.Table) else table_or_batches
    for table in tables:
        writer.write(table)
    return writer.close(**metadata)


# reading -------------------------------------------------------------------------------------
class IncompleteDatasetError(ValueError):
    """A dataset written by synthface has no manifest (its run was interrupted or is still
    running) or lacks files its manifest lists."""


def _is_synthface_output(loc: Location, files: list[str]) -> bool:
    """Shards named ``part-NNNNN.parquet`` or a ``job.json``: a folder our writers made."""
    names = {posixpath.relpath(f, loc.path) for f in files}
    return any(SHARD_PATTERN.match(n) for n in names) or storage.exists(loc.join("job.json"))


def _planned_rows(loc: Location) -> int | None:
    """The rows a generation run planned (its ``job.json`` names the plan), when readable."""
    try:
        uri = storage.read_json(loc.join("job.json"))["config"]["input"]["plan"]
        if storage.is_s3(uri) and not loc.is_s3:
            return None  # no credentials here to read it with
        plan = storage.resolve(uri)
        fs = loc.fs if plan.is_s3 else plan.fs
        with fs.open_input_file(plan.path) as fh:
            return pq.ParquetFile(fh).metadata.num_rows
    except Exception:  # noqa: BLE001 -- only an extra figure for the message
        return None


def _rows(loc: Location, files: list[str]) -> int:
    total = 0
    for path in files:
        with loc.fs.open_input_file(path) as fh:
            total += pq.ParquetFile(fh).metadata.num_rows
    return total


def incomplete_facts(loc: Location, files: list[str]) -> str:
    """What is there and what is missing, for a dataset of ours without its manifest."""
    rows, planned = _rows(loc, files), _planned_rows(loc)
    missing = ("" if planned is None else f" of the {planned} the run planned ({planned - rows} missing)"
               if planned != rows else " (every planned row: the run stopped before its manifest)")
    return (f"{loc.uri} is incomplete: it has no {MANIFEST}, which its writer adds last, once every "
            f"shard is there (the run was interrupted or is still running); {len(files)} shard(s) "
            f"hold {rows} rows{missing}")


def _listed_files(loc: Location) -> list[str]:
    listed = [loc.join(f["path"]).path for f in storage.read_json(loc.join(MANIFEST)).get("files", [])]
    present = set(storage.list_files(loc, ".parquet", recursive=True))
    gone = [posixpath.relpath(p, loc.path) for p in listed if p not in present]
    if gone:
        raise IncompleteDatasetError(
            f"{loc.uri}: {len(gone)} of the {len(listed)} files its {MANIFEST} lists are missing "
            f"({', '.join(gone[:5])}{', ...' if len(gone) > 5 else ''}); restore them or re-create the dataset")
    return listed


def dataset_files(loc: Location, allow_incomplete: bool = False, key: str = "input.allow_incomplete") -> list[str]:
    """Parquet files making up the dataset at ``loc`` (a file, or a directory/prefix).

    A directory with a manifest is read as it lists (every listed file must exist). A directory
    our writers made (``part-NNNNN.parquet`` shards, ``job.json``) without its manifest is an
    interrupted run: refused with :class:`IncompleteDatasetError` naming what is there and what
    is missing, unless ``allow_incomplete`` (then a warning with the counts; ``key`` is the
    setting named in both). Any other directory of Parquet files (another tool's) is read whole.
    """
    info = loc.fs.get_file_info(loc.path)
    if info.type == storage.pafs.FileType.File:
        return [loc.path]
    if storage.exists(loc.join(MANIFEST)):
        return _listed_files(loc)
    files = storage.list_files(loc, ".parquet", recursive=True)
    if not files:
        raise FileNotFoundError(
            f"no Parquet files at {loc.uri}: expected a .parquet file or a directory holding "
            f"{MANIFEST} and part-*.parquet shards (create one with `synthface toyfaces` or `synthface import`)"
        )
    if _is_synthface_output(loc, files):
        facts = incomplete_facts(loc, files)
        if not allow_incomplete:
            raise IncompleteDatasetError(f"{facts}. Re-run the command that writes it (it resumes), or "
                                         f"pass --set {key}=true to read the rows that are there")
        print(f"WARNING: {facts}; reading them ({key}=true)", file=sys.stderr, flush=True)
    return files


def open_faces(uri: str, cfg: StorageConfig | None = None, validate: bool = True,
               allow_incomplete: bool = False, key: str = "input.allow_incomplete") -> pads.Dataset:
    """A pyarrow dataset over a faces table, schema-checked (see ``schema.validate_faces_schema``);
    an incomplete dataset is refused unless ``allow_incomplete`` (see :func:`dataset_files`)."""
    loc = storage.resolve(uri, cfg)
    files = dataset_files(loc, allow_incomplete, key)
    dataset = pads.dataset(files, filesystem=loc.fs, format="parquet")
    if validate:
        schema.validate_faces_schema(dataset.schema, loc.uri)
    return dataset


def read_faces(uri: str, cfg: StorageConfig | None = None, columns: list[str] | None = None,
               allow_incomplete: bool = False) -> pa.Table:
    """Read a whole faces table into memory."""
    return open_faces(uri, cfg, allow_incomplete=allow_incomplete).to_table(columns=columns)


def read_manifest(uri: str, cfg: StorageConfig | None = None) -> dict[str, Any] | None:
    loc = storage.resolve(uri, cfg).join(MANIFEST)
    return storage.read_json(loc) if storage.exists(loc) else None
