"""Smoke test of the kill-trial script (benchmarks/kill_trials.py, issue 21) on the tiny inputs:
a reference run, then an overwrite whose driver is SIGKILLed while its replacement fills, re-run
to completion and checked against the reference byte for byte (the mode that exercises the most
of the script: kill, the old dataset's check, resume and swap; a plain driver kill is
tests/generate/test_pipeline.py's)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from gen_helpers import gen_config

from synthface_ray import config

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "kill_trials.py"


def _script():
    spec = importlib.util.spec_from_file_location("kill_trials", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_an_overwrite_trial_passes(ray_local, gen_inputs, tmp_path, capsys):
    job = tmp_path / "generate.yaml"
    job.write_text(config.dump_yaml(gen_config(gen_inputs, tmp_path / "unused", "kt")))
    results = tmp_path / "results.json"
    rc = _script().main(["--config", str(job), "--trials", "1", "--modes", "overwrite",
                         "--root", str(tmp_path / "trials"), "--json", str(results),
                         "--ray-address", ray_local.get_runtime_context().gcs_address])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "1 of 1 passed" in out and "reference: " in out
    report = json.loads(results.read_text())
    assert report["shards"] == 4 and report["rows"] == gen_inputs["rows"] == 44
    trials = report["trials"]
    assert [(t["mode"], t["verdict"]) for t in trials] == [("overwrite", "PASS")]
    for t in trials:
        assert 1 <= t["k"] <= t["at"] <= 4 and t["rows"] == 44 and t["kill_to_done_s"] > 0
    assert (tmp_path / "trials" / "trial-01-overwrite" / "kt" / "manifest.json").exists()
    assert not (tmp_path / "trials" / "trial-01-overwrite" / ".kt.replacing").exists()
