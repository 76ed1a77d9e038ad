"""`synthface submit` against a real token-authenticated Ray head (tests/ops/conftest.py):
a tiny generation job through the Jobs API, its outputs and dashboard metrics, the refusal and
resume rules of the stable submission id, and the token checks."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from gen_helpers import gen_config

from synthface_ray import cli, config, storage

pytestmark = pytest.mark.slow
#: the gauges (generator_actors, images_per_second) vanish ~20 s after their last update, often
#: before a tiny job's end: they are seen by docs/tools/dashboard_screenshot.py on a longer run
COUNTERS = ("ray_synthface_images_generated_total", "ray_synthface_shards_committed_total")


def write_job(folder: Path, gen_inputs, out: Path, name: str, fault: dict | None = None) -> Path:
    """A generate job file (absolute input paths) inside the working_dir ``folder``."""
    sets = {f"fault.{k}": v for k, v in (fault or {}).items()}
    cfg = gen_config(gen_inputs, out, name=name, **sets)
    folder.mkdir(parents=True, exist_ok=True)
    job = folder / "generate.yaml"
    job.write_text(f"# synthface generate --config {job.name}\n" + config.dump_yaml(cfg))
    return job


def submit(job: Path, head, *sets: str) -> list[str]:
    return ["submit", str(job), "--address", head.address, "--working-dir", str(job.parent), *sets]


def check_dataset(folder: Path, planned: int) -> None:
    manifest = storage.read_json(storage.resolve(str(folder / "manifest.json")))
    rows = pq.read_table([str(folder / f["path"]) for f in manifest["files"]]).column("row_id").to_pylist()
    assert manifest["rows"] == len(rows) == len(set(rows)) == planned


def metric_sum(text: str, name: str, run: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f"ray_{name}") and f'run="{run}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_generation_job_runs_through_the_jobs_api_with_outputs_and_metrics(
        ray_head, gen_inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAY_AUTH_TOKEN", ray_head.token)
    out = tmp_path / "out"
    job = write_job(tmp_path / "wd", gen_inputs, out, "viajobs")
    code = cli.main(submit(job, ray_head, "--set", "submit.follow=true", "--set", "submit.timeout_s=600",
                           "--set", "submit.poll_s=1"))
    text = capsys.readouterr().out
    assert code == 0, text[-3000:]
    sid = re.search(r"submitted (\S+) to", text).group(1)
    assert sid.startswith("synthface-generate-") and f"ray job logs --follow {sid}" in text
    assert f"job {sid}: SUCCEEDED" in text and "images/s" in text  # the job's own summary, streamed
    check_dataset(out / "viajobs", pq.read_table(gen_inputs["plan"]).num_rows)
    planned = pq.read_table(gen_inputs["plan"]).num_rows
    # the pipeline's counters reach the node's Prometheus endpoint (what Grafana scrapes)
    def counted():
        text = ray_head.metrics()
        return text if metric_sum(text, "synthface_images_generated", "viajobs") >= planned else None

    metrics = wait_for(counted, 90, "synthface_images_generated on the metrics endpoint")
    for name in COUNTERS:
        assert any(line.startswith(name) and 'run="viajobs"' in line for line in metrics.splitlines()), name
    assert metric_sum(metrics, "synthface_images_generated", "viajobs") == planned
    # the same job again: refused, its output is complete; nothing is submitted
    assert cli.main(submit(job, ray_head)) == 2
    err = capsys.readouterr().err
    assert f"job {sid} already SUCCEEDED" in err and "ray job delete" in err


def test_failed_job_resubmitted_resumes_exactly_once(ray_head, gen_inputs, tmp_path, monkeypatch, capsys):
    """Attempt 1 fails after 2 committed shards (the test-only fault, armed once by a marker
    file: the job file is the same for both attempts); the re-submission resumes it as -r2."""
    from ray.job_submission import JobSubmissionClient

    monkeypatch.setenv("RAY_AUTH_TOKEN", ray_head.token)
    out = tmp_path / "out"
    job = write_job(tmp_path / "wd", gen_inputs, out, "resumed", fault={
        "after_shards": 2, "mode": "raise", "marker": str(tmp_path / "fault-fired")})
    assert cli.main(submit(job, ray_head)) == 0
    sid = re.search(r"submitted (\S+) to", capsys.readouterr().out).group(1)
    # while it is pending or running, the same job is refused (two writers would do the work twice)
    assert cli.main(submit(job, ray_head)) == 2
    assert re.search(rf"job {sid} is already (PENDING|RUNNING)", capsys.readouterr().err)
    client = JobSubmissionClient(ray_head.address, headers={"Authorization": f"Bearer {ray_head.token}"})
    wait_for(lambda: str(client.get_job_status(sid).value) == "FAILED", 300, "the first attempt to fail")
    assert len(list((out / "resumed" / "receipts").iterdir())) >= 2
    assert not (out / "resumed" / "manifest.json").exists()
    assert cli.main(submit(job, ray_head, "--set", "submit.follow=true", "--set", "submit.timeout_s=600")) == 0
    text = capsys.readouterr().out
    assert f"submitted {sid}-r2 to" in text and f"attempt 2 resumes {sid}" in text
    assert "resuming" in text  # generate found the committed shards
    check_dataset(out / "resumed", pq.read_table(gen_inputs["plan"]).num_rows)


def test_token_auth_refuses_unauthenticated_requests_and_the_cli_works_with_the_token(
        ray_head, gen_inputs, tmp_path, monkeypatch, capsys):
    assert ray_head.get("/api/jobs/")[0] == 401
    assert ray_head.get("/api/jobs/", token="0" * 32)[0] == 403
    assert ray_head.get("/api/jobs/", token=ray_head.token)[0] == 200
    job = write_job(tmp_path / "wd", gen_inputs, tmp_path / "out", "noauth")
    # no token anywhere (empty HOME, no variables): a clear error, nothing submitted
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.main(submit(job, ray_head)) == 2
    err = capsys.readouterr().err
    assert "requires a token" in err and "RAY_AUTH_TOKEN" in err
    monkeypatch.setenv("RAY_AUTH_TOKEN", "f" * 32)
    assert cli.main(submit(job, ray_head)) == 2
    assert "refused the token" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # Ray's own CLI (the documented `ray job` equivalents) with the token
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": ray_head.token}
    listed = subprocess.run([str(Path(sys.executable).parent / "ray"), "job", "list", "--address",
                             ray_head.address], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    env["RAY_AUTH_TOKEN"] = "f" * 32
    refused = subprocess.run([str(Path(sys.executable).parent / "ray"), "job", "list", "--address",
                              ray_head.address], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0



def test_a_submission_that_loses_the_race_for_its_id_is_refused_cleanly(ray_head, tmp_path):
    """Two `synthface submit` runs of one job may both pass the status check; the second
    submit_job then hits Ray's own duplicate-id error, reported as a refusal."""
    from ray.job_submission import JobSubmissionClient

    from synthface_ray.commands.submit import SubmitSection, follow_hint, submit_once
    from synthface_ray.ops.submission import SubmitRefused

    client = JobSubmissionClient(ray_head.address, headers={"Authorization": f"Bearer {ray_head.token}"})
    s = SubmitSection(job="job.yaml", address=ray_head.address)
    env = {"working_dir": str(tmp_path)}
    hint = follow_hint(ray_head.address, True)
    sid = submit_once(client, "true", env, "synthface-race-test", s, {}, hint)
    with pytest.raises(SubmitRefused, match=r"job synthface-race-test was submitted by someone else.*"
                                            r"ray job logs --follow synthface-race-test"):
        submit_once(client, "true", env, sid, s, {}, hint)
    wait_for(lambda: str(client.get_job_status(sid).value) in ("SUCCEEDED", "FAILED"), 120, "the job to end")
