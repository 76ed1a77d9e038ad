"""What `synthface submit` decides without a cluster: job files, stable ids, attempts, the
runtime_env and entrypoint, the token lookup, and every bad input refused before upload."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

import pytest

from synthface_ray import cli, config
from synthface_ray.commands.catalog import config_types
from synthface_ray.ops import submission as sub
from synthface_ray.ops.jobfile import load_job

TYPES = config_types()

ROOT = Path(__file__).resolve().parents[2]
HINT = "ray job logs --follow {id}"


def test_stable_id_depends_on_the_resolved_job_only():
    a = load_job(ROOT / "jobs" / "generate.yaml", config_types=TYPES)
    again = load_job(ROOT / "jobs" / "generate.yaml", config_types=TYPES)
    other = load_job(ROOT / "jobs" / "generate.yaml", ["output.name=other"], config_types=TYPES)
    assert sub.stable_id(a) == sub.stable_id(again) == f"synthface-generate-{a.digest()}"
    assert sub.stable_id(other) != sub.stable_id(a)
    # an override equal to the file's own value resolves to the same job
    same = load_job(ROOT / "jobs" / "generate.yaml", ["output.name=toyfaces"], config_types=TYPES)
    assert sub.stable_id(same) == sub.stable_id(a)


@pytest.mark.parametrize("statuses, expected", [
    ({}, ("b", 1, None)),
    ({"b": "FAILED"}, ("b-r2", 2, "b")),
    ({"b": "FAILED", "b-r2": "STOPPED"}, ("b-r3", 3, "b-r2")),
    ({"b": "FAILED", "b-r2": "FAILED", "bx": "RUNNING", "other": "RUNNING"}, ("b-r3", 3, "b-r2")),
])
def test_next_attempt_submits_or_resumes(statuses, expected):
    d = sub.next_attempt("b", statuses, HINT)
    assert (d.submission_id, d.attempt, d.resumes) == expected


@pytest.mark.parametrize("statuses, message", [
    ({"b": "RUNNING"}, "job b is already RUNNING"),
    ({"b": "PENDING"}, "job b is already PENDING"),
    ({"b": "FAILED", "b-r2": "RUNNING"}, "ray job logs --follow b-r2"),
    ({"b": "SUCCEEDED"}, "already SUCCEEDED"),
    ({"b": "FAILED", "b-r2": "SUCCEEDED"}, "ray job delete b-r2"),
])
def test_next_attempt_refuses_a_running_or_finished_job(statuses, message):
    with pytest.raises(sub.SubmitRefused, match=message):
        sub.next_attempt("b", statuses, HINT)


def test_entrypoint_is_the_command_with_the_job_file_relative_to_the_working_dir(tmp_path):
    job = load_job(ROOT / "jobs" / "generate.yaml", ["output.path=runs/a b", "pool.actors=4"], config_types=TYPES)
    entry = sub.entrypoint(job, ROOT)
    assert shlex.split(entry) == ["synthface", "generate", "--config", "jobs/generate.yaml",
                                  "--set", "output.path=runs/a b", "--set", "pool.actors=4"]
    with pytest.raises(config.ConfigError, match="outside the working_dir"):
        sub.entrypoint(job, tmp_path)


def test_runtime_env_checks_its_local_paths(tmp_path):
    env = sub.runtime_env(str(tmp_path), ["numpy"], {"OMP_NUM_THREADS": "1"}, [".git"])
    assert env == {"working_dir": str(tmp_path), "excludes": [".git"], "pip": ["numpy"],
                   "env_vars": {"OMP_NUM_THREADS": "1"}}
    with pytest.raises(FileNotFoundError, match="submit.working_dir .* is not a folder"):
        sub.runtime_env(str(tmp_path / "missing"), [], {}, [])
    with pytest.raises(FileNotFoundError, match="dist/x.whl does not exist"):
        sub.runtime_env(str(tmp_path), ["./dist/x.whl"], {}, [])
    with pytest.raises(FileNotFoundError, match="reqs.txt does not exist"):
        sub.runtime_env(str(tmp_path), ["-r reqs.txt"], {}, [])
    with pytest.raises(config.ConfigError, match="looks like a credential"):
        sub.runtime_env(str(tmp_path), [], {"AWS_SECRET_ACCESS_KEY": "x"}, [])


def test_token_is_found_where_rays_cli_looks(tmp_path):
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("home-token\n")
    (tmp_path / "named").write_text("named-token")
    home = {"HOME": str(tmp_path)}
    assert sub.find_token(home) == "home-token"
    assert sub.find_token({**home, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "named")}) == "named-token"
    assert sub.find_token({**home, "RAY_AUTH_TOKEN": "env-token", "RAY_AUTH_TOKEN_PATH": "x"}) == "env-token"
    assert sub.find_token({"HOME": str(tmp_path / "empty")}) is None
    with pytest.raises(FileNotFoundError, match="RAY_AUTH_TOKEN_PATH"):
        sub.find_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "nope")})
    assert sub.auth_headers("t") == {"Authorization": "Bearer t"} and sub.auth_headers(None) == {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv, message", [
    (["submit", "clusters/aws.yaml"], "is not a synthface job file"),
    (["submit", "clusters/kuberay/rayjob.yaml"], "is not a synthface job file"),
    (["submit", "jobs/missing.yaml"], "job file jobs/missing.yaml not found"),
    (["submit", "jobs/generate.yaml", "--set", "submit.command=train-fr"], "is a `synthface generate` job, not"),
    (["submit", "jobs/generate.yaml", "--address", "127.0.0.1:8265"], "is not a dashboard URL"),
    (["submit", "jobs/generate.yaml", "--working-dir", "/nonexistent/dir"], "is not a folder"),
    (["submit", "jobs/generate.yaml", "--set", "submit.pip=[./nope.whl]"], "nope.whl does not exist"),
    (["submit", "jobs/generate.yaml", "--set", "submit.job_sets=[pool.nope=1]"],
     "does not load as a `synthface generate` job: unknown config key"),
    (["submit"], "give the job file"),
])
def test_bad_input_is_refused_before_anything_is_sent(argv, message, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert cli.main([*argv, "--address", f"http://127.0.0.1:{_free_port()}"]
                    if "--address" not in argv else argv) == 2
    assert message in capsys.readouterr().err


def test_a_job_yaml_of_the_wrong_type_is_refused(tmp_path, capsys, monkeypatch):
    # a generate header over a train-fr body
    body = (ROOT / "jobs" / "train_fr.yaml").read_text().split("\n", 1)[1]
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(f"# synthface generate --config {wrong}\n{body}")
    assert cli.main(["submit", str(wrong), "--working-dir", str(tmp_path), "--dry-run"]) == 2
    assert "does not load as a `synthface generate` job" in capsys.readouterr().err
    wrong.write_text("# synthface submit --config x\n")
    assert cli.main(["submit", str(wrong), "--working-dir", str(tmp_path), "--dry-run"]) == 2
    assert "not a job command" in capsys.readouterr().err


def test_unreachable_address_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert cli.main(["submit", "jobs/generate.yaml", "--address", f"http://127.0.0.1:{_free_port()}"]) == 2
    assert "cannot reach the Ray dashboard at http://127.0.0.1:" in capsys.readouterr().err


def test_dry_run_shows_the_submission_and_sends_nothing(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert cli.main(["submit", "jobs/pipeline.yaml", "--address", "http://10.255.255.1:8265", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "entrypoint: synthface pipeline --config jobs/pipeline.yaml" in out
    assert "submission id: synthface-pipeline-" in out and "'runs'" in out


KEY_ID, SECRET_KEY, TOKEN = "AKIAEXAMPLEKEYID", "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY", "FwoGZXIvYXdzEXAMPLETOKEN"
SECRET_SETS = f'submit.job_sets=["pool.actors=2", "storage.access_key_id={KEY_ID}", ' \
              f'"storage.secret_access_key={SECRET_KEY}", "storage.session_token={TOKEN}"]'


def _shown_nowhere(text: str) -> bool:
    return not any(value in text for value in (KEY_ID, SECRET_KEY, TOKEN))


@pytest.mark.parametrize("dry_run", [True, False])
def test_secrets_in_job_sets_are_refused_and_never_shown(dry_run, capsys, monkeypatch):
    """A job's entrypoint and runtime_env (env_vars too) are shown by `ray job list` and the
    dashboard: credentials in submit.job_sets are refused before anything is printed or sent,
    naming the keys, never the values."""
    monkeypatch.chdir(ROOT)
    argv = ["submit", "jobs/generate.yaml", "--address", f"http://127.0.0.1:{_free_port()}", "--set", SECRET_SETS]
    assert cli.main(argv + (["--dry-run"] if dry_run else [])) == 2
    out, err = capsys.readouterr()
    assert _shown_nowhere(out + err) and "entrypoint" not in out
    assert ("submit.job_sets sets storage.access_key_id, storage.secret_access_key, storage.session_token: "
            "nothing was sent") in err
    assert "instance role" in err and "AWS_SECRET_ACCESS_KEY" in err


def test_a_secret_job_set_of_the_wrong_type_is_refused_without_its_value(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert cli.main(["submit", "jobs/generate.yaml", "--dry-run", "--set",
                     'submit.job_sets=["storage.secret_access_key=123456789"]']) == 2
    err = capsys.readouterr().err
    assert "123456789" not in err and "submit.job_sets sets storage.secret_access_key" in err


def test_a_job_file_holding_secrets_is_refused(tmp_path, capsys):
    """The job file is uploaded with the working_dir and kept on the cluster."""
    body = (ROOT / "jobs" / "generate.yaml").read_text().split("\n", 1)[1]
    job = tmp_path / "generate.yaml"
    job.write_text(f"# synthface generate --config {job.name}\n{body}\nstorage:\n"
                   f"  access_key_id: {KEY_ID}\n  secret_access_key: {SECRET_KEY}\n")
    assert cli.main(["submit", str(job), "--working-dir", str(tmp_path), "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert _shown_nowhere(out + err)
    assert f"job file {job} sets storage.access_key_id, storage.secret_access_key: nothing was sent" in err
    # a pipeline step's --set list counts too
    pipe = tmp_path / "pipeline.yaml"
    pipe.write_text(f"# synthface pipeline --config {pipe.name}\npipeline:\n  steps:\n"
                    f"  - command: toyfaces\n    set: [toyfaces.identities=2, storage.session_token={TOKEN}]\n")
    assert cli.main(["submit", str(pipe), "--working-dir", str(tmp_path), "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert _shown_nowhere(out + err) and "pipeline.steps[0].set[1] (storage.session_token)" in err


def test_the_shipped_job_files_hold_no_secrets():
    """Every job file in jobs/ and tuning/ loads and holds no credential (they are submitted)."""
    files = sorted((ROOT / "jobs").glob("*.yaml")) + sorted((ROOT / "tuning").glob("*.yaml"))
    assert files
    for path in files:
        job = load_job(path, config_types=TYPES)
        assert config.find_secrets(job.cfg) == [], path
        sub.refuse_secret_job(job)


def test_runtime_env_refuses_credentials_and_says_how_to_give_them(tmp_path):
    with pytest.raises(config.ConfigError) as err:
        sub.runtime_env(str(tmp_path), [], {"AWS_SESSION_TOKEN": "x"}, [])
    assert "submit.env_vars.AWS_SESSION_TOKEN looks like a credential" in str(err.value)
    assert "instance role" in str(err.value) and "secretKeyRef" in str(err.value)


def test_a_plain_job_set_still_reaches_the_entrypoint(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert cli.main(["submit", "jobs/generate.yaml", "--dry-run", "--set",
                     'submit.job_sets=["pool.actors=2", "output.name=token-run"]']) == 0
    assert "--set pool.actors=2 --set output.name=token-run" in capsys.readouterr().out
