"""Shard-level idempotent commits: fixed shards, atomic publish + receipt, job identity."""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthface_ray import storage
from synthface_ray.generate import shards
from synthface_ray.mining.plan import plan_rows


def _plan(n=10):
    return plan_rows(np.arange(n), 1, seed=1)


def test_shards_are_fixed_by_row_id_order_not_by_the_files_row_order():
    plan = _plan(10)
    shuffled = plan.take(np.random.default_rng(0).permutation(10))
    a, b = shards.assign_shards(plan, 4), shards.assign_shards(shuffled, 4)
    assert a.equals(b)
    parts = shards.split_shards(a)
    assert [p.num_rows for p in parts] == [4, 4, 2]
    assert [p.column("row_id").to_pylist() for p in shards.split_shards(a, {0, 2})] == [[0, 1, 2, 3], [8, 9]]


def test_table_fingerprint_depends_on_content_only():
    plan = _plan(6)
    rechunked = pa.concat_tables([plan.slice(0, 2), plan.slice(2)])
    assert shards.table_fingerprint(plan) == shards.table_fingerprint(rechunked)
    other = plan.set_column(plan.column_names.index("seed"), "seed", pa.array(np.arange(6), pa.int64()))
    assert shards.table_fingerprint(plan) != shards.table_fingerprint(other)


def test_commit_publishes_the_shard_and_a_receipt_that_matches_it(tmp_path):
    loc = storage.resolve(str(tmp_path))
    table = shards.assign_shards(_plan(5), 5)
    rec = shards.commit_shard(loc, 3, table, actor="a1")
    data = (tmp_path / "part-00003.parquet").read_bytes()
    assert rec["sha256"] == hashlib.sha256(data).hexdigest() and rec["bytes"] == len(data)
    assert (rec["rows"], rec["first_row_id"], rec["last_row_id"], rec["actor"]) == (5, 0, 4, "a1")
    assert shards.committed(loc) == {3}
    assert pq.read_table(io.BytesIO(data)).equals(table)
    os.remove(tmp_path / "receipts" / "part-00003.json")  # died between the two writes
    rebuilt = shards.read_receipt(loc, 3)
    assert {k: rebuilt[k] for k in ("sha256", "rows", "first_row_id")} == {k: rec[k] for k in ("sha256", "rows", "first_row_id")}
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp files left


def test_shard_numbers_past_99999_get_six_digits_and_are_found_again(tmp_path):
    # 100,000 shards = 25.6M rows at the default 256 rows per file: a million-image cluster run
    # with small shards gets there, and a resume must still see every committed shard
    loc = storage.resolve(str(tmp_path))
    table = shards.assign_shards(_plan(2), 2)
    for k in (0, 99_999, 100_000, 1_234_567):
        shards.commit_shard(loc, k, table)
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith(".parquet"))[-1] == "part-99999.parquet"
    assert shards.committed(loc) == {0, 99_999, 100_000, 1_234_567}
    assert shards.read_receipt(loc, 100_000)["path"] == "part-100000.parquet"
    (tmp_path / "part-7.parquet").write_bytes(b"")  # not ours: too few digits
    assert shards.committed(loc) == {0, 99_999, 100_000, 1_234_567}


def test_commit_to_s3(s3):
    store, bucket = s3
    loc = storage.resolve(f"{bucket}/gen", store)
    rec = shards.commit_shard(loc, 0, shards.assign_shards(_plan(3), 3))
    assert shards.committed(loc) == {0}
    assert hashlib.sha256(storage.read_bytes(loc.join("part-00000.parquet"))).hexdigest() == rec["sha256"]


def _job(**content):
    content = {"plan": "p", "sampler": {"steps": 3}, **content}
    return {"fingerprint": shards.fingerprint(content), "content": content}


def test_job_file_resumes_the_same_job_and_refuses_another_naming_what_differs(tmp_path):
    loc = storage.resolve(str(tmp_path / "run"))
    assert shards.check_job(loc, _job(), overwrite=False) is False  # a new run
    shards.commit_shard(loc, 0, shards.assign_shards(_plan(2), 2))
    assert shards.check_job(loc, _job(), overwrite=False) is True  # resume: the shard stays
    assert shards.committed(loc) == {0}
    with pytest.raises(shards.JobMismatchError, match=r"different settings \(sampler\).*output.overwrite"):
        shards.check_job(loc, _job(sampler={"steps": 4}), overwrite=False)
    assert shards.committed(loc) == {0}  # refused: nothing touched
    assert shards.check_job(loc, _job(sampler={"steps": 4}), overwrite=True) is False
    assert shards.committed(loc) == set() and storage.read_json(loc.join("job.json"))["content"]["sampler"] == {"steps": 4}


def test_a_folder_that_is_not_a_generation_run_is_never_emptied_without_overwrite(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "precious.parquet").write_bytes(b"x")
    loc = storage.resolve(str(tmp_path / "run"))
    with pytest.raises(FileExistsError, match="not a generation run"):
        shards.check_job(loc, _job(), overwrite=False)
    assert (tmp_path / "run" / "precious.parquet").exists()


def test_grid_rows_show_identities_then_mixes_beside_their_sources():
    from synthface_ray.generate.grid import grid_rows

    plan = plan_rows([0, 1, 2], 3, mixes=[(9, [0, 2], [0.5, 0.5])], images_per_mix=2)
    rows, where = grid_rows(lambda: [plan], identities=2, images=2, mixes=1)
    assert rows == [([], [0, 1]), ([], [3, 4]), ([0, 6], [9, 10])]  # sources: first plain row of 0 and 2
    assert where == {r: r for r in (0, 1, 3, 4, 6, 9, 10)}  # positions in row_id order
    # streamed in batches of 2 rows (a source's first row found by the second pass): the same grid
    batches = lambda: (plan.slice(k, 2) for k in range(0, plan.num_rows, 2))  # noqa: E731
    assert grid_rows(batches, identities=2, images=2, mixes=1) == (rows, where)
    assert grid_rows(batches, identities=5, images=1, mixes=0)[0] == [([], [0]), ([], [3]), ([], [6])]


def test_summary_projects_accelerator_hours_per_million_from_the_per_actor_rate():
    from synthface_ray.generate.pipeline import Summary

    s = Summary(images=100, wall_s=20.0, busy_s=50.0, total=100, shards=4, accelerators=0.5, accelerator="GPU")
    assert s.images_per_s == 5.0 and s.actor_images_per_s == 2.0
    assert s.hours_per_million == pytest.approx(1e6 / 2.0 / 3600 * 0.5)
    assert "69.4 GPU-hours per million" in " ".join(s.lines())
