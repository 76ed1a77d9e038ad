"""`synthface pipeline`: steps are checked before any runs, run in order, and reused once done."""

from __future__ import annotations

from pathlib import Path

import yaml

from synthface_ray import cli
from synthface_ray.commands import pipeline
from synthface_ray.data import faces

ROOT = Path(__file__).resolve().parents[2]


def write_pipeline(tmp_path: Path, steps: list[dict]) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text("# synthface pipeline --config pipeline.yaml\n"
                    + yaml.safe_dump({"pipeline": {"root": str(tmp_path / "run"), "steps": steps}}))
    return path


TOY = {"command": "toyfaces", "config": str(ROOT / "jobs" / "toyfaces.yaml"),
       "set": ["toyfaces.identities=3", "toyfaces.images_per_identity=2", "output.path={root}/toy"],
       "done": "{root}/toy/manifest.json"}
TOY2 = {**TOY, "set": ["toyfaces.identities=2", "toyfaces.images_per_identity=2", "output.path={root}/toy2"],
        "done": "{root}/toy2/manifest.json"}


def test_steps_run_in_order_and_are_reused_on_a_rerun(tmp_path, capsys):
    job = write_pipeline(tmp_path, [TOY, TOY2])
    assert cli.main(["pipeline", "--config", str(job)]) == 0
    out = capsys.readouterr().out
    assert out.index("pipeline 1/2: toyfaces") < out.index("pipeline 2/2: toyfaces")
    assert faces.read_faces(str(tmp_path / "run" / "toy")).num_rows == 6
    assert faces.read_faces(str(tmp_path / "run" / "toy2")).num_rows == 4
    # toyfaces refuses an existing output: the re-run only works because both steps are reused
    assert cli.main(["pipeline", "--config", str(job)]) == 0
    out = capsys.readouterr().out
    assert out.count("complete, reused") == 2 and "every step was already complete" in out


def test_a_broken_step_is_refused_before_the_first_step_runs(tmp_path, capsys):
    broken = {**TOY2, "set": ["toyfaces.nope=1"]}
    job = write_pipeline(tmp_path, [TOY, broken])
    assert cli.main(["pipeline", "--config", str(job)]) == 2
    err = capsys.readouterr().err
    assert "pipeline.steps[1] (toyfaces): unknown config key(s) ['toyfaces.nope']" in err
    assert not (tmp_path / "run").exists()
    for bad, message in [({"command": "demo"}, "pipeline.steps[0] (demo): command must be one of"),
                         ({"command": "toyfaces", "config": "missing.yaml"}, "missing.yaml' does not exist")]:
        assert cli.main(["pipeline", "--config", str(write_pipeline(tmp_path, [bad]))]) == 2
        assert message in capsys.readouterr().err
    assert cli.main(["pipeline", "--config", str(write_pipeline(tmp_path, []))]) == 2
    assert "pipeline.steps is empty" in capsys.readouterr().err


def test_the_shipped_pipeline_loads_every_step(monkeypatch):
    """jobs/pipeline.yaml's steps load into their commands' configs (the files cannot drift)."""
    from synthface_ray import config

    monkeypatch.chdir(ROOT)
    cfg = config.load(pipeline.Config, "jobs/pipeline.yaml")
    loaded = pipeline.load_steps(cfg.pipeline.steps, cfg.pipeline.root)
    assert [s.command for s, _ in loaded] == ["train-fr", "train-generator", "identities", "mine", "plan",
                                             "generate", "evaluate"]
    assert all("{root}" not in s.done and s.done.startswith("runs/pipeline/") for s, _ in loaded)


def test_dry_run_shows_the_steps_with_their_secrets_redacted(tmp_path, capsys):
    """A step's --set list may carry storage credentials: the dry run shows the keys, not the values."""
    secret_step = {**TOY, "set": [*TOY["set"], "storage.access_key_id=AKIAEXAMPLEKEYID",
                                  "storage.secret_access_key=wJalrXUtnFEMIEXAMPLEKEY"]}
    job = write_pipeline(tmp_path, [secret_step])
    assert cli.main(["pipeline", "--config", str(job), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "AKIAEXAMPLEKEYID" not in out and "wJalrXUtnFEMIEXAMPLEKEY" not in out
    assert ("--set storage.access_key_id=<redacted> --set storage.secret_access_key=<redacted>" in out
            and "--set toyfaces.identities=3" in out)
