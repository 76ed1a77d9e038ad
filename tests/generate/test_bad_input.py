"""``synthface generate`` refuses bad input before Ray starts, with a message naming the fix,
and writes nothing (or, for an existing run, touches nothing)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gen_helpers import gen_config

from synthface_ray import cli, config, storage
from synthface_ray.generate import pipeline


def _argv(cfg, tmp_path, *extra):
    path = tmp_path / "job.yaml"
    path.write_text(config.dump_yaml(cfg))
    return ["generate", "--config", str(path), *extra]


def _fails(argv, capsys, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_plan_missing_columns(gen_inputs, tmp_path, capsys):
    pq.write_table(pq.read_table(gen_inputs["plan"]).drop(["seed", "negative_id"]), tmp_path / "bad.parquet")
    cfg = gen_config(gen_inputs, tmp_path / "out", **{"input.plan": str(tmp_path / "bad.parquet")})
    _fails(_argv(cfg, tmp_path), capsys, r"lacks column\(s\) \['negative_id', 'seed'\].*synthface plan")
    assert not (tmp_path / "out").exists()


def test_plan_with_duplicate_row_ids(gen_inputs, tmp_path, capsys):
    plan = pq.read_table(gen_inputs["plan"])
    halved = pa.array(plan.column("row_id").to_numpy() // 2)
    pq.write_table(plan.set_column(0, "row_id", halved), tmp_path / "dup.parquet")
    cfg = gen_config(gen_inputs, tmp_path / "out", **{"input.plan": str(tmp_path / "dup.parquet")})
    _fails(_argv(cfg, tmp_path), capsys, "repeats row_id")


@pytest.mark.parametrize("key,message", [("model.generator", "model.generator: model folder .* not found"),
                                         ("model.fr", "model.fr: model folder .* not found")])
def test_model_path_not_found(gen_inputs, tmp_path, capsys, key, message):
    cfg = gen_config(gen_inputs, tmp_path / "out", **{key: str(tmp_path / "nope")})
    _fails(_argv(cfg, tmp_path), capsys, message)
    assert not (tmp_path / "out").exists()


def test_identities_outside_a_class_generator_are_refused(gen_inputs, tmp_path, capsys):
    from synthface_ray.data.identities import identities_table
    from synthface_ray.mining.plan import plan_rows

    pq.write_table(plan_rows([3, 42], 1), tmp_path / "p.parquet")
    emb = np.eye(16, dtype=np.float32)[:2]
    pq.write_table(identities_table(np.array([3, 42]), emb, "random"), tmp_path / "i.parquet")
    cfg = gen_config(gen_inputs, tmp_path / "out", **{"input.plan": str(tmp_path / "p.parquet"),
                                                       "input.identities": str(tmp_path / "i.parquet")})
    _fails(_argv(cfg, tmp_path), capsys, r"\[42\] are outside the class-conditioned generator's table \(0..9\)")


def test_output_of_another_job_is_refused_unless_overwrite(gen_inputs, tmp_path, capsys):
    first = gen_config(gen_inputs, tmp_path / "out")
    pipeline.open_output(pipeline.prepare(first))  # claims the folder (job.json), as a run does
    job_file = tmp_path / "out" / "run" / "job.json"
    before = job_file.read_bytes()
    other = gen_config(gen_inputs, tmp_path / "out")
    other.sampler = dataclasses.replace(other.sampler, steps=4)  # a typed SamplerConfig (issue 23)
    _fails(_argv(other, tmp_path), capsys, r"different settings \(sampler\).*new output.name.*overwrite")
    assert job_file.read_bytes() == before
    job = pipeline.prepare(other)
    job.cfg.output.overwrite = True
    pipeline.open_output(job)
    assert storage.read_json(storage.resolve(str(job_file)))["content"]["sampler"]["steps"] == 4


def test_s3_unreachable(gen_inputs, tmp_path, capsys):
    cfg = gen_config(gen_inputs, "s3://bucket/gen", **{"storage.endpoint_url": "http://127.0.0.1:9"})
    _fails(_argv(cfg, tmp_path), capsys, r"cannot write to s3://bucket/gen/run: .*endpoint_url is reachable")


def test_s3_wrong_credentials(gen_inputs, s3, tmp_path, capsys, monkeypatch):
    from moto import settings

    store, bucket = s3
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto now checks credentials
    cfg = gen_config(gen_inputs, f"{bucket}/gen", **{"storage.endpoint_url": store.endpoint_url})
    _fails(_argv(cfg, tmp_path), capsys, r"cannot write to s3://.*(InvalidAccessKeyId|ACCESS_DENIED|403).*credentials")


def test_pools_that_starve_the_encode_tasks_are_refused():
    from synthface_ray.generate.config import Config

    cfg = config.load(Config, None, ["pool.actors=2", "pool.cpus_per_actor=1", "pool.stages=staged"])
    with pytest.raises(config.ConfigError, match="claim 2 CPUs.*lower pool.actors"):
        pipeline.check_resources(cfg, False, {"CPU": 2.0}, single_node=True)
    pipeline.check_resources(cfg, False, {"CPU": 2.0}, single_node=False)  # a cluster may add nodes
    fused = config.load(Config, None, ["pool.actors=2", "pool.cpus_per_actor=1"])  # auto: fused on CPU
    pipeline.check_resources(fused, False, {"CPU": 2.0}, single_node=True)  # no other stage to starve
    fused.pool.actors = 3
    with pytest.raises(config.ConfigError, match="actors claim 3 CPUs.*of the cluster's 2"):
        pipeline.check_resources(fused, False, {"CPU": 2.0}, single_node=True)
    with pytest.raises(config.ConfigError, match="no GPU"):
        pipeline.check_resources(config.load(Config, None, ["pool.device=cuda"]), True, {"CPU": 2.0}, True)


def test_stages_auto_fuses_cpu_pools_and_stages_gpu_pools_and_unknown_modes_are_refused():
    from synthface_ray.generate.config import Config

    auto = config.load(Config, None, []).pool
    assert auto.stages == "auto" and auto.fused(use_gpu=False) and not auto.fused(use_gpu=True)
    for mode, expected in (("fused", True), ("staged", False)):
        pool = config.load(Config, None, [f"pool.stages={mode}"]).pool
        assert pool.fused(False) is expected and pool.fused(True) is expected
    with pytest.raises(config.ConfigError, match="pool.stages.*pipelined.*auto.*fused.*staged"):
        config.load(Config, None, ["pool.stages=pipelined"])


def test_layout_line_names_the_pool_of_each_mode():
    from synthface_ray.generate.config import Config

    cfg = config.load(Config, None, ["pool.actors=2", "model.fr=fr"])
    assert pipeline.layout(cfg, use_gpu=False) == ("pool: 2 generator actor(s) of 0.5 CPU, 1 thread(s), fused "
                                                   "(each samples, FR-scores, encodes and commits)")
    assert pipeline.layout(cfg, use_gpu=True) == ("pool: 2 generator actor(s) of 1 GPU, staged (1 FR scoring "
                                                  "actor(s), encode tasks of 0.5 CPU)")
    cfg.model.fr, cfg.pool.min_actors = None, 1
    assert pipeline.layout(cfg, use_gpu=True).startswith("pool: 1..2 generator actor(s)")
    assert "FR" not in pipeline.layout(cfg, use_gpu=True) + pipeline.layout(cfg, use_gpu=False)


def test_unknown_sampler_key_is_refused_on_load(tmp_path, capsys):
    path = tmp_path / "g.yaml"
    path.write_text("sampler: {recipe: cfg, stepz: 3}\n")
    _fails(["generate", "--config", str(path)], capsys, "stepz")


def test_a_gate_without_an_fr_model_is_refused_before_anything_is_written(gen_inputs, tmp_path, capsys):
    cfg = gen_config(gen_inputs, tmp_path / "out", **{"gate.min_fr_cosine": 0.3})
    cfg.model.fr = None
    _fails(_argv(cfg, tmp_path), capsys, r"gate.min_fr_cosine / min_mix_cosine / max_other_cosine judge each "
                                         r"image with the FR model: set model.fr")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key,value,message", [("gate.min_fr_cosine", 2, r"gate.min_fr_cosine=2.0 is out of range"),
                                               ("gate.attempts", 0, r"gate.attempts=0 is out of range")])
def test_gate_settings_out_of_range_are_refused_on_load(tmp_path, capsys, key, value, message):
    path = tmp_path / "g.yaml"
    path.write_text("sampler: {recipe: cfg}\n")
    _fails(["generate", "--config", str(path), "--set", f"{key}={value}"], capsys, message)


def test_layout_line_describes_the_gate():
    from synthface_ray.generate.config import Config

    cfg = config.load(Config, None, ["model.fr=fr", "gate.min_fr_cosine=0.4", "gate.max_other_cosine=0.5"])
    assert pipeline.layout(cfg, use_gpu=False).endswith(
        "; consistency gate: fr_cosine >= 0.4 (single-identity rows) and cosine to any other identity <= 0.5, "
        "up to 4 draw(s) per row, "
        "drop rows that never pass")
    assert "FR scoring" not in pipeline.layout(cfg, use_gpu=True)  # the generator actors score


def test_identities_of_the_wrong_width_for_the_generator_or_the_fr_model_are_refused(gen_inputs, tmp_path, capsys):
    from gen_helpers import save_generator

    from synthface_ray.data.identities import identities_table

    emb = np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pq.write_table(identities_table(np.arange(10), emb, "random"), tmp_path / "i8.parquet")
    embedding_gen = save_generator(tmp_path / "g", condition="embedding")  # takes 16-d embeddings
    cfg = gen_config(gen_inputs, tmp_path / "out", **{"input.identities": str(tmp_path / "i8.parquet"),
                                                      "model.generator": embedding_gen})
    _fails(_argv(cfg, tmp_path), capsys, r"identities are 8-d but the generator takes 16-d embeddings")
    cfg.model.generator = gen_inputs["generator"]  # class-conditioned: the FR model (16-d) still refuses them
    _fails(_argv(cfg, tmp_path), capsys, r"model.fr embeds to 16-d but input.identities are 8-d")
    assert not (tmp_path / "out").exists()


def _bad_identities(path, problem: str) -> str:
    """The demo-sized identities table (10 x 16-d) with one problem written in by hand."""
    ids = np.arange(10)
    emb = np.random.default_rng(0).standard_normal((10, 16)).astype(np.float32)
    if problem == "nan":
        emb[3, 5] = np.nan
    elif problem == "zero":
        emb[[4, 7]] = 0.0
    elif problem == "duplicate":
        ids[6] = 2
    elif problem == "not-parquet":
        path.write_text("identity_id,embedding\n1,0.5\n")
        return str(path)
    flat = pa.array(emb.reshape(-1), pa.float32())
    pq.write_table(pa.table({"identity_id": pa.array(ids, pa.int64()),
                             "embedding": pa.FixedSizeListArray.from_arrays(flat, 16),
                             "origin": pa.array(["random"] * 10)}), path)
    return str(path)


@pytest.mark.parametrize("problem,message", [
    ("nan", r"i.parquet: identity_id 3 has NaN or inf values \(1 of 10 rows\)"),
    ("zero", r"i.parquet: identity_id 4 has an all-zero embedding \(2 of 10 rows\)"),
    ("duplicate", r"i.parquet: identity_id 2 appears 2 times \(1 repeated id\(s\)\)"),
    ("not-parquet", r"i.parquet is not a Parquet identities table .*synthface identities"),
])
def test_unusable_identities_are_refused_by_generate_and_plan(gen_inputs, tmp_path, capsys, problem, message):
    """One validation of identities tables serves every reader (issue 21, item 3): generate used
    to sample NaN contexts into a 'complete' dataset, plan to count a repeated id twice."""
    ids = _bad_identities(tmp_path / "i.parquet", problem)
    cfg = gen_config(gen_inputs, tmp_path / "out", **{"input.identities": ids})
    _fails(_argv(cfg, tmp_path), capsys, message)
    assert not (tmp_path / "out").exists()
    assert cli.main(["plan", "--identities", ids, "--out", str(tmp_path / "plan.parquet")]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (tmp_path / "plan.parquet").exists()
