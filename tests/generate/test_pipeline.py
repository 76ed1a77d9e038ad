"""The generation job on a real local Ray: end to end to a folder and to S3 (moto on loopback),
resume after an actor raises, an actor SIGKILLed mid-run, the driver SIGKILLed mid-run; exact
counts, no duplicate row ids, re-generated shards byte-identical to an uninterrupted run, and a
manifest that matches the files."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from gen_helpers import gen_config

from synthface_ray import config, storage
from synthface_ray.commands import generate
from synthface_ray.data.faces import open_faces

pytestmark = pytest.mark.slow


def _files(folder) -> dict[str, bytes]:
    return {p: (folder / p).read_bytes() for p in sorted(os.listdir(folder)) if p.endswith(".parquet")}


def _check_dataset(uri, plan_path, store=None) -> dict:
    """Exactly the planned rows, no duplicates, a manifest listing every file with its checksum."""
    loc = storage.resolve(uri, store)
    manifest = storage.read_json(loc.join("manifest.json"))
    table = open_faces(uri, store).to_table()
    plan = pq.read_table(plan_path)
    assert sorted(table.column("row_id").to_pylist()) == sorted(plan.column("row_id").to_pylist())
    assert manifest["rows"] == table.num_rows == plan.num_rows
    for f in manifest["files"]:
        data = storage.read_bytes(loc.join(f["path"]))
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
    assert sorted(p.rsplit("/", 1)[-1] for p in storage.list_files(loc, ".parquet")) == \
        [f["path"] for f in manifest["files"]]
    return manifest


@pytest.fixture(scope="module")
def reference(ray_local, gen_inputs, tmp_path_factory):
    """One uninterrupted run: the bytes every interrupted run must reproduce."""
    out = tmp_path_factory.mktemp("ref")
    assert generate.run(gen_config(gen_inputs, out, "ref")) == 0
    return out / "ref"


def test_end_to_end_writes_exactly_the_plan_with_scores_grid_and_manifest(reference, gen_inputs, capsys):
    manifest = _check_dataset(str(reference), gen_inputs["plan"])
    assert [f["rows"] for f in manifest["files"]] == [12, 12, 12, 8]
    assert manifest["kind"] == "generated" and manifest["counts"]["planned"] == 44
    table = open_faces(str(reference)).to_table()
    cos = table.column("fr_cosine").to_numpy()
    assert table.column("fr_cosine").null_count == 0 and (abs(cos) <= 1 + 1e-6).all()
    assert set(table.column("source").to_pylist()) == {1}
    assert (reference / "grid.png").stat().st_size > 0
    from synthface_ray import config

    saved = config.load(type(gen_config(gen_inputs, reference.parent, "ref")), str(reference / "config.yaml"))
    assert config.to_dict(saved) == config.to_dict(gen_config(gen_inputs, reference.parent, "ref"))
    before = _files(reference)
    assert generate.run(gen_config(gen_inputs, reference.parent, "ref")) == 0  # complete: nothing to do
    assert "nothing to do" in capsys.readouterr().out
    assert _files(reference) == before


def test_staged_pools_write_the_same_bytes_as_the_fused_reference(reference, gen_inputs, tmp_path, capsys):
    """``pool.stages: staged`` (FR scoring actor + encode tasks, the GPU layout) against the
    reference run, which is fused (the CPU default): the same files, byte for byte."""
    assert gen_config(gen_inputs, tmp_path, "ref").pool.fused(use_gpu=False)
    assert generate.run(gen_config(gen_inputs, tmp_path, "ref", **{"pool.stages": "staged"})) == 0
    assert "pool: 1 generator actor(s) of 0.25 CPU, 1 thread(s), staged (1 FR scoring actor(s)" in capsys.readouterr().out
    _check_dataset(str(tmp_path / "ref"), gen_inputs["plan"])
    assert _files(tmp_path / "ref") == _files(reference)
    assert open_faces(str(tmp_path / "ref")).to_table().column("fr_cosine").null_count == 0


def test_a_plan_file_in_another_row_order_is_held_and_writes_the_same_bytes(reference, gen_inputs, tmp_path, capsys):
    """The reference's plan is streamed from its file (in row_id order); the same rows shuffled are
    sorted and held on the driver: the same shards, byte for byte, and the same job fingerprint."""
    import numpy as np

    from synthface_ray.generate import pipeline
    from synthface_ray.generate.plan_source import HeldPlan, StreamedPlan

    plan = pq.read_table(gen_inputs["plan"])
    pq.write_table(plan.take(np.random.default_rng(0).permutation(plan.num_rows)), tmp_path / "shuffled.parquet")
    cfg = gen_config(gen_inputs, tmp_path, "ref", **{"input.plan": str(tmp_path / "shuffled.parquet")})
    held, streamed = pipeline.prepare(cfg), pipeline.prepare(gen_config(gen_inputs, tmp_path, "ref"))
    assert isinstance(held.plan, HeldPlan) and isinstance(streamed.plan, StreamedPlan)
    assert held.fingerprint == streamed.fingerprint
    assert generate.run(cfg) == 0
    _check_dataset(str(tmp_path / "ref"), gen_inputs["plan"])
    assert _files(tmp_path / "ref") == _files(reference)


def test_a_streamed_plans_dataset_is_one_block_per_shard_read_from_the_file(ray_local, gen_inputs, tmp_path):
    from synthface_ray.generate import pipeline

    job = pipeline.prepare(gen_config(gen_inputs, tmp_path, "blocks"))
    for todo in ([0, 1, 2, 3], [1, 3]):
        blocks = list(job.plan.dataset(12, todo, driver_node_only=False).iter_batches(batch_size=None,
                                                                                     batch_format="pyarrow"))
        expected = list(job.plan.shard_tables(12, set(todo)))
        assert [b.num_rows for b in blocks] == [t.num_rows for t in expected]
        assert all(b.equals(t) for b, t in zip(blocks, expected, strict=True))


def test_a_run_recorded_with_the_earlier_plan_hash_resumes_instead_of_being_refused(reference, gen_inputs, tmp_path,
                                                                                    capsys):
    """Runs before plans were streamed recorded the whole table's hash in job.json: such a run,
    complete or interrupted, is resumed as that run (not refused as 'different settings'), keeping
    its fingerprint, and completes byte-identical."""
    import json
    import shutil

    from synthface_ray.generate import plan_source, shards

    folder = tmp_path / "ref"
    shutil.copytree(reference, folder)
    record = json.loads((folder / "job.json").read_text())
    record["content"]["plan"] = plan_source.legacy_fingerprint(gen_inputs["plan"], storage.StorageConfig())
    record["fingerprint"] = shards.fingerprint(record["content"])
    (folder / "job.json").write_text(json.dumps(record))
    assert generate.run(gen_config(gen_inputs, tmp_path, "ref")) == 0
    assert "nothing to do" in capsys.readouterr().out
    for name in ("manifest.json", "part-00003.parquet", "receipts/part-00003.json"):
        (folder / name).unlink()
    assert generate.run(gen_config(gen_inputs, tmp_path, "ref")) == 0
    assert "resuming" in capsys.readouterr().out
    assert _files(folder) == _files(reference)
    assert json.loads((folder / "job.json").read_text())["fingerprint"] == record["fingerprint"]
    assert _check_dataset(str(folder), gen_inputs["plan"])["job_fingerprint"] == record["fingerprint"]
    other = gen_config(gen_inputs, tmp_path, "ref", **{"output.rows_per_file": 11})
    with pytest.raises(shards.JobMismatchError, match="different settings"):
        generate.run(other)  # still refused when its settings differ


@pytest.mark.parametrize("stages", ["fused", "staged"])
def test_gpu_pools_take_one_shard_per_batch_in_plan_order(ray_local, gen_inputs, tmp_path, stages):
    """Ray Data refuses whole-block batches (``batch_size=None``) for actors that claim GPUs, so
    every GPU run failed at once: a GPU pipeline is built (not run: no GPU here; the bytes of a run
    on logical GPUs matched the CPU run's, checked with ``benchmarks/gpu.py --dry --ray-gpus 1``)
    with batches of one shard's rows, in plan order so the short last shard comes last."""
    from synthface_ray.generate import pipeline

    job = pipeline.prepare(gen_config(gen_inputs, tmp_path, stages, **{"pool.stages": stages}))
    pipeline.open_output(job)
    ds = pipeline.build_dataset(job, use_gpu=True)
    assert ds.context.execution_options.preserve_order
    gpu_stages = {"fused": [12], "staged": [None, 12, 12]}[stages]  # encode tasks (CPU) keep whole blocks
    assert _batch_sizes(ds) == gpu_stages
    cpu = pipeline.build_dataset(job, use_gpu=False)
    assert _batch_sizes(cpu) == [None] * len(gpu_stages)
    assert not cpu.context.execution_options.preserve_order  # CPU pools keep Ray's default


def _batch_sizes(ds) -> list:
    """``batch_size`` of each map_batches stage, last stage first."""
    from ray.data._internal.logical.operators.map_operator import MapBatches

    sizes, ops = [], [ds._logical_plan.dag]
    while ops:
        op = ops.pop()
        if isinstance(op, MapBatches):
            sizes.append(op.batch_size)
        ops.extend(op.input_dependencies)
    return sizes


def test_end_to_end_to_s3(ray_local, gen_inputs, s3):
    store, bucket = s3
    cfg = gen_config(gen_inputs, f"{bucket}/generated", "s3run", **{"storage.endpoint_url": store.endpoint_url})
    cfg.model.fr = None
    cfg.input.identities = None
    assert generate.run(cfg) == 0
    _check_dataset(f"{bucket}/generated/s3run", gen_inputs["plan"], store)
    table = open_faces(f"{bucket}/generated/s3run", store).to_table()
    assert table.column("fr_cosine").null_count == table.num_rows  # no FR model: null scores


def test_actor_that_raises_then_rerun_completes_exactly_once_byte_identical(reference, gen_inputs, tmp_path,
                                                                            capsys):
    failing = gen_config(gen_inputs, tmp_path, "ref", **{"fault.after_shards": 2})
    with pytest.raises(Exception, match="injected failure"):
        generate.run(failing)
    done = [p for p in os.listdir(tmp_path / "ref") if p.endswith(".parquet")]
    assert 2 <= len(done) < 4 and not (tmp_path / "ref" / "manifest.json").exists()
    # fault settings and the layout are not the job's identity: the fused run resumes staged
    capsys.readouterr()
    assert generate.run(gen_config(gen_inputs, tmp_path, "ref", **{"pool.stages": "staged"})) == 0
    assert "resuming" in capsys.readouterr().out
    _check_dataset(str(tmp_path / "ref"), gen_inputs["plan"])
    assert _files(tmp_path / "ref") == _files(reference)


def test_actor_killed_mid_run_is_replaced_and_the_run_completes(reference, gen_inputs, tmp_path):
    marker = tmp_path / "fired"
    cfg = gen_config(gen_inputs, tmp_path, "ref", **{"fault.after_shards": 1, "fault.mode": "kill",
                                                     "fault.marker": str(marker)})
    assert generate.run(cfg) == 0
    assert marker.exists()  # the actor did SIGKILL itself
    _check_dataset(str(tmp_path / "ref"), gen_inputs["plan"])
    assert _files(tmp_path / "ref") == _files(reference)


def _kill_driver_once_shards_exist(ray_local, cfg, tmp_path, folder):
    """Run ``cfg`` as a `synthface generate` subprocess on the session's Ray; SIGKILL the driver
    as soon as ``folder`` holds a committed shard. Returns the config file it ran."""
    cfg.grid.enabled = False
    path = tmp_path / "job.yaml"
    path.write_text(config.dump_yaml(cfg))
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    proc = subprocess.Popen([sys.executable, "-m", "synthface_ray.cli", "generate", "--config", str(path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if folder.exists() and any(p.endswith(".parquet") for p in os.listdir(folder)):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the driver finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return path


def test_driver_killed_with_sigkill_then_rerun_completes(ray_local, reference, gen_inputs, tmp_path):
    cfg = gen_config(gen_inputs, tmp_path, "ref")
    path = _kill_driver_once_shards_exist(ray_local, cfg, tmp_path, tmp_path / "ref")
    assert not (tmp_path / "ref" / "manifest.json").exists()
    assert generate.run(config.load(type(cfg), str(path))) == 0
    _check_dataset(str(tmp_path / "ref"), gen_inputs["plan"])
    assert _files(tmp_path / "ref") == _files(reference)


# A driver SIGKILLed while output.overwrite replaces a complete dataset (the old one stays whole and
# byte-identical, the re-run resumes the replacement and swaps it in, no replacement folder left):
# tests/generate/test_kill_trials.py runs exactly that through benchmarks/kill_trials.py.


@pytest.fixture(scope="module")
def gated(reference, gen_inputs, tmp_path_factory):
    """An uninterrupted run through the consistency gate (threshold: the reference's median
    fr_cosine, 2 draws, failing rows dropped): its config, folder and threshold."""
    import numpy as np

    threshold = float(np.median(open_faces(str(reference)).to_table().column("fr_cosine").to_numpy()))
    sets = {"gate.min_fr_cosine": threshold, "gate.min_mix_cosine": threshold, "gate.attempts": 2}
    out = tmp_path_factory.mktemp("gated")
    assert generate.run(gen_config(gen_inputs, out, "gated", **sets)) == 0
    return sets, out / "gated", threshold


def test_gated_run_writes_only_passing_rows_and_counts_what_the_gate_did(gated, gen_inputs, capsys):
    sets, folder, threshold = gated
    table = open_faces(str(folder)).to_table()
    manifest = storage.read_json(storage.resolve(str(folder)).join("manifest.json"))
    counts = manifest["counts"]["gate"]
    assert manifest["rows"] == table.num_rows == counts["written"] < 44
    assert counts["planned"] == 44 and counts["dropped"] == 44 - table.num_rows and counts["kept_failing"] == 0
    assert counts["passed_after_redraw"] > 0  # some rows passed at their second draw
    assert (table.column("fr_cosine").to_numpy() >= threshold).all() and all(table.column("gate_passed").to_pylist())
    assert sorted(set(table.column("attempts").to_pylist())) == [1, 2]
    assert len(set(table.column("row_id").to_pylist())) == table.num_rows
    assert generate.run(gen_config(gen_inputs, folder.parent, "gated", **sets)) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_gated_run_interrupted_then_resumed_is_byte_identical(gated, gen_inputs, tmp_path, capsys):
    sets, folder, _ = gated
    with pytest.raises(Exception, match="injected failure"):
        generate.run(gen_config(gen_inputs, tmp_path, "gated", **sets, **{"fault.after_shards": 2}))
    assert not (tmp_path / "gated" / "manifest.json").exists()
    assert generate.run(gen_config(gen_inputs, tmp_path, "gated", **sets, **{"pool.stages": "staged"})) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "consistency gate: fr_cosine >=" in out and "dropped" in out
    assert _files(tmp_path / "gated") == _files(folder)
