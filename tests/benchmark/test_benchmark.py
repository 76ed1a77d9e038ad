"""``synthface benchmark`` end to end on a local Ray (real Tune trials, real Ray Train FR jobs):
a killed driver resumes without re-training finished trials and the report's numbers are the
trials' own; results on S3 (moto server); bad input refused before any training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from synthface_ray import cli, config, storage
from synthface_ray.benchmark import plan
from synthface_ray.benchmark.trial import trial_folder
from synthface_ray.data.faces import write_faces
from synthface_ray.data.toyfaces import ToyFacesConfig, toyfaces_table


def _results(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.glob("trials/*/*/result.json"))}


@pytest.mark.slow
def test_a_killed_benchmark_resumes_without_retraining_and_reports_its_trials(ray_local, bench, tmp_path, capsys):
    cfg = bench()
    path = tmp_path / "bench.yaml"
    path.write_text(config.dump_yaml(cfg))
    folder = tmp_path / "bench" / "tiny"
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    proc = subprocess.Popen([sys.executable, "-m", "synthface_ray.cli", "benchmark", "--config", str(path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list(folder.glob("trials/real/*/result.json")):
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    before = _results(folder)
    assert len(before) == 3, f"the driver must die with random_init x 2 and real seed 0 done: {list(before)}"
    assert not (folder / "report.md").exists()

    assert cli.main(["benchmark", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "3 of 4 trials already finished (reused); running 1" in out
    after = _results(folder)
    assert len(after) == 4 and all(after[k] == v for k, v in before.items())  # not re-trained
    rows = pq.read_table(folder / "results.parquet").to_pylist()
    assert len(rows) == 4
    for row in rows:  # the report's numbers are the trials' own
        result = json.loads((Path(row["folder"]) / "result.json").read_text())
        assert row["accuracy"] == result["test"]["unseen"]["accuracy"]
        assert row["eer"] == result["test"]["unseen"]["eer"] and row["seed"] == result["seed"]
        assert row["train_images"] == (24 if row["arm"] == "real" else 0)
    text = (folder / "report.md").read_text()
    for row in rows:
        assert f"| unseen | {row['arm']} | {row['seed']} | {row['accuracy']:.4f} ±" in text
    assert (folder / "plots" / "accuracy_unseen.png").exists() and (folder / "summary.csv").exists()
    real = [r for r in rows if r["arm"] == "real"]
    assert all(r["train_steps"] == 4 for r in real)
    assert (Path(real[0]["folder"]) / "data" / "source0" / "manifest.json").exists()  # the 24-image budget

    assert cli.main(["benchmark", "--config", str(path)]) == 0  # everything reused: no Tune run
    assert "4 of 4 trials already finished (reused); running 0" in capsys.readouterr().out


@pytest.mark.slow
def test_a_benchmark_on_s3_reads_and_writes_through_the_endpoint(ray_local, bench, bench_sets, s3):
    store, bucket = s3
    write_faces(toyfaces_table(ToyFacesConfig(first_identity=8, identities=5, images_per_identity=4,
                                              resolution=24)), f"{bucket}/test", store)
    cfg = bench(**{"output.path": f"{bucket}/bench", "storage.endpoint_url": store.endpoint_url,
                   "test.sets": [{"name": "unseen", "path": f"{bucket}/test"}], "resources.concurrent": 2,
                   "seeds": [0]})  # one training trial: the killed-run test covers several seeds (CI time)
    from synthface_ray.commands import benchmark

    assert benchmark.run(cfg) == 0
    loc = storage.resolve(f"{bucket}/bench/tiny", store)
    from synthface_ray.storage import read_parquet

    rows = read_parquet(loc.join("results.parquet")).to_pylist()
    assert sorted((r["arm"], r["seed"]) for r in rows) == [("random_init", 0), ("real", 0)]
    for r in rows:
        assert r["folder"].startswith(f"{bucket}/bench/tiny/trials/")
        assert storage.read_json(storage.resolve(r["folder"], store).join("result.json"))["test"]["unseen"][
            "accuracy"] == r["accuracy"]
    assert storage.exists(loc.join("report.md")) and storage.exists(loc.join("plots", "accuracy_unseen.png"))
    spec, _ = plan.preflight(cfg)
    assert storage.exists(trial_folder(spec, "real", 0).join("fr", "export", "backbone_config.json"))


# bad input: refused before any trial ---------------------------------------------------------
def _refused(capsys, cfg, tmp_path, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(config.dump_yaml(cfg))
    assert cli.main(["benchmark", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not (Path(cfg.output.path) / cfg.output.name).exists()  # nothing started, nothing written


def test_test_identities_in_a_training_source_are_refused_by_name(bench, bench_sets, tmp_path, capsys):
    same_names = str(tmp_path / "same_names")  # other images (seed 5), but the test set's identity names
    write_faces(toyfaces_table(ToyFacesConfig(seed=5, first_identity=8, identities=3, images_per_identity=2,
                                              resolution=16)), same_names)
    cfg = bench(arms=[{"name": "leaky", "sources": [{"path": bench_sets["real"]}, {"path": same_names}]}])
    _refused(capsys, cfg, tmp_path, "share identity names (toy-000008, toy-000009, toy-000010)")


def test_test_images_in_a_training_source_are_refused_by_bytes(bench, bench_sets, tmp_path, capsys):
    copied = toyfaces_table(ToyFacesConfig(first_identity=8, identities=5, images_per_identity=4, resolution=24))
    write_faces(copied.drop_columns(["identity"]).slice(0, 6), str(tmp_path / "copied"))
    cfg = bench(arms=[{"name": "copied", "sources": [{"path": str(tmp_path / "copied")}]}])
    _refused(capsys, cfg, tmp_path, "2 identities share identical image bytes (toy-000008, toy-000009)")


def test_missing_empty_or_incomplete_sources_are_refused(bench, bench_sets, tmp_path, capsys):
    missing = bench(arms=[{"name": "gone", "sources": [{"path": str(tmp_path / "nowhere")}]}])
    _refused(capsys, missing, tmp_path, "arm 'gone':")
    empty = toyfaces_table(ToyFacesConfig(identities=1, images_per_identity=1)).slice(0, 0)
    write_faces(empty, str(tmp_path / "empty"))
    _refused(capsys, bench(arms=[{"name": "e", "sources": [{"path": str(tmp_path / "empty")}]}]), tmp_path,
             "has no rows")
    shutil.copytree(bench_sets["real"], tmp_path / "cut")
    (tmp_path / "cut" / "manifest.json").unlink()
    _refused(capsys, bench(arms=[{"name": "cut", "sources": [{"path": str(tmp_path / "cut")}]}]), tmp_path,
             "no manifest.json")
    _refused(capsys, bench(**{"test.sets": [{"name": "t", "path": str(tmp_path / "nowhere")}]}), tmp_path,
             "test set 't'")


def test_budgets_and_train_configs_that_cannot_run_are_refused(bench, bench_sets, tmp_path, capsys):
    _refused(capsys, bench(arms=[{"name": "big", "sources": [{"path": bench_sets["real"], "images": 500}]}]),
             tmp_path, "arm 'big', source")
    _refused(capsys, bench(arms=[{"name": "r", "sources": [{"path": bench_sets["real"]}],
                                  "train": {"optim.max_steps": 0}}]), tmp_path, "arm r: the train-fr config")
    _refused(capsys, bench(arms=[{"name": "r", "sources": [{"path": bench_sets["real"], "images": 2}]}]),
             tmp_path, "one step takes 4 per worker")
    _refused(capsys, bench(**{"train.config": ""}), tmp_path, "train.config is required")


def test_the_plan_says_sources_of_other_resolutions_are_resized_alike(bench, bench_sets, capsys):
    cfg = bench(arms=[{"name": "mix", "sources": [{"path": bench_sets["real"]}, {"path": bench_sets["other"]}]}])
    assert cli.main(["benchmark", "--config", bench_sets["train"], "--dry-run"]) == 2  # not a benchmark YAML
    capsys.readouterr()
    _, lines = plan.preflight(cfg)
    text = "\n".join(lines)
    assert "differ in native resolution" in text and "16x16" in text and "24x24" in text
    assert "resized to the backbone's 32x32 by the same decoder" in text
    assert "arm mix: 48 images of 8 identities" in text and "24 images of 4 identities" in text
    assert "cannot resolve FAR=0.001" in text


def test_an_arm_matched_to_another_takes_its_sizes(bench, bench_sets):
    cfg = bench(arms=[{"name": "other", "sources": [{"path": bench_sets["other"]}]},
                      {"name": "real", "sources": [{"path": bench_sets["real"]}], "match": "other"}])
    spec, lines = plan.preflight(cfg)
    real = spec.cfg.arm("real").sources[0]
    assert (real.images, real.identities) == (24, 4)  # the other set: 4 identities x 6 images
    assert any(line.startswith("arm real: 24 images of 4 identities") and "sized like arm other" in line
               for line in lines)
    mixed = bench(arms=[{"name": "other", "sources": [{"path": bench_sets["other"]}]},
                        {"name": "both", "match": "other", "sources": [{"path": bench_sets["real"], "weight": 0.5},
                                                                       {"path": bench_sets["other"], "weight": 0.5}]}])
    sources = plan.preflight(mixed)[0].cfg.arm("both").sources
    assert [(s.images, s.identities) for s in sources] == [(24, 4), (None, None)]
    too_big = bench(arms=[{"name": "real", "sources": [{"path": bench_sets["real"]}]},
                          {"name": "other", "sources": [{"path": bench_sets["other"]}], "match": "real"}])
    with pytest.raises(config.ConfigError, match="identities budget 8 exceeds the 4.*sized like arm 'real'"):
        plan.preflight(too_big)


@pytest.mark.slow
def test_a_failed_trial_is_reported_and_the_finished_ones_still_make_the_report(ray_local, bench, bench_sets,
                                                                               tmp_path):
    from synthface_ray.benchmark import runner

    shutil.copytree(bench_sets["real"], tmp_path / "doomed")
    cfg = bench(arms=[{"name": "doomed", "sources": [{"path": str(tmp_path / "doomed")}]}], seeds=[0])
    spec, lines = plan.preflight(cfg)
    shutil.rmtree(tmp_path / "doomed")  # the data disappears after the checks, before its trial
    rows, summary, failures = runner.run(spec, [])
    assert [(r["arm"], r["seed"]) for r in rows] == [("random_init", 0)]
    assert len(failures) == 1 and failures[0].startswith("doomed seed 0:")
    folder = tmp_path / "bench" / "tiny"
    text = (folder / "report.md").read_text()
    assert "**Failed trials**" in text and "doomed seed 0:" in text
    assert not list(folder.glob("trials/doomed/*/result.json"))


def test_relative_train_paths_reach_the_trials_absolute(bench, bench_sets, tmp_path, monkeypatch):
    """Trials run in Tune's working directories: a relative judge path of data.same_identity (in
    the train YAML, train.set or an arm's train keys) is resolved against the driver's directory."""
    from synthface_ray.benchmark.trial import train_config

    monkeypatch.chdir(tmp_path)
    import yaml

    train = yaml.safe_load(Path(bench_sets["train"]).read_text())
    train["data"]["same_identity"] = {"fr_model": "judges/yaml"}
    yaml_cfg = tmp_path / "train.yaml"
    yaml_cfg.write_text(yaml.safe_dump(train))
    arms = [{"name": "real", "sources": [{"path": bench_sets["real"]}]},
            {"name": "mixed", "sources": [{"path": bench_sets["real"]}, {"path": bench_sets["other"]}],
             "train": {"data.same_identity.fr_model": "judges/arm", "data.same_identity.action": "merge"}}]
    cfg = bench(**{"train.config": str(yaml_cfg), "arms": arms})
    spec, _ = plan.preflight(cfg)
    monkeypatch.chdir(tmp_path.parent)  # where a trial would run: somewhere else
    judge = {arm: train_config(spec, arm, 0, [], str(tmp_path)).data.same_identity.fr_model for arm in ("real", "mixed")}
    assert judge == {"real": str(tmp_path / "judges/yaml"), "mixed": str(tmp_path / "judges/arm")}
    monkeypatch.chdir(tmp_path)
    spec, _ = plan.preflight(bench(**{"train.set": {"data.same_identity.fr_model": "judges/set"}}))
    assert train_config(spec, "real", 0, [], str(tmp_path)).data.same_identity.fr_model == str(tmp_path / "judges/set")
