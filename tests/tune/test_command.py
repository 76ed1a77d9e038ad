"""``synthface tune`` on one local Ray with tiny real models: a whole ASHA sweep and its outputs,
the exported best job reproducing the best trial's metrics, a sweep whose driver is SIGKILLed
restored without re-running finished trials, a sweep stored on S3 (moto), bad input refused
before any trial."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from synthface_ray import cli, config
from synthface_ray.commands import evaluate, generate, tune
from synthface_ray.tune.config import METRICS
from synthface_ray.tune.protocol import flat_metrics

pytestmark = pytest.mark.slow
EXACT = ("eer", "fmr100", "fmr1000", "verification_accuracy", "verification_eer", "diversity_pixel",
         "uniqueness", "consistency", "genuine_mean", "diversity_fr")


def _trial_results(exp: Path) -> dict[str, bytes]:
    return {Path(p).parent.name.split("_")[1] + "_" + Path(p).parent.name.split("_")[2]: Path(p).read_bytes()
            for p in glob.glob(str(exp / "trial_*" / "result.json"))}


def test_asha_sweep_writes_results_plots_and_a_best_job_that_reproduces_its_metrics(ray_local, sweep, capsys):
    cfg = sweep()
    assert tune.run(cfg) == 0
    out = capsys.readouterr().out
    exp = Path(cfg.output.path) / cfg.output.name
    table = pq.read_table(exp / "results.parquet").to_pylist()
    assert len(table) == 4 and {r["status"] for r in table} <= {"completed", "stopped"}
    assert any(r["status"] == "completed" and r["rung"] == 2 and r["identities"] == 8 + 2 for r in table)
    assert all(set(METRICS) <= set(r) and 0.2 <= r["param:plan.mix_lambda"] <= 0.8 for r in table)
    for knob in cfg.space:
        assert Image.open(exp / "plots" / f"{knob}.png").size == (640, 420)
    best = json.loads((exp / "best" / "best.json").read_text())
    completed = [r for r in table if r["status"] == "completed"]
    assert best["objective"] == min(r["objective"] for r in completed) and f"best {best['trial_id']}" in out

    # the exported jobs regenerate the trial's images and re-score them
    gen_cfg = config.load(generate.Config, str(exp / "best" / "generate.yaml"))
    assert gen_cfg.sampler.negative.w_max == best["params"]["sampler.negative.w_max"]
    assert generate.run(gen_cfg) == 0
    assert evaluate.run(config.load(evaluate.Config, str(exp / "best" / "evaluate.yaml"))) == 0
    again = flat_metrics(json.loads((exp / "best" / "report" / "metrics.json").read_text()))
    for name, value in best["metrics"].items():
        if name in EXACT:
            assert again[name] == value, name
        else:  # moments summed in another order
            assert again[name] == pytest.approx(value, rel=1e-6), name

    # a finished sweep run again is restored: no trial runs again, the same results
    before = _trial_results(exp)
    assert tune.run(sweep()) == 0
    assert _trial_results(exp) == before and "restoring" in capsys.readouterr().out


def _terminated(exp: Path) -> set[str]:
    done = set()
    for path in glob.glob(str(exp / "experiment_state-*.json")):
        try:
            state = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        done |= {t["trial_id"] for t in (json.loads(d[0]) for d in state["trial_data"])
                 if t["status"] == "TERMINATED"}
    return done


def test_a_sweep_whose_driver_is_killed_is_restored_and_finishes_without_rerunning_trials(ray_local, sweep, tmp_path):
    cfg = sweep(**{"search.samples": 6, "search.scheduler": "fifo", "search.concurrent": 1})
    path = tmp_path / "sweep.yaml"
    path.write_text(config.dump_yaml(cfg))
    # Tune snapshots its experiment state every >= 10 s by default: on a quiet machine the 6 trials
    # could all finish between two snapshots, and the driver would never be seen mid-way
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address,
           "TUNE_GLOBAL_CHECKPOINT_S": "0.5"}
    proc = subprocess.Popen([sys.executable, "-m", "synthface_ray.cli", "tune", "--config", str(path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    exp = Path(cfg.output.path) / cfg.output.name
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(_terminated(exp)) < 2:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    done = _terminated(exp)
    assert 2 <= len(done) < 6, "the sweep must be killed mid-way"
    finished = {k: v for k, v in _trial_results(exp).items() if k in done}
    assert tune.run(cfg) == 0
    table = pq.read_table(exp / "results.parquet").to_pylist()
    assert len(table) == 6 and all(r["status"] == "completed" for r in table)
    after = _trial_results(exp)
    assert all(after[k] == v for k, v in finished.items())  # finished trials were not re-run
    assert (exp / "best" / "generate.yaml").exists()


def test_a_sweep_stored_on_s3(ray_local, sweep, s3):
    store, bucket = s3
    cfg = sweep(**{"search.samples": 2, "search.scheduler": "fifo", "output.path": f"{bucket}/tune",
                   "storage.endpoint_url": store.endpoint_url})
    assert tune.run(cfg) == 0
    from synthface_ray import storage
    from synthface_ray.storage import read_parquet

    exp = storage.resolve(f"{bucket}/tune/tiny", store)
    assert read_parquet(exp.join("results.parquet")).num_rows == 2
    assert storage.exists(exp.join("best", "generate.yaml")) and storage.exists(exp.join("plots", "plan.mix_lambda.png"))


def _cli_error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("sets, message", [
    (["space.sampler\\.negative\\.wmax={uniform: [0, 1]}"], None),
    (["space={}"], "space is empty"),
    (["objective.metric=sharpness"], "'sharpness' is not a metric the trials report"),
    (["protocol.min_identities=16"], "budget is too small for one rung"),
    (["protocol.max_identities=12"], "has 10 identities but the last rung needs"),
    (["verification.enabled=false", "objective.metric=verification_eer"], "verification.enabled is false"),
    (["job=/nonexistent/job.yaml"], "does not exist"),
])
def test_bad_sweeps_are_refused_before_any_trial(sweep, tmp_path, capsys, sets, message):
    cfg = sweep()
    path = tmp_path / "sweep.yaml"
    data = config.to_dict(cfg)
    if message is None:  # a dotted path as a space key cannot go through --set: write it
        data["space"] = {"sampler.negative.wmax": {"uniform": [0, 1]}}
        sets, message = [], "unknown parameter path"
    path.write_text(__import__("yaml").safe_dump(data))
    err = _cli_error(capsys, ["tune", "--config", str(path), *(f"--set={s}" for s in sets)])
    assert message in err, err
    assert not Path(cfg.output.path).exists()  # nothing written, no trial started


def test_an_output_holding_another_sweep_is_refused(sweep, tmp_path):
    exp = Path(sweep().output.path) / "tiny"
    exp.mkdir(parents=True)
    (exp / "sweep.json").write_text(json.dumps({"space": {}}))
    with pytest.raises(FileExistsError, match="holds another sweep"):
        tune.open_sweep(sweep(), config.load(generate.Config, sweep().job))


def test_a_multi_objective_optuna_sweep_reports_its_pareto_front(ray_local, sweep, capsys):
    cfg = sweep(**{"search.samples": 3, "search.algorithm": "optuna", "search.scheduler": "fifo",
                   "objective.multi": "{eer: min, diversity_fr: max}"})
    assert tune.run(cfg) == 0
    exp = Path(cfg.output.path) / cfg.output.name
    table = pq.read_table(exp / "results.parquet").to_pylist()
    import pyarrow.csv as pacsv

    # trial ids are hex strings: read them as such (one like '59686e15' parses as a float otherwise)
    as_text = pacsv.ConvertOptions(column_types={"trial_id": pa.string()})
    front = pacsv.read_csv(exp / "pareto.csv", convert_options=as_text).to_pylist()
    assert len(table) == 3 and 1 <= len(front) <= 3
    ids = {r["trial_id"] for r in front}
    for r in table:  # the front is exactly the non-dominated completed trials
        dominated = any(o["eer"] <= r["eer"] and o["diversity_fr"] >= r["diversity_fr"]
                        and (o["eer"] < r["eer"] or o["diversity_fr"] > r["diversity_fr"]) for o in table)
        assert (r["trial_id"] in ids) == (not dominated)
    assert "pareto" in capsys.readouterr().out


@pytest.fixture(scope="module")
def downstream_inputs(tmp_path_factory):
    """A tiny FR recipe and a real test set of ToyFaces people no tiny model trained on."""
    import yaml

    from synthface_ray.data.faces import write_faces
    from synthface_ray.data.toyfaces import ToyFacesConfig, toyfaces_table

    root = tmp_path_factory.mktemp("downstream")
    recipe = {"backbone": {"input_size": 32, "width": 4, "embedding_dim": 16}, "margin": {"s": 16.0, "m": 0.2},
              "optim": {"micro_batch": 8, "max_steps": 3, "lr": 0.05}}
    (root / "fr.yaml").write_text(yaml.safe_dump(recipe))
    write_faces(toyfaces_table(ToyFacesConfig(first_identity=500, identities=5, images_per_identity=4,
                                              resolution=16)), str(root / "unseen"))
    return {"train": str(root / "fr.yaml"), "test": str(root / "unseen")}


def test_a_sweep_can_optimise_the_accuracy_of_fr_trained_on_each_trials_images(ray_local, sweep, downstream_inputs,
                                                                                capsys):
    cfg = sweep(**{"search.samples": 2, "search.scheduler": "fifo", "downstream.enabled": True,
                   "downstream.train": downstream_inputs["train"], "downstream.test": downstream_inputs["test"],
                   "downstream.genuine": 40, "downstream.impostor": 40, "downstream.folds": 4,
                   "objective.metric": "downstream_accuracy", "objective.mode": "max"})
    assert tune.run(cfg) == 0
    out = capsys.readouterr().out
    assert "downstream: each trial trains iresnet18 (width 4) for 3 steps" in out
    table = pq.read_table(Path(cfg.output.path) / cfg.output.name / "results.parquet").to_pylist()
    assert len(table) == 2 and all(r["status"] == "completed" for r in table)
    for r in table:
        assert 0 <= r["downstream_accuracy"] <= 1 and 0 <= r["downstream_eer"] <= 1
        assert r["objective"] == r["downstream_accuracy"]


@pytest.mark.parametrize("sets, message", [
    ({"objective.metric": "downstream_accuracy", "objective.mode": "max"}, "downstream.enabled is false"),
    ({"downstream.enabled": True, "downstream.test": "x"}, "downstream.enabled needs downstream.train"),
    ({"downstream.enabled": True, "downstream.train": "TRAIN", "downstream.test": "TEST",
      "objective.metric": "downstream_accuracy", "objective.mode": "max"}, "use search.scheduler=fifo"),
    ({"downstream.enabled": True, "downstream.train": "TRAIN", "downstream.test": "/nowhere",
      "search.scheduler": "fifo"}, "/nowhere does not exist"),
    ({"downstream.enabled": True, "downstream.train": "TRAIN", "downstream.test": "TEST",
      "downstream.set": "{optim.max_steps: 0}", "search.scheduler": "fifo"}, "downstream.train"),
])
def test_bad_downstream_objectives_are_refused_before_any_trial(sweep, downstream_inputs, capsys, sets, message):
    from synthface_ray.config import ConfigError

    values = {k: str(v).replace("TRAIN", downstream_inputs["train"]).replace("TEST", downstream_inputs["test"])
              for k, v in sets.items()}
    with pytest.raises((ConfigError, FileNotFoundError), match=message):
        tune.preflight(sweep(**values))
