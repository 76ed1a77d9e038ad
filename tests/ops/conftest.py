"""A second, real Ray head for the operations tests: started with `ray start --head --block` on
loopback with explicit ports, its own temp dir and token authentication on; stopped by signalling
only the processes of the session it was started in (never `ray stop`)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

PORT_FLAGS = ("--port", "--dashboard-port", "--metrics-export-port", "--dashboard-agent-listen-port",
              "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--ray-client-server-port",
              "--node-manager-port", "--object-manager-port")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def session_pids(sid: int) -> list[int]:
    """Every live process of session ``sid`` (field 6 of /proc/PID/stat)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(entry))
    return out


def stop_session(sid: int, grace_s: float = 15.0) -> None:
    """SIGTERM every process of the session, then SIGKILL what is left after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_pids(sid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not session_pids(sid):
            return


@dataclass
class Head:
    address: str  # dashboard URL
    token: str
    metrics_port: int
    temp_dir: str
    sid: int

    def get(self, path: str, token: str | None = None) -> tuple[int, str]:
        req = urllib.request.Request(self.address + path)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
            return resp.read().decode()


def _wait_up(head: Head, log: Path, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if head.get("/api/jobs/", head.token)[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the Ray head did not come up in {timeout_s} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def ray_head():
    """A token-authenticated local Ray head (2 CPUs) reachable only on 127.0.0.1 (dashboard), for
    the tests of one module (only test_submit_cluster.py uses it): stopped when they are done, so
    its idle processes do not take CPU from the rest of the suite on a 2-core machine."""
    temp = tempfile.mkdtemp(prefix="sfhead", dir="/tmp")  # short: Ray's socket paths are limited
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    lo = 20000 + secrets.randbelow(200) * 100  # workers' ports: an explicit range of 100
    hi = lo + 99
    token = secrets.token_hex(16)
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    env.pop("RAY_ADDRESS", None)
    args = [str(Path(bin_dir) / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
            "--dashboard-host", "127.0.0.1", "--temp-dir", temp, "--num-cpus", "2", "--num-gpus", "0",
            "--include-dashboard", "true", "--disable-usage-stats",
            "--min-worker-port", str(lo), "--max-worker-port", str(hi)]
    for flag, port in ports.items():
        args += [flag, str(port)]
    log = Path(temp) / "ray-start.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(args, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    head = Head(f"http://127.0.0.1:{ports['--dashboard-port']}", token, ports["--metrics-export-port"],
                temp, proc.pid)
    try:
        _wait_up(head, log, proc)
        yield head
    finally:
        stop_session(proc.pid, grace_s=3.0)  # some of Ray's processes sit out SIGTERM's 15 s: nothing to keep here
        proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)
