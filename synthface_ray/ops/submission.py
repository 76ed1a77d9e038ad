"""What ``synthface submit`` sends to the Ray Jobs API, decided without a cluster: the stable
submission id, the attempt to submit next (or why not), the runtime_env, the entrypoint and the
auth header. Pure functions; the HTTP edge is :mod:`synthface_ray.commands.submit`."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from synthface_ray import config
from synthface_ray.ops.jobfile import JobFile

#: Ray job states (ray.job_submission.JobStatus values)
ACTIVE = ("PENDING", "RUNNING")
RESUMABLE = ("FAILED", "STOPPED")
#: never uploaded with the working_dir: outputs, environments, caches
DEFAULT_EXCLUDES = (".git", ".venv", "venv", "runs", "**/__pycache__", "*.egg-info", ".pytest_cache",
                    ".ruff_cache", ".ci")
#: how a job gets credentials instead (the entrypoint and the runtime_env, env_vars included, are
#: shown to everyone who can list the cluster's jobs: `ray job list`, the dashboard's job page)
CREDENTIALS_HELP = ("give the cluster its own credentials: an instance role / service account (clusters/README.md), "
                    "or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN set on its nodes from a secret "
                    "store (KubeRay: env valueFrom secretKeyRef), which the job's storage layer reads")
TOKEN_HELP = ("export RAY_AUTH_TOKEN=<token> (on the head node `ray get-auth-token` prints it) or write it "
              "to ~/.ray/auth_token or the file named by RAY_AUTH_TOKEN_PATH")


class SubmitRefused(config.ConfigError):
    """The job exists on the cluster in a state where submitting again would duplicate work."""


def refuse_secret_sets(job_sets: list[str]) -> None:
    """Refuse credentials in ``submit.job_sets``, naming the keys (never the values): they would
    travel in the job's entrypoint, which ``ray job list`` and the dashboard show; a runtime_env
    ``env_vars`` entry is shown the same way, so there is no private channel to move them to."""
    keys = config.secret_overrides(job_sets)
    if keys:
        raise config.ConfigError(
            f"submit.job_sets sets {', '.join(keys)}: nothing was sent. A job's entrypoint and runtime_env "
            f"(env_vars included) are shown to anyone who can list the cluster's jobs, so credentials never "
            f"travel with a job: drop {'them' if len(keys) > 1 else 'it'} from submit.job_sets and {CREDENTIALS_HELP}")


def refuse_secret_job(job: JobFile) -> None:
    """Refuse a job file that holds credentials: it is uploaded with the working_dir and kept by
    the cluster with the job."""
    found = config.find_secrets(job.cfg)
    if found:
        raise config.ConfigError(
            f"job file {job.path} sets {', '.join(found)}: nothing was sent. The job file is uploaded with "
            f"the working_dir and kept on the cluster, so credentials never travel with a job: remove "
            f"{'them' if len(found) > 1 else 'it'} from the file and {CREDENTIALS_HELP}")


def stable_id(job: JobFile, prefix: str = "synthface") -> str:
    """``<prefix>-<command>-<digest>``: the same job (command + resolved config) gets the same
    id from any machine, so a re-submission finds its earlier attempts."""
    return f"{prefix}-{job.command}-{job.digest()}"


def attempt_id(base: str, n: int) -> str:
    """Attempt 1 is the stable id itself; later attempts (resumes) are ``<base>-r<n>``."""
    return base if n == 1 else f"{base}-r{n}"


def attempts(base: str, statuses: dict[str, str]) -> list[tuple[int, str]]:
    """The earlier attempts of ``base`` among the cluster's jobs (id -> status), oldest first."""
    pattern = re.compile(re.escape(base) + r"(?:-r(\d+))?$")
    found = []
    for sid, status in statuses.items():
        match = pattern.match(sid)
        if match:
            found.append((int(match.group(1) or 1), status))
    return sorted(found)


@dataclass(frozen=True)
class Decision:
    submission_id: str
    attempt: int
    resumes: str | None  # the id of the failed/stopped attempt this one resumes


def next_attempt(base: str, statuses: dict[str, str], follow_hint: str) -> Decision:
    """Submit attempt 1; refuse while an attempt is pending/running or after one succeeded;
    after a failed or stopped attempt, submit the next one: generation resumes from its committed
    shards (exactly once), training from its last checkpoint."""
    earlier = attempts(base, statuses)
    if not earlier:
        return Decision(base, 1, None)
    n, status = earlier[-1]
    last = attempt_id(base, n)
    if status in ACTIVE:
        raise SubmitRefused(f"job {last} is already {status} on this cluster; submitting it again would run "
                            f"the same job twice. Follow it: {follow_hint.format(id=last)}")
    if status == "SUCCEEDED":
        raise SubmitRefused(f"job {last} already SUCCEEDED: its output is complete. To run it again, change "
                            f"the job (e.g. a new output name) or free the id with `ray job delete {last}`")
    if status not in RESUMABLE:
        raise SubmitRefused(f"job {last} is in state {status}; wait for it to finish or stop it "
                            f"(`ray job stop {last}`)")
    return Decision(attempt_id(base, n + 1), n + 1, last)


def entrypoint(job: JobFile, working_dir: Path) -> str:
    """``synthface COMMAND --config <job file relative to working_dir> [--set ...]``."""
    try:
        rel = job.path.resolve().relative_to(working_dir.resolve())
    except ValueError:
        raise config.ConfigError(
            f"job file {job.path} is outside the working_dir {working_dir} that is uploaded with the job: "
            f"move it under {working_dir} or set submit.working_dir to a folder containing it") from None
    args = ["synthface", job.command, "--config", rel.as_posix()]
    for item in job.overrides:
        args += ["--set", item]
    return shlex.join(args)


def _is_local_path(item: str) -> bool:
    return item.startswith(("/", "./", "../", "~")) or item.endswith((".whl", ".txt"))


def runtime_env(working_dir: str, pip: list[str], env_vars: dict[str, str],
                excludes: list[str]) -> dict:
    """The job's runtime_env, its local paths checked: the working_dir must be a folder and a
    local pip entry (a path, wheel or requirements file) must exist."""
    wd = Path(working_dir).expanduser()
    if not wd.is_dir():
        raise FileNotFoundError(f"submit.working_dir {working_dir} is not a folder; it is uploaded as the "
                                f"job's runtime_env working_dir (default: the current folder)")
    for item in pip:
        spec = item.split()[-1] if item.startswith("-") else item
        if _is_local_path(spec) and not Path(spec).expanduser().exists():
            raise FileNotFoundError(f"submit.pip entry {item!r}: {spec} does not exist")
    for key in env_vars:
        if re.search(r"SECRET|TOKEN|PASSWORD|KEY", key, re.IGNORECASE):
            raise config.ConfigError(f"submit.env_vars.{key} looks like a credential; a job's runtime_env is shown "
                                     f"to anyone who can list the cluster's jobs: {CREDENTIALS_HELP}")
    env: dict = {"working_dir": str(wd.resolve()), "excludes": list(excludes)}
    if pip:
        env["pip"] = list(pip)
    if env_vars:
        env["env_vars"] = dict(env_vars)
    return env


def find_token(environ: dict[str, str] | None = None) -> str | None:
    """The cluster token from the places Ray's own CLI reads: ``RAY_AUTH_TOKEN``, the file named
    by ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``; None if there is none."""
    environ = os.environ if environ is None else environ
    if environ.get("RAY_AUTH_TOKEN", "").strip():
        return environ["RAY_AUTH_TOKEN"].strip()
    named = environ.get("RAY_AUTH_TOKEN_PATH")
    if named:
        if not Path(named).is_file():
            raise FileNotFoundError(f"RAY_AUTH_TOKEN_PATH={named} does not exist; {TOKEN_HELP}")
        return Path(named).read_text().strip() or None
    default = Path(environ.get("HOME", str(Path.home()))) / ".ray" / "auth_token"
    if not default.is_file():
        return None
    return default.read_text().strip() or None


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def check_address(address: str) -> str:
    """The dashboard URL (``http(s)://host:port``, default port 8265)."""
    if not re.match(r"https?://[^/\s]+", address or ""):
        raise config.ConfigError(
            f"submit.address {address!r} is not a dashboard URL: give http://HOST:8265 (for a launcher "
            f"cluster run `ray dashboard clusters/aws.yaml` and use http://127.0.0.1:8265)")
    return address.rstrip("/")
