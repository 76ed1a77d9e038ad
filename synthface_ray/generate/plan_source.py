"""The plan of a generation job: checked and fingerprinted on the driver in one streaming pass,
then cut into shards, shard ``k`` = rows ``[k R, (k + 1) R)`` in ``row_id`` order.

A plan file already in ``row_id`` order (what ``synthface plan`` writes) is never held whole: the
driver reads it a batch at a time, and the pipeline's read tasks each read one shard's rows (the
row groups that hold them) from the file, so the driver's memory does not grow with the plan
(docs/BENCHMARKS.md "Scale"). A plan in any other order is sorted in the driver's memory and its
shards are put in the object store from there, as every plan was before (docs/GENERATION.md)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthface_ray import storage
from synthface_ray.generate.shards import SHARD, table_fingerprint
from synthface_ray.mining.plan import IDENTITY_ID, MIX_IDS, MIX_WEIGHTS, NEGATIVE_ID, ROW_ID, SEED
from synthface_ray.storage import Location, StorageConfig

PLAN_TYPES = {ROW_ID: pa.int64(), IDENTITY_ID: pa.int64(), MIX_IDS: pa.list_(pa.int64()),
              MIX_WEIGHTS: pa.list_(pa.float32()), NEGATIVE_ID: pa.int64(), SEED: pa.int64()}
SCAN_ROWS = 65_536  # rows per batch of the driver's pass over the plan
HASH_VERSION = "rows-v2"  # prefix of a plan fingerprint (a bare hex digest is the whole-table hash of before)


# checks and fingerprint -----------------------------------------------------------------------
def missing_columns(schema: pa.Schema, uri: str) -> None:
    missing = [c for c in PLAN_TYPES if c not in schema.names]
    if missing:
        raise ValueError(f"input.plan {uri} lacks column(s) {missing}; a plan has "
                         f"{list(PLAN_TYPES)} (make one with `synthface plan`)")


def checked(table: pa.Table | pa.RecordBatch, uri: str) -> pa.Table:
    """The plan's columns in their order and types, without schema metadata; wrong types and
    missing values are refused by name."""
    table = pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table
    missing_columns(table.schema, uri)
    try:
        table = table.select(list(PLAN_TYPES)).cast(pa.schema(PLAN_TYPES))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"input.plan {uri}: a column has the wrong type ({exc}); expected "
                         f"{ {k: str(v) for k, v in PLAN_TYPES.items()} }") from None
    nulls = {name: table.column(name).null_count for name in PLAN_TYPES if table.column(name).null_count}
    if nulls:
        raise ValueError(f"input.plan {uri} has missing values {nulls} (column: rows): every row needs "
                         "every column (make the plan with `synthface plan`)")
    return table


class PlanHasher:
    """sha256 of a plan's rows in ``row_id`` order: for each column (by name) its values as
    little-endian bytes, a list column's lengths and then its values, so the digest does not
    depend on how the rows are cut into batches or row groups, or on the file's bytes."""

    def __init__(self) -> None:
        self.parts = {(name, part): hashlib.sha256() for name in sorted(PLAN_TYPES) for part in ("lengths", "values")}

    def update(self, table: pa.Table) -> None:
        for name in sorted(PLAN_TYPES):
            col = table.column(name).combine_chunks()
            if pa.types.is_list(col.type):
                self.parts[name, "lengths"].update(pc.list_value_length(col).to_numpy().astype("<i8").tobytes())
                col = pc.list_flatten(col)
            values = col.to_numpy(zero_copy_only=False)
            self.parts[name, "values"].update(values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes())

    def hexdigest(self) -> str:
        whole = hashlib.sha256()
        for (name, part), digest in self.parts.items():
            whole.update(f"{name}/{part}:".encode() + digest.digest())
        return f"{HASH_VERSION}:{whole.hexdigest()}"


@dataclass(frozen=True)
class Summary:
    """What the driver keeps of a plan: its size, content hash, and identities (never its rows)."""

    num_rows: int
    fingerprint: str
    referenced: np.ndarray  # every identity id a row conditions on (mix sources, negatives), unique
    identities: int  # distinct identity_id values
    ordered: bool  # rows in strictly increasing row_id order (so row ids are unique)


def scan(tables: Iterable[pa.Table], uri: str) -> Summary:
    """One pass over a plan's checked batches: count, order, identities, fingerprint. A repeated
    row id next to itself (in a sorted plan: any repeat) is refused."""
    hasher, rows, last, ordered = PlanHasher(), 0, None, True
    referenced, identities = np.empty(0, np.int64), np.empty(0, np.int64)
    for table in tables:
        if not table.num_rows:
            continue
        row_ids = table.column(ROW_ID).to_numpy()
        steps = np.diff(np.concatenate([[last], row_ids]) if last is not None else row_ids)
        if (steps == 0).any():
            raise ValueError(f"input.plan {uri} repeats row_id values: row ids must be unique")
        ordered = ordered and bool((steps > 0).all())
        last, rows = int(row_ids[-1]), rows + table.num_rows
        neg = table.column(NEGATIVE_ID).to_numpy()
        flat = pc.list_flatten(table.column(MIX_IDS)).to_numpy()
        referenced = np.union1d(referenced, np.concatenate([flat, neg[neg >= 0]]))
        identities = np.union1d(identities, table.column(IDENTITY_ID).to_numpy())
        hasher.update(table)
    if rows == 0:
        raise ValueError(f"input.plan {uri} has no rows: nothing to generate")
    return Summary(rows, hasher.hexdigest(), referenced.astype(np.int64), len(identities), ordered)


# shards ---------------------------------------------------------------------------------------
def shard_table(parts: list[pa.Table], shard: int) -> pa.Table:
    """One shard's rows (contiguous) with its ``shard`` column."""
    table = pa.concat_tables(parts).combine_chunks() if len(parts) > 1 else parts[0].combine_chunks()
    return table.append_column(SHARD, pa.array(np.full(table.num_rows, shard, np.int64)))


def cut_shards(tables: Iterable[pa.Table], rows_per_file: int, todo: set[int] | None = None) -> Iterator[pa.Table]:
    """The shards of rows given in ``row_id`` order (only those in ``todo`` when given), holding
    one shard's rows at a time."""
    pending: list[pa.Table] = []
    have = shard = 0
    for table in tables:
        while table.num_rows:
            take = min(table.num_rows, rows_per_file - have)
            if todo is None or shard in todo:
                pending.append(table.slice(0, take))
            have, table = have + take, table.slice(take)
            if have == rows_per_file:
                if pending:
                    yield shard_table(pending, shard)
                pending, have, shard = [], 0, shard + 1
    if have and pending:
        yield shard_table(pending, shard)


@dataclass(frozen=True)
class PlanFile:
    """A plan file in ``row_id`` order, as the read tasks see it (picklable: no open handles)."""

    uri: str
    storage_cfg: dict[str, Any]
    size: int
    num_rows: int
    row_groups: tuple[int, ...]  # rows per row group

    def location(self) -> Location:
        from synthface_ray.config import from_dict

        return storage.resolve(self.uri, from_dict(StorageConfig, self.storage_cfg))

    def batches(self) -> Iterator[pa.Table]:
        with storage.open_parquet(self.location(), "input.plan", "plan") as pf:
            for batch in pf.iter_batches(batch_size=SCAN_ROWS, columns=list(PLAN_TYPES)):
                yield checked(batch, self.uri)

    def read_rows(self, start: int, stop: int) -> pa.Table:
        """Rows ``[start, stop)``, reading only the row groups that hold them."""
        bounds = np.cumsum([0, *self.row_groups])
        first = int(np.searchsorted(bounds, start, side="right")) - 1
        last = int(np.searchsorted(bounds, stop, side="left")) - 1
        loc = self.location()
        with storage.open_parquet(loc, "input.plan", "plan") as pf:
            size = loc.fs.get_file_info(loc.path).size
            if (size, pf.metadata.num_rows) != (self.size, self.num_rows):
                raise RuntimeError(
                    f"input.plan {self.uri} changed after the job started ({self.num_rows} rows, {self.size} bytes "
                    f"then; {pf.metadata.num_rows} rows, {size} bytes now): put the plan back, or generate the "
                    "new one under another output.name")
            table = pf.read_row_groups(list(range(first, last + 1)), columns=list(PLAN_TYPES))
        return checked(table.slice(start - int(bounds[first]), stop - start), self.uri)


def read_shard(file: PlanFile, shard: int, rows_per_file: int) -> list[pa.Table]:
    """A read task's block: one shard read from the plan file."""
    start = shard * rows_per_file
    return [shard_table([file.read_rows(start, min(start + rows_per_file, file.num_rows))], shard)]


# plans ------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """A checked plan: its :class:`Summary`, and its rows in ``row_id`` order on demand."""

    uri: str
    summary: Summary

    @property
    def num_rows(self) -> int:
        return self.summary.num_rows

    @property
    def fingerprint(self) -> str:
        return self.summary.fingerprint

    def shard_count(self, rows_per_file: int) -> int:
        return -(-self.num_rows // rows_per_file)

    def shard_rows(self, shard: int, rows_per_file: int) -> int:
        return min(rows_per_file, self.num_rows - shard * rows_per_file)

    def batches(self) -> Iterator[pa.Table]:
        raise NotImplementedError

    def shard_tables(self, rows_per_file: int, todo: set[int] | None = None) -> Iterator[pa.Table]:
        """The shards (with their ``shard`` column), one at a time, in order."""
        return cut_shards(self.batches(), rows_per_file, todo)

    def dataset(self, rows_per_file: int, todo: list[int], driver_node_only: bool):
        """A Ray Dataset of the ``todo`` shards, one block per shard, in order."""
        raise NotImplementedError


@dataclass
class StreamedPlan(Plan):
    """A plan file in ``row_id`` order: read a batch or a shard at a time, never whole."""

    file: PlanFile | None = None

    def batches(self) -> Iterator[pa.Table]:
        return self.file.batches()

    def dataset(self, rows_per_file: int, todo: list[int], driver_node_only: bool):
        import ray

        # lazy: Ray Data only where the job runs
        from synthface_ray.generate.plan_reads import PlanShards

        source = PlanShards(self.file, rows_per_file, list(todo), driver_node_only)
        return ray.data.read_datasource(source, override_num_blocks=max(len(todo), 1))


@dataclass
class HeldPlan(Plan):
    """A plan not in ``row_id`` order: sorted and held in the driver's memory."""

    table: pa.Table | None = None

    def batches(self) -> Iterator[pa.Table]:
        return (pa.Table.from_batches([b]) for b in self.table.to_batches(SCAN_ROWS))

    def dataset(self, rows_per_file: int, todo: list[int], driver_node_only: bool):
        import ray

        return ray.data.from_arrow(list(self.shard_tables(rows_per_file, set(todo))))


def open_plan(uri: str, store: StorageConfig) -> Plan:
    """The plan at ``uri`` checked in one pass: streamed when its file is in ``row_id`` order,
    else sorted and held."""
    from synthface_ray.config import to_dict

    loc = storage.resolve(uri, store)
    if not storage.exists(loc):
        raise FileNotFoundError(f"input.plan: {loc.uri} does not exist (make one with `synthface plan`)")
    with storage.open_parquet(loc, "input.plan", "plan") as pf:
        missing_columns(pf.schema_arrow, loc.uri)
        meta = pf.metadata
        groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    file = PlanFile(loc.uri, to_dict(store, redact=False), loc.fs.get_file_info(loc.path).size, meta.num_rows, groups)
    summary = scan(file.batches(), loc.uri)
    if summary.ordered:
        return StreamedPlan(loc.uri, summary, file=file)
    table = checked(storage.read_parquet(loc, "input.plan", "plan"), loc.uri).sort_by(ROW_ID)
    held = HeldPlan(loc.uri, summary, table=table)
    return HeldPlan(loc.uri, scan(held.batches(), loc.uri), table=table)


def legacy_fingerprint(uri: str, store: StorageConfig) -> str:
    """The plan's hash as runs before the streamed plan recorded it in ``job.json`` (the whole
    table, in the file's order, as one Arrow IPC stream): read whole, only to resume such a run."""
    loc = storage.resolve(uri, store)
    return table_fingerprint(checked(storage.read_parquet(loc, "input.plan", "plan"), loc.uri))


__all__ = ["HASH_VERSION", "PLAN_TYPES", "HeldPlan", "Plan", "PlanFile", "PlanHasher",
           "StreamedPlan", "Summary", "checked", "cut_shards", "legacy_fingerprint", "open_plan", "scan"]
