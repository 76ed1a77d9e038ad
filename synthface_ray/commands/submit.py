"""``synthface submit JOB.yaml --address URL``: run a job file on a Ray cluster through the Ray
Jobs API (docs/OPERATIONS.md). The job is loaded into its command's config here first, so a
broken file is refused before anything is uploaded; its submission id is stable (command +
resolved config), so a re-submission is refused while it runs or after it succeeded, and resumes
(a new attempt on the same outputs) after it failed or was stopped."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from synthface_ray import config
from synthface_ray.commands.catalog import config_types
from synthface_ray.config import check_range
from synthface_ray.ops import submission as sub
from synthface_ray.ops.jobfile import load_job


@dataclass
class SubmitSection:
    """``job``: the job file (line 1 names its command); ``job_sets``: ``--set`` overrides passed
    to the job (credentials refused: the entrypoint is shown in job listings); ``command``: if
    set, the job file must be of this command; ``address``: the dashboard URL (``ray dashboard
    CLUSTER.yaml`` forwards it to 127.0.0.1:8265); ``working_dir``: uploaded as the runtime_env
    working_dir (it must contain the job file); ``pip``: packages the job's runtime_env installs
    (the cluster image already has the project); ``env_vars``: plain settings for the job (never
    credentials: ``ray job list`` and the dashboard show them); ``excludes``: not uploaded;
    ``id_prefix``: of the stable submission id; ``entrypoint_num_cpus``/``entrypoint_num_gpus``:
    resources reserved for the job's driver; ``follow``: stream the logs and wait for the end
    (exit 0 only if it succeeded); ``timeout_s``: give up following after this long (0 = no
    limit; the job goes on)."""

    job: str = ""
    job_sets: list[str] = field(default_factory=list)
    command: str | None = None
    address: str = "http://127.0.0.1:8265"
    working_dir: str = "."
    pip: list[str] = field(default_factory=list)
    env_vars: dict = field(default_factory=dict)
    excludes: list[str] = field(default_factory=lambda: list(sub.DEFAULT_EXCLUDES))
    id_prefix: str = "synthface"
    entrypoint_num_cpus: float = 0.0
    entrypoint_num_gpus: float = 0.0
    follow: bool = False
    timeout_s: float = 0.0
    poll_s: float = 2.0

    def __post_init__(self) -> None:
        for key in ("entrypoint_num_cpus", "entrypoint_num_gpus", "timeout_s"):
            check_range(f"submit.{key}", getattr(self, key), 0)
        check_range("submit.poll_s", self.poll_s, 0.1)


@dataclass
class Config:
    submit: SubmitSection = field(default_factory=SubmitSection)


def follow_hint(address: str, token: bool) -> str:
    env = "RAY_AUTH_MODE=token " if token else ""
    return f"{env}ray job logs --follow {{id}} --address {address}"


def _client(address: str, token: str | None):
    """A JobSubmissionClient with the token header; Ray's auth/connection errors reworded."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address, headers=sub.auth_headers(token))
    except AuthenticationError as exc:
        if token:
            raise PermissionError(f"the Ray cluster at {address} refused the token (wrong token for this "
                                  f"cluster?); {sub.TOKEN_HELP}") from None
        raise PermissionError(f"the Ray cluster at {address} requires a token (token authentication is "
                              f"on) and none was found: {sub.TOKEN_HELP}") from exc
    except ConnectionError:
        raise ConnectionError(f"cannot reach the Ray dashboard at {address}: is the cluster up and the "
                              f"port forwarded (`ray dashboard clusters/aws.yaml`, or `kubectl "
                              f"port-forward svc/<head> 8265:8265`)?") from None


def _statuses(client) -> dict[str, str]:
    return {j.submission_id: str(j.status.value if hasattr(j.status, "value") else j.status)
            for j in client.list_jobs() if j.submission_id}


def _print_submitted(sid: str, s: SubmitSection, decision, token: bool) -> None:
    hint = follow_hint(s.address, token)
    env = "RAY_AUTH_MODE=token " if token else ""
    if decision.resumes:
        print(f"attempt {decision.attempt} resumes {decision.resumes} on the same outputs "
              f"(generation completes only the missing shards; training continues from its checkpoint)")
    print(f"submitted {sid} to {s.address}\n"
          f"  follow:    {hint.format(id=sid)}\n"
          f"  status:    {env}ray job status {sid} --address {s.address}\n"
          f"  stop:      {env}ray job stop {sid} --address {s.address}\n"
          f"  dashboard: {s.address}/#/jobs/{sid} (metrics: docs/OPERATIONS.md)")


def _follow(client, sid: str, s: SubmitSection) -> int:
    """Print new log text until the job ends; 0 if it SUCCEEDED."""
    start, shown = time.monotonic(), 0
    while True:
        status = str(client.get_job_status(sid).value)
        logs = client.get_job_logs(sid)
        if len(logs) > shown:
            print(logs[shown:], end="", flush=True)
            shown = len(logs)
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            info = client.get_job_info(sid)
            print(f"\njob {sid}: {status}" + (f" ({info.message})" if info.message and status != "SUCCEEDED" else ""))
            return 0 if status == "SUCCEEDED" else 1
        if s.timeout_s and time.monotonic() - start > s.timeout_s:
            print(f"\nstopped following {sid} after {s.timeout_s:.0f} s; it is still {status}")
            return 3
        time.sleep(s.poll_s)


def submit_once(client, entry: str, env: dict, sid: str, s: SubmitSection, metadata: dict[str, str],
                hint: str) -> str:
    """Submit under ``sid``; if another ``synthface submit`` of the same job got there between
    our status check and now, Ray refuses the id: report that as a refusal, not a traceback."""
    try:
        return client.submit_job(entrypoint=entry, runtime_env=env, submission_id=sid, metadata=metadata,
                                 entrypoint_num_cpus=s.entrypoint_num_cpus or None,
                                 entrypoint_num_gpus=s.entrypoint_num_gpus or None)
    except RuntimeError as exc:
        if "already exists" not in str(exc):
            raise
        raise sub.SubmitRefused(f"job {sid} was submitted by someone else a moment ago (the same job file "
                                f"and config): nothing was sent; follow it with {hint.format(id=sid)}") from None


def run(cfg: Config, dry_run: bool = False) -> int:
    from pathlib import Path

    s = cfg.submit
    if not s.job:
        raise config.ConfigError("give the job file: synthface submit jobs/JOB.yaml --address URL")
    address = sub.check_address(s.address)
    s.address = address
    sub.refuse_secret_sets(s.job_sets)  # before loading: a load error may quote a value
    job = load_job(s.job, s.job_sets, s.command, config_types=config_types())
    sub.refuse_secret_job(job)
    env = sub.runtime_env(s.working_dir, s.pip, s.env_vars, s.excludes)
    entry = sub.entrypoint(job, Path(env["working_dir"]))
    base = sub.stable_id(job, s.id_prefix)
    if dry_run:
        print(f"# dry run of `synthface submit`: nothing is sent\n# address: {address}\n# submission id: "
              f"{base} (or its next attempt)\n# entrypoint: {entry}\n# runtime_env: {env}")
        return 0
    token = sub.find_token()
    client = _client(address, token)
    decision = sub.next_attempt(base, _statuses(client), follow_hint(address, bool(token)))
    sid = submit_once(client, entry, env, decision.submission_id, s,
                      {"synthface_command": job.command, "job_file": str(job.path), "attempt": str(decision.attempt)},
                      follow_hint(address, bool(token)))
    _print_submitted(sid, s, decision, bool(token))
    return _follow(client, sid, s) if s.follow else 0
