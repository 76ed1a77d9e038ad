"""Kill trials of ``synthface generate`` (issue 21): N runs killed with SIGKILL at a shard count,
each checked against an uninterrupted reference run.

    python benchmarks/kill_trials.py [--config synthface_ray/demo_jobs/generate.yaml]
        [--set key=value ...] [--trials 10] [--seed 0] [--root runs/kill_trials]
        [--modes driver,actor,overwrite,s3] [--json PATH] [--ray-address ADDR]

First a reference run of the config, in this process (``<root>/reference/<output.name>``; a
complete one is reused: ``generate`` finds nothing to do, and refuses a folder holding another
job: delete it then), gives the bytes every trial must reproduce. Trial ``i`` takes the mode
``modes[i % len(modes)]`` and a kill point ``k``, a shard count drawn from ``random.Random(seed)``
in ``[1, shards - 1]``, and writes to ``<root>/trial-NN-<mode>/`` (its YAML and run logs beside
the dataset):

* ``driver``: ``python -m synthface_ray.cli generate --config <trial yaml>`` as a subprocess,
  SIGKILLed (``os.kill``) once ``k`` shards (``part-*.parquet``) are committed, then re-run to
  completion (the re-run must print ``resuming``);
* ``actor``: one generator actor SIGKILLs itself (``fault.mode=kill``, once: ``fault.marker``)
  when it receives a shard after ``max(1, k // pool.actors)`` shards of its own and at least that
  many are committed; the run must complete by itself (Ray Data restarts the actor);
* ``overwrite``: the reference copied into the trial folder (a complete dataset), run with
  ``output.overwrite=true`` and SIGKILLed once the hidden replacement ``.<name>.replacing``
  holds ``k`` shards; right after the kill the old dataset must still be complete and
  byte-identical; then re-run with overwrite to completion;
* ``s3`` (only when ``moto`` is importable): ``driver`` with the output on a moto S3 server this
  script runs on 127.0.0.1 (credentials through the AWS_* environment variables).

Verdict of a trial, once complete: a manifest; exactly the planned rows (the reference's when a
consistency gate drops rows) and no duplicate ``row_id``; the same shard files as the reference,
byte for byte; the manifest listing every file with its sha256 and size; no ``.<name>.replacing``
or ``.<name>.replaced`` left. The table gives the shards committed when the kill landed, the
wall time from the kill to the completed dataset and how many of the processes below a killed
driver (the local Ray it started) were still alive when the re-run started, and how long after
the kill the last of them was seen. Exit code 1 if any trial fails, 2 if the reference cannot
be made.

Ray: each ``synthface generate`` subprocess starts its own local Ray, unless ``--ray-address``
(or ``RAY_ADDRESS`` in the environment, or a ``ray start`` on this machine) gives it a cluster
to join; the reference run in this process does the same and shuts a Ray it started down
before the trials. A driver SIGKILLed with its own local Ray leaves most of that Ray behind for
about a minute (measured on 2 cores: 15-19 of 24 processes, the generator actors among them,
gone ~62 s after the kill). The re-run does not wait for them: it starts a Ray of its own, and
a leftover actor can only write shards under their names with the same bytes; they cost the
re-run CPU, which ``kill->done`` includes. With ``--ray-address`` the drivers join that cluster,
which ends a killed driver's job and its actors; ``s3`` trials then need the AWS_* variables
of ``S3_ENV`` (any values: moto checks none) on the cluster's workers.

The grid image is off in every run (not part of the dataset's bytes); ``fault.*`` and
``output.overwrite`` of the config are reset. Credentials for S3 outputs go through the
environment, not ``--set`` (a dumped trial config hides them).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import pyarrow.parquet as pq

from synthface_ray import config, storage
from synthface_ray.data.faces import MANIFEST, open_faces
from synthface_ray.generate import shards
from synthface_ray.generate.config import Config
from synthface_ray.mining.plan import ROW_ID

DEFAULT_CONFIG = "synthface_ray/demo_jobs/generate.yaml"
MODES = ("driver", "actor", "overwrite", "s3")
S3_ENV = {"AWS_ACCESS_KEY_ID": "kill-trials-key", "AWS_SECRET_ACCESS_KEY": "kill-trials-secret",
          "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "kill-trials"
POLL_S = 0.05  # how often a local output folder is listed while waiting for the kill point


class TrialFailed(Exception):
    """A check of a trial did not hold; the message is the verdict's reason."""


def require(ok: bool, reason: str) -> None:
    if not ok:
        raise TrialFailed(reason)


@dataclass
class Trial:
    index: int
    mode: str
    k: int
    shards: int
    at: int | None = None  # shards committed when the kill landed
    verdict: str = "FAIL"
    reason: str = ""
    rows: int | None = None
    kill_to_done_s: float | None = None
    total_s: float | None = None
    ray_procs: int | None = None  # processes below the driver when it was killed
    lingering: int | None = None  # how many of them were alive when the re-run started
    lingered_s: float | None = None  # how long after the kill the last of them was still alive
    lingering_names: list[str] = field(default_factory=list)  # what those were (command lines, cut)
    logs: list[str] = field(default_factory=list)


@dataclass
class Context:
    """What every trial shares: the base config (plain data), the reference's bytes and rows."""

    args: argparse.Namespace
    root: Path
    base: dict
    name: str
    env: dict
    ref_files: dict[str, bytes] = field(default_factory=dict)
    expected_ids: list[int] = field(default_factory=list)
    s3: dict | None = None  # {"server", "endpoint", "store"} once an s3 trial started moto


# configs and subprocesses ---------------------------------------------------------------------
def base_config(args: argparse.Namespace) -> dict:
    """The config with ``--set`` applied, grid off, no fault and no overwrite, as plain data."""
    cfg = config.load(Config, args.config, args.set)
    cfg.grid.enabled = False
    cfg.fault = type(cfg.fault)()
    cfg.output.overwrite = False
    return config.to_dict(cfg)


def write_job(ctx: Context, folder: Path, **sets) -> Path:
    """``<folder>/job.yaml``: the base config with dotted ``sets`` (checked by loading it)."""
    cfg = config.from_dict(Config, config.apply_dotted(ctx.base, sets))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.yaml"
    path.write_text(config.dump_yaml(cfg))
    return path


def start(job: Path, log: Path, env: dict) -> subprocess.Popen:
    """``synthface generate --config job`` as a subprocess, its output to ``log``."""
    with open(log, "w") as fh:
        return subprocess.Popen([sys.executable, "-m", "synthface_ray.cli", "generate", "--config", str(job)],
                                env=env, stdout=fh, stderr=subprocess.STDOUT)


def tail(log: Path, lines: int = 3) -> str:
    text = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return " | ".join(line.strip() for line in text[-lines:])


def run_to_end(proc: subprocess.Popen, log: Path, timeout: float, watch=None) -> float:
    """Wait for ``proc`` (calling ``watch()`` every poll); fails the trial on a non-zero exit or
    a timeout. Returns the time it ended (``time.monotonic``)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise TrialFailed(f"timed out after {timeout:.0f} s ({log})")
        if watch:
            watch()
        time.sleep(0.2)
    require(proc.returncode == 0, f"exit code {proc.returncode} ({log}: {tail(log)})")
    return time.monotonic()


# processes ------------------------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (psutil)."""
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def process_name(pid: int) -> str:
    """The start of ``pid``'s command line (Ray names its workers ``ray::<Actor>``)."""
    try:
        argv = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"
    if not argv:
        return "?"
    first = argv[0].split(" (", 1)[0].split()  # "ray-dashboard-NodeHead-0 (python ...)": the title
    name = os.path.basename(first[0]) if first else "?"
    if name.startswith("python"):  # a Python helper: name its script or module
        name = next((os.path.basename(a) for a in argv[1:] if not a.startswith("-")), name)
    return name[:48]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Leftovers:
    """The killed driver's Ray processes: how many live on, and until when."""

    def __init__(self, pids: list[int], killed_at: float) -> None:
        self.pids, self.total, self.killed_at, self.last_seen = pids, len(pids), killed_at, None

    def poll(self) -> int:
        living = [p for p in self.pids if alive(p)]
        if living:
            self.last_seen = time.monotonic() - self.killed_at
        self.pids = living
        return len(living)


def wait_for_shards(proc: subprocess.Popen, loc: storage.Location, k: int, timeout: float, log: Path) -> None:
    """Poll ``loc`` until ``k`` shards are committed while ``proc`` runs."""
    deadline = time.monotonic() + timeout
    while len(shards.committed(loc)) < k:
        require(proc.poll() is None, f"the driver ended (exit {proc.returncode}) before {k} shards "
                                     f"were committed: no kill happened ({log}: {tail(log)})")
        require(time.monotonic() < deadline, f"no {k} shards after {timeout:.0f} s ({log})")
        time.sleep(POLL_S if not loc.is_s3 else 4 * POLL_S)


def kill_driver(proc: subprocess.Popen, loc: storage.Location, trial: Trial, log: Path,
                timeout: float) -> Leftovers:
    """Wait for ``trial.k`` shards under ``loc``, then SIGKILL the driver (its pid only)."""
    wait_for_shards(proc, loc, trial.k, timeout, log)
    tree = descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    require(proc.returncode == -signal.SIGKILL, f"the driver ended by itself (exit {proc.returncode}) "
                                                f"before the kill landed ({log}: {tail(log)})")
    trial.at = len(shards.committed(loc))
    return Leftovers(tree, killed)


# checks ---------------------------------------------------------------------------------------
def check_dataset(loc: storage.Location, store, ref_files: dict[str, bytes], expected_ids: list[int]) -> int:
    """The dataset at ``loc`` against the reference; returns its row count."""
    require(storage.exists(loc.join(MANIFEST)), f"no {MANIFEST} in {loc.uri}")
    manifest = storage.read_json(loc.join(MANIFEST))
    ids = open_faces(loc.uri, store).to_table(columns=[ROW_ID]).column(ROW_ID).to_pylist()
    dups = len(ids) - len(set(ids))
    require(dups == 0, f"{dups} duplicate row_id(s)")
    missing, extra = set(expected_ids) - set(ids), set(ids) - set(expected_ids)
    require(not missing and not extra, f"{len(ids)} rows: {len(missing)} planned missing, {len(extra)} unplanned")
    require(manifest["rows"] == len(ids), f"manifest says {manifest['rows']} rows, the files hold {len(ids)}")
    files = {p.rsplit("/", 1)[-1]: storage.read_bytes(storage.Location(loc.fs, p, p))
             for p in storage.list_files(loc, ".parquet")}
    require(sorted(files) == sorted(ref_files), f"shards {sorted(files)} != the reference's {sorted(ref_files)}")
    differ = [n for n in sorted(files) if files[n] != ref_files[n]]
    require(not differ, f"not byte-identical to the reference: {differ}")
    listed = {f["path"]: f for f in manifest["files"]}
    require(sorted(listed) == sorted(files), f"manifest lists {sorted(listed)}, the folder holds {sorted(files)}")
    bad = [n for n, f in listed.items()
           if f["sha256"] != hashlib.sha256(files[n]).hexdigest() or f["bytes"] != len(files[n])]
    require(not bad, f"manifest sha256/bytes do not match {bad}")
    return len(ids)


def check_no_leftovers(loc: storage.Location) -> None:
    """Neither the replacement an overwrite writes nor the old folder it moves aside is left."""
    new = storage.replacement_of(loc)
    old = storage.Location(new.fs, new.path.removesuffix(".replacing") + ".replaced",
                           new.uri.removesuffix(".replacing") + ".replaced")
    for sibling in (new, old):
        left = storage.list_all(sibling)
        require(not left, f"{sibling.uri} left with {len(left)} file(s)")


def verdict(ctx: Context, trial: Trial, loc: storage.Location, store=None) -> None:
    trial.rows = check_dataset(loc, store, ctx.ref_files, ctx.expected_ids)
    check_no_leftovers(loc)
    trial.verdict, trial.reason = "PASS", ""


def check_resumed(log: Path) -> None:
    require("resuming" in log.read_text(errors="replace"), f"the re-run did not resume ({log})")


# the trials -----------------------------------------------------------------------------------
def killed_then_rerun(ctx: Context, trial: Trial, folder: Path, job: Path, watched: storage.Location,
                      env: dict, after_kill=None) -> None:
    """Run ``job``, SIGKILL the driver once ``watched`` holds ``trial.k`` shards, call
    ``after_kill()``, re-run ``job`` to completion (it must resume)."""
    log1, log2 = folder / "run-1-killed.log", folder / "run-2-rerun.log"
    trial.logs += [str(log1), str(log2)]
    leftovers = kill_driver(start(job, log1, env), watched, trial, log1, ctx.args.timeout)
    print(f"  driver SIGKILLed with {trial.at} of {trial.shards} shards committed", flush=True)
    if after_kill:
        after_kill()
    trial.ray_procs, trial.lingering = leftovers.total, leftovers.poll()
    trial.lingering_names = sorted(process_name(p) for p in leftovers.pids)
    if trial.lingering:
        names = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in Counter(trial.lingering_names).items())
        print(f"  {trial.lingering} of the {trial.ray_procs} processes below the killed driver still run: {names}",
              flush=True)
    end = run_to_end(start(job, log2, env), log2, ctx.args.timeout, leftovers.poll)
    leftovers.poll()
    trial.lingered_s = leftovers.last_seen
    trial.kill_to_done_s = end - leftovers.killed_at
    check_resumed(log2)


def run_driver(ctx: Context, trial: Trial, folder: Path) -> None:
    job = write_job(ctx, folder, **{"output.path": str(folder)})
    loc = storage.resolve(str(folder / ctx.name))
    killed_then_rerun(ctx, trial, folder, job, loc, ctx.env)
    verdict(ctx, trial, loc)


def run_overwrite(ctx: Context, trial: Trial, folder: Path) -> None:
    shutil.copytree(ctx.root / "reference" / ctx.name, folder / ctx.name)
    job = write_job(ctx, folder, **{"output.path": str(folder), "output.overwrite": True})
    loc = storage.resolve(str(folder / ctx.name))

    def old_dataset_is_whole() -> None:
        try:
            check_dataset(loc, None, ctx.ref_files, ctx.expected_ids)
        except TrialFailed as exc:
            raise TrialFailed(f"right after the kill, the old dataset: {exc}") from None

    killed_then_rerun(ctx, trial, folder, job, storage.replacement_of(loc), ctx.env, old_dataset_is_whole)
    verdict(ctx, trial, loc)


class ActorKill:
    """Watches the fault marker (it holds the actor's pid): when that process is gone, the
    shards committed then are the kill point."""

    def __init__(self, marker: Path, loc: storage.Location) -> None:
        self.marker, self.loc, self.pid, self.killed, self.at = marker, loc, None, None, None

    def poll(self) -> None:
        if self.killed is not None or not self.marker.exists():
            return
        if self.pid is None:
            text = self.marker.read_text().strip()
            self.pid = int(text) if text.isdigit() else None
        if self.pid is not None and not alive(self.pid):
            self.killed, self.at = time.monotonic(), len(shards.committed(self.loc))


def run_actor(ctx: Context, trial: Trial, folder: Path) -> None:
    marker = folder / "fault-fired"
    after = max(1, trial.k // ctx.base["pool"]["actors"])
    job = write_job(ctx, folder, **{"output.path": str(folder), "fault.after_shards": after,
                                    "fault.mode": "kill", "fault.marker": str(marker)})
    loc = storage.resolve(str(folder / ctx.name))
    log = folder / "run-1.log"
    trial.logs.append(str(log))
    watch = ActorKill(marker, loc)
    end = run_to_end(start(job, log, ctx.env), log, ctx.args.timeout, watch.poll)
    require(marker.exists(), f"the fault never fired (no actor received a shard after {after} of its own)")
    print(f"  actor {watch.pid} SIGKILLed itself with {watch.at} of {trial.shards} shards committed", flush=True)
    trial.at = watch.at
    trial.kill_to_done_s = end - watch.killed if watch.killed is not None else None
    verdict(ctx, trial, loc)


def start_s3(ctx: Context) -> dict:
    """A moto S3 server on 127.0.0.1 (once per run of this script) with the bucket."""
    if ctx.s3 is None:
        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per S3 request
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=BUCKET)
        store = storage.StorageConfig(endpoint_url=endpoint, region="us-east-1",
                                      access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                                      secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"])
        ctx.s3 = {"server": server, "endpoint": endpoint, "store": store}
    return ctx.s3


def run_s3(ctx: Context, trial: Trial, folder: Path) -> None:
    s3 = start_s3(ctx)
    uri = f"s3://{BUCKET}/trial-{trial.index:02d}"
    storage.remove_folder(storage.resolve(uri, s3["store"]))
    job = write_job(ctx, folder, **{"output.path": uri, "storage.endpoint_url": s3["endpoint"],
                                    "storage.region": "us-east-1"})
    loc = storage.resolve(f"{uri}/{ctx.name}", s3["store"])
    killed_then_rerun(ctx, trial, folder, job, loc, {**ctx.env, **S3_ENV})
    verdict(ctx, trial, loc, s3["store"])


RUNNERS = {"driver": run_driver, "actor": run_actor, "overwrite": run_overwrite, "s3": run_s3}


def run_trial(ctx: Context, trial: Trial) -> None:
    """One trial: its folder made fresh, the mode's runner, the verdict (never raises)."""
    folder = ctx.root / f"trial-{trial.index:02d}-{trial.mode}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"trial {trial.index} ({trial.mode}): kill point k = {trial.k} of {trial.shards} shards -> {folder}",
          flush=True)
    start_time = time.monotonic()
    try:
        RUNNERS[trial.mode](ctx, trial, folder)
    except TrialFailed as exc:
        trial.reason = str(exc)
    except Exception as exc:  # a crash of this script's own checks is a failed trial too
        trial.reason = f"{type(exc).__name__}: {exc}"
    trial.total_s = time.monotonic() - start_time
    done = f"{trial.kill_to_done_s:.1f} s from the kill to complete" if trial.kill_to_done_s is not None else ""
    print(f"  {trial.verdict}{': ' + trial.reason if trial.reason else ''} ({trial.rows} rows; {done}; "
          f"trial {trial.total_s:.1f} s)", flush=True)


# the reference, the report, main ----------------------------------------------------------------
@contextlib.contextmanager
def script_ray(address: str | None):
    """Ray for the reference run in this process: ``address`` (or ``RAY_ADDRESS``, or a new
    local Ray, started by the run only if it has shards to generate), shut down afterwards if
    this script started it, so the trials' drivers start or join their own."""
    import ray

    owned = not ray.is_initialized()
    if owned and address:
        ray.init(address=address)
    try:
        yield
    finally:
        if owned and ray.is_initialized():
            ray.shutdown()


@contextlib.contextmanager
def output_to(log: Path):
    """This process's stdout and stderr (file descriptors: Ray's C++ core writes there too) go to
    ``log`` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, "w") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def make_reference(ctx: Context) -> None:
    """The uninterrupted run, in this process (a complete one is reused: ``generate`` finds
    nothing to do and starts no Ray): its shard bytes and row ids."""
    from synthface_ray.commands import generate

    folder = ctx.root / "reference"
    job = write_job(ctx, folder, **{"output.path": str(folder)})
    loc = storage.resolve(str(folder / ctx.name))
    reused, began = storage.exists(loc.join(MANIFEST)), time.monotonic()
    print(f"reference: {'checking' if reused else 'generating'} {loc.uri} (log: {folder / 'run.log'})", flush=True)
    with output_to(folder / "run.log"), script_ray(ctx.args.ray_address):
        require(generate.run(config.load(Config, str(job))) == 0, "synthface generate failed")
    ctx.ref_files = {p.rsplit("/", 1)[-1]: Path(p).read_bytes() for p in storage.list_files(loc, ".parquet")}
    cfg = config.from_dict(Config, ctx.base)
    if cfg.gate.enabled:  # rows the gate dropped are not in any run: the reference's rows are the plan
        ids = open_faces(loc.uri).to_table(columns=[ROW_ID]).column(ROW_ID).to_pylist()
    else:
        ids = pq.read_table(cfg.input.plan, columns=[ROW_ID]).column(ROW_ID).to_pylist()
    ctx.expected_ids = sorted(ids)
    rows = check_dataset(loc, None, ctx.ref_files, ctx.expected_ids)
    how = "reused" if reused else f"generated in {time.monotonic() - began:.1f} s"
    print(f"reference: {loc.uri}: {rows} rows in {len(ctx.ref_files)} shards ({how})", flush=True)


def fmt(value, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def report(trials: list[Trial]) -> str:
    """The final table, the failures' reasons and ``N of N passed``."""
    head = f"{'trial':>5}  {'mode':<9}  {'k/shards':>8}  {'killed at':>9}  {'verdict':<7}  {'rows':>5}  " \
           f"{'kill->done s':>12}  {'trial s':>7}  driver's child processes alive at the re-run"
    lines = [head, "-" * len(head)]
    for t in trials:
        linger = "-" if t.lingering is None else f"{t.lingering} of {t.ray_procs}" + \
            (f" (last seen {t.lingered_s:.0f} s after the kill)" if t.lingered_s else "")
        lines.append(f"{t.index:>5}  {t.mode:<9}  {f'{t.k}/{t.shards}':>8}  {fmt(t.at):>9}  {t.verdict:<7}  "
                     f"{fmt(t.rows):>5}  {fmt(t.kill_to_done_s, '.1f'):>12}  {fmt(t.total_s, '.1f'):>7}  {linger}")
    lines += [f"trial {t.index} FAIL: {t.reason}" for t in trials if t.verdict != "PASS"]
    lines.append(f"{sum(t.verdict == 'PASS' for t in trials)} of {len(trials)} passed")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--config", default=DEFAULT_CONFIG, help="a synthface generate config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    p.add_argument("--root", default="runs/kill_trials", help="reference and trial folders go here")
    p.add_argument("--modes", default="all", help=f"comma list of {','.join(MODES)} (all: s3 if moto is importable)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--ray-address", help="RAY_ADDRESS for every run (default: each starts its own local Ray)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed to each generate run")
    return p.parse_args(argv)


def modes_of(text: str) -> list[str]:
    try:
        import moto  # noqa: F401
        have_moto = True
    except ImportError:
        have_moto = False
    if text == "all":
        return [m for m in MODES if m != "s3" or have_moto]
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise SystemExit(f"--modes {text!r}: choose from {', '.join(MODES)} (comma-separated) or all")
    if "s3" in modes and not have_moto:
        raise SystemExit("--modes s3 needs moto (pip install 'moto[server]')")
    return modes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    modes = modes_of(args.modes)
    root = Path(args.root).resolve()
    env = {**os.environ, **({"RAY_ADDRESS": args.ray_address} if args.ray_address else {})}
    ctx = Context(args, root, base_config(args), "", env)
    ctx.name = ctx.base["output"]["name"]
    try:
        make_reference(ctx)
    except Exception as exc:  # noqa: BLE001 - any reason the reference cannot be made ends the script
        print(f"kill_trials: the reference run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    n = len(ctx.ref_files)
    if n < 2:
        print(f"kill_trials: the reference has {n} shard(s); lower output.rows_per_file", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    trials = [Trial(i + 1, modes[i % len(modes)], rng.randint(1, n - 1), n) for i in range(args.trials)]
    try:
        for trial in trials:
            run_trial(ctx, trial)
    finally:
        if ctx.s3:
            ctx.s3["server"].stop()
    print(report(trials))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "config": args.config, "sets": args.set, "seed": args.seed, "root": str(root), "modes": modes,
            "shards": n, "rows": len(ctx.expected_ids), "passed": sum(t.verdict == "PASS" for t in trials),
            "trials": [asdict(t) for t in trials]}, indent=2))
    return 0 if all(t.verdict == "PASS" for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
