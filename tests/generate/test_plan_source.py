"""The plan a generation job reads: one streaming pass on the driver (checks, summary, content
hash), shards cut the same way whether the plan is streamed from its file or held sorted, and a
shard read by row groups equal to the same rows of the whole plan."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthface_ray import storage
from synthface_ray.generate import plan_source, shards
from synthface_ray.generate.plan_source import HeldPlan, StreamedPlan, open_plan
from synthface_ray.mining.plan import plan_rows
from synthface_ray.storage import StorageConfig


def _plan(identities=7, per=3):
    return plan_rows(np.arange(identities), per, negative_of={0: 3, 4: 1},
                     mixes=[(100, [0, 2], [0.5, 0.5]), (101, [1, 5, 6], [0.2, 0.3, 0.5])], images_per_mix=4, seed=3)


def _write(table, path, row_group_size=None):
    pq.write_table(table, path, row_group_size=row_group_size)
    return str(path)


def _old_shards(table, rows_per_file, todo=None):
    """The shards as the driver cut them before plans were streamed (the whole plan in memory)."""
    return shards.split_shards(shards.assign_shards(plan_source.checked(table, "t"), rows_per_file), todo)


@pytest.mark.parametrize("row_group_size", [None, 5, 7])
@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_shards_are_those_of_the_whole_sorted_plan_however_the_file_is_laid_out(tmp_path, row_group_size, order):
    table = _plan()
    if order == "shuffled":
        table = table.take(np.random.default_rng(0).permutation(table.num_rows))
    plan = open_plan(_write(table, tmp_path / "p.parquet", row_group_size), StorageConfig())
    assert isinstance(plan, StreamedPlan if order == "sorted" else HeldPlan)
    for rows_per_file, todo in [(4, None), (6, {0, 2, 4}), (100, None), (1, {0, 28, 28 + 7})]:
        ours = list(plan.shard_tables(rows_per_file, todo))
        old = _old_shards(table, rows_per_file, todo)
        assert len(ours) == len(old) and all(a.equals(b) for a, b in zip(ours, old, strict=True))
        assert plan.shard_count(rows_per_file) == -(-table.num_rows // rows_per_file)
    assert plan.num_rows == table.num_rows == 29 and plan.summary.identities == 9
    assert plan.summary.referenced.tolist() == [0, 1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("row_group_size", [None, 5])
def test_a_shard_read_by_row_groups_is_the_same_rows_as_the_whole_plan(tmp_path, row_group_size):
    table = _plan()
    plan = open_plan(_write(table, tmp_path / "p.parquet", row_group_size), StorageConfig())
    old = _old_shards(table, 6)
    for k in range(plan.shard_count(6)):
        [block] = plan_source.read_shard(plan.file, k, 6)
        assert block.equals(old[k]) and plan.shard_rows(k, 6) == block.num_rows
    for start, stop in [(0, 29), (4, 6), (5, 10), (9, 11), (28, 29)]:
        assert plan.file.read_rows(start, stop).equals(plan_source.checked(table.slice(start, stop - start), "t"))


def test_the_fingerprint_is_the_rows_in_row_id_order_not_the_files_bytes_or_batches(tmp_path):
    table = _plan()
    a = open_plan(_write(table, tmp_path / "a.parquet"), StorageConfig())
    b = open_plan(_write(table, tmp_path / "b.parquet", row_group_size=4), StorageConfig())
    shuffled = table.take(np.random.default_rng(1).permutation(table.num_rows))
    c = open_plan(_write(shuffled, tmp_path / "c.parquet"), StorageConfig())
    assert a.fingerprint == b.fingerprint == c.fingerprint
    assert a.fingerprint.startswith(plan_source.HASH_VERSION + ":")
    assert (tmp_path / "a.parquet").read_bytes() != (tmp_path / "b.parquet").read_bytes()
    weights = pa.array([[0.25, 0.75] if len(w) == 2 else w for w in table.column("mix_weights").to_pylist()],
                       pa.list_(pa.float32()))
    changed = [table.set_column(table.schema.get_field_index("seed"), "seed", pa.array(np.arange(29), pa.int64())),
               table.set_column(table.schema.get_field_index("mix_weights"), "mix_weights", weights),
               table.slice(0, 28)]
    prints = {open_plan(_write(t, tmp_path / f"x{i}.parquet"), StorageConfig()).fingerprint
              for i, t in enumerate(changed)}
    assert len(prints) == 3 and a.fingerprint not in prints


def test_the_earlier_whole_table_hash_is_still_computed_for_runs_that_recorded_it(tmp_path):
    """Runs before the streamed plan recorded ``table_fingerprint`` of the plan as read (its columns
    selected and cast, in the file's order): the function that checks such a run computes exactly that."""
    table = _plan().take(np.random.default_rng(2).permutation(29))
    path = _write(table.replace_schema_metadata({"made": "by hand"}), tmp_path / "p.parquet")
    as_read = pq.read_table(path).select(list(plan_source.PLAN_TYPES)).cast(pa.schema(plan_source.PLAN_TYPES))
    assert plan_source.legacy_fingerprint(path, StorageConfig()) == shards.table_fingerprint(as_read)


def test_a_streamed_plan_is_never_read_whole_on_the_driver(tmp_path, monkeypatch):
    path = _write(_plan(), tmp_path / "p.parquet", row_group_size=8)

    def whole(*args, **kwargs):
        raise AssertionError("the whole plan was read")

    monkeypatch.setattr(storage, "read_parquet", whole)
    monkeypatch.setattr(pq, "read_table", whole)
    plan = open_plan(path, StorageConfig())
    assert isinstance(plan, StreamedPlan) and sum(t.num_rows for t in plan.shard_tables(5)) == 29


def test_bad_plans_are_refused_by_name(tmp_path):
    table = _plan()
    cases = {
        "repeats row_id": table.set_column(0, "row_id", pa.array(np.arange(29) // 2)),  # sorted, repeated
        "repeats row_id values": table.set_column(0, "row_id", pa.array(np.arange(29)[::-1] % 20)),  # unsorted
        r"has missing values \{'negative_id': 1\}": table.set_column(
            table.schema.get_field_index("negative_id"), "negative_id", pa.array([None] + [-1] * 28, pa.int64())),
        "has no rows": table.slice(0, 0),
        "wrong type": table.set_column(1, "identity_id", pa.array(["x"] * 29)),
    }
    for i, (message, bad) in enumerate(cases.items()):
        with pytest.raises(ValueError, match=message):
            open_plan(_write(bad, tmp_path / f"bad{i}.parquet"), StorageConfig())
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="input.plan: .*text.parquet is not a Parquet file.*synthface plan"):
        open_plan(str(tmp_path / "text.parquet"), StorageConfig())


def test_a_plan_changed_after_the_job_started_is_refused_by_the_read(tmp_path):
    path = _write(_plan(), tmp_path / "p.parquet")
    plan = open_plan(path, StorageConfig())
    _write(_plan(8), tmp_path / "p.parquet")
    with pytest.raises(RuntimeError, match="changed after the job started.*another output.name"):
        plan_source.read_shard(plan.file, 0, 4)


def test_plans_are_written_in_small_row_groups(tmp_path):
    """`synthface plan` writes row groups of PLAN_ROW_GROUP rows, so a shard's read decodes one or
    two of them, not the whole plan."""
    from synthface_ray import cli

    ids = tmp_path / "ids.parquet"
    assert cli.main(["identities", "--out", str(ids), "--set", "source.count=100", "--set", "filter.tau=null"]) == 0
    out = tmp_path / "plan.parquet"
    assert cli.main(["plan", "--identities", str(ids), "--out", str(out), "--set", "input.mining=null",
                     "--set", "plan.images_per_identity=200"]) == 0
    meta = pq.ParquetFile(out).metadata
    assert meta.num_rows == 20_000
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [8192, 8192, 3616]
