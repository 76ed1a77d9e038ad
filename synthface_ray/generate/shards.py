"""Exactly-once output of a generation run: shard-level idempotent commits.

The plan, sorted by ``row_id``, is cut into shards of ``rows_per_file`` rows: shard ``k`` is
rows ``[k R, (k + 1) R)`` and is written as ``part-{k:05d}.parquet``. Which rows a shard holds and
every byte of it are fixed by the plan and the job's content settings, so:

* a shard is committed in one step (local: a hidden temp file renamed; S3: one PUT of the
  finished file), then its receipt (``receipts/part-k.json``: rows, bytes, sha256, row range);
* a re-run lists the committed shards and generates only the others;
* a zombie writer of a killed run can only (re)write a shard with the same name and the same
  bytes, so no interleaving of runs can duplicate a row;
* ``job.json`` (written first) pins the content settings: a re-run with different ones is
  refused; ``manifest.json`` (written last) lists every shard with its checksum and marks the
  dataset complete.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from synthface_ray import storage
from synthface_ray.data.faces import MANIFEST, shard_index, shard_name
from synthface_ray.mining.plan import ROW_ID
from synthface_ray.storage import Location

JOB_FILE, RECEIPTS, GRID = "job.json", "receipts", "grid.png"
SHARD = "shard"


class JobMismatchError(FileExistsError):
    """The output folder belongs to a run with different content settings."""


def fingerprint(obj: Any) -> str:
    """sha256 of an object's canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def table_fingerprint(table: pa.Table) -> str:
    """sha256 of a table's content (Arrow IPC of its columns in name order), independent of the
    Parquet file's bytes."""
    table = table.select(sorted(table.column_names)).combine_chunks()
    sink = _HashSink()  # hashed as written: no copy of the serialised table (a 1M-row plan: ~60 MB)
    with pa.ipc.new_stream(sink, table.schema.remove_metadata()) as writer:
        writer.write_table(table.replace_schema_metadata(None))
    return sink.digest.hexdigest()


class _HashSink(io.RawIOBase):
    """A write-only stream that keeps only the sha256 of what was written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.digest.update(data)
        return memoryview(data).nbytes


def folder_fingerprint(folder: str) -> str:
    """sha256 over every file of a model export folder (relative names and contents)."""
    import os

    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, folder).encode() + b"\0")
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def assign_shards(plan: pa.Table, rows_per_file: int) -> pa.Table:
    """The plan sorted by ``row_id`` with a ``shard`` column (position // rows_per_file)."""
    plan = plan.sort_by(ROW_ID)
    return plan.append_column(SHARD, pa.array(np.arange(plan.num_rows) // rows_per_file, pa.int64()))


def split_shards(plan: pa.Table, todo: set[int] | None = None) -> list[pa.Table]:
    """One table per shard (in order), only the shards in ``todo`` when given."""
    shard = plan.column(SHARD).to_numpy()
    bounds = np.flatnonzero(np.diff(shard)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [plan.num_rows]])
    return [plan.slice(s, e - s) for s, e in zip(starts, ends, strict=True)
            if todo is None or int(shard[s]) in todo]


def committed(loc: Location) -> set[int]:
    """Shard numbers whose Parquet file is committed under ``loc``."""
    names = (p.rsplit("/", 1)[-1] for p in storage.list_files(loc, ".parquet"))
    return {k for k in map(shard_index, names) if k is not None}


def receipt(shard: int, data: bytes, table: pa.Table, **extra: Any) -> dict[str, Any]:
    """A shard's receipt; a shard the consistency gate emptied has no first/last row id (None)."""
    rows = table.column(ROW_ID).to_numpy()
    first, last = (int(rows.min()), int(rows.max())) if len(rows) else (None, None)
    return {"shard": shard, "path": shard_name(shard), "rows": table.num_rows, "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "first_row_id": first,
            "last_row_id": last, **extra}


def parquet_bytes(table: pa.Table) -> bytes:
    """A shard's file content (zstd; deterministic for a given table and pyarrow build)."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def commit_shard(loc: Location, shard: int, table: pa.Table, **extra: Any) -> dict[str, Any]:
    """Publish one shard, then its receipt; returns the receipt."""
    data = parquet_bytes(table)
    storage.atomic_write_bytes(loc.join(shard_name(shard)), data)
    rec = receipt(shard, data, table, **extra)
    storage.atomic_write_json(loc.join(RECEIPTS, shard_name(shard).replace(".parquet", ".json")), rec)
    return rec


def read_receipt(loc: Location, shard: int) -> dict[str, Any]:
    """A committed shard's receipt; rebuilt from the file if the run died between the two writes."""
    path = loc.join(RECEIPTS, shard_name(shard).replace(".parquet", ".json"))
    if storage.exists(path):
        return storage.read_json(path)
    data = storage.read_bytes(loc.join(shard_name(shard)))
    rec = receipt(shard, data, pq.read_table(io.BytesIO(data), columns=[ROW_ID]))
    storage.atomic_write_json(path, rec)
    return rec


def same_job(loc: Location, job: dict[str, Any]) -> bool:
    """Whether ``loc`` holds a run (``job.json``) of ``job``."""
    path = loc.join(JOB_FILE)
    return storage.exists(path) and storage.read_json(path).get("fingerprint") == job["fingerprint"]


def check_job(loc: Location, job: dict[str, Any], overwrite: bool) -> bool:
    """Make ``loc`` ready for ``job``; returns True when it resumes an earlier run of it.

    A folder of another job is refused (naming the settings that differ) unless ``overwrite``,
    which deletes its manifest first, then everything else."""
    path = loc.join(JOB_FILE)
    if storage.exists(path) and not overwrite:
        previous = storage.read_json(path)
        if previous.get("fingerprint") == job["fingerprint"]:
            return True
        old, new = previous.get("content", {}), job["content"]
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise JobMismatchError(
            f"{loc.uri} holds a generation run with different settings ({', '.join(keys) or 'format'}); "
            "choose a new output.name, or pass --set output.overwrite=true to delete it and start over")
    if not overwrite and storage.list_files(loc, recursive=True):
        raise FileExistsError(f"{loc.uri} holds files but no {JOB_FILE}: it is not a generation run; "
                              "choose another output path or name (or output.overwrite=true to empty it)")
    _clear(loc)
    storage.atomic_write_json(path, job)
    return False


def _clear(loc: Location) -> None:
    """Delete a run's files, the manifest first (so it never looks complete half-deleted)."""
    if storage.exists(loc.join(MANIFEST)):
        storage.delete_file(loc.join(MANIFEST))
    for path in storage.list_files(loc, recursive=True):
        loc.fs.delete_file(path)


__all__ = [
    "GRID", "JOB_FILE", "JobMismatchError", "RECEIPTS", "SHARD", "assign_shards", "check_job", "commit_shard",
    "committed", "fingerprint", "folder_fingerprint", "parquet_bytes", "read_receipt", "same_job", "split_shards",
    "table_fingerprint",
]
