"""What a command's own local Ray exposes (issue 21, item 7): its metrics endpoints listen on
loopback only, and the token Ray generates for it in ~/.ray/auth_token is readable by its owner
only. The last test starts a real local Ray in a subprocess with its own HOME."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from synthface_ray.config import ConfigError
from synthface_ray.ops import local_ray

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("value, expected", [(None, "loopback"), ("", "loopback"), ("Loopback", "loopback"),
                                             ("node", "node")])
def test_host_mode_is_loopback_unless_widened(value, expected):
    environ = {} if value is None else {local_ray.HOST_ENV: value}
    assert local_ray.host_mode(environ) == expected


def test_a_bad_host_mode_names_the_choices():
    with pytest.raises(ConfigError, match=r"SYNTHFACE_RAY_HOST='0.0.0.0' is not allowed: choose one of "
                                          r"\['loopback', 'node'\]"):
        local_ray.host_mode({local_ray.HOST_ENV: "0.0.0.0"})


def test_an_existing_token_file_is_made_owner_only(tmp_path):
    token = tmp_path / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("abc")
    os.chmod(token, 0o644)
    assert local_ray.secure_token_file(token, create=False)
    assert mode(token) == 0o600 and token.read_text() == "abc"


def test_a_missing_token_file_is_created_owner_only(tmp_path):
    token = tmp_path / "home" / ".ray" / "auth_token"
    assert not local_ray.secure_token_file(token, create=False) and not token.exists()
    old = os.umask(0o022)  # the usual umask: Ray's own open(path, "w") gives 0644 under it
    try:
        assert local_ray.secure_token_file(token, create=True)
    finally:
        os.umask(old)
    assert mode(token) == 0o600 and mode(token.parent) == 0o700
    assert len(token.read_text()) == 64 and int(token.read_text(), 16) >= 0


@pytest.mark.parametrize("environ, wanted", [
    ({}, True), ({"RAY_AUTH_MODE": "token"}, True), ({"RAY_AUTH_MODE": "disabled"}, False),
    ({"RAY_AUTH_TOKEN": "t"}, False), ({"RAY_AUTH_TOKEN_PATH": "/x"}, False),
])
def test_the_default_token_file_is_used_only_in_token_mode_without_a_given_token(environ, wanted):
    assert local_ray.wants_default_token(environ) is wanted


DRIVER = """
import json, sys, urllib.request
from ray._private import services
from synthface_ray.ops.local_ray import init_ray
routable = services.node_ip_address_from_perspective(None)
init_ray(num_cpus=1)
import ray
node = ray._private.worker._global_node
port = node.metrics_export_port
loopback = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).status
print(json.dumps({"node_ip": node.node_ip_address, "metrics_port": port, "routable": routable,
                  "loopback_status": loopback}), flush=True)
sys.stdin.readline()  # the test probes the other address meanwhile
ray.shutdown()
"""


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


@pytest.mark.slow
def test_a_local_ray_listens_on_loopback_and_keeps_its_token_private(tmp_path):
    """A real local Ray started by init_ray: metrics answer on 127.0.0.1 and not on the
    machine's routable address; the token Ray uses is 0600 in a 0700 ~/.ray."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", local_ray.HOST_ENV)}
    env["HOME"] = str(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        facts = json.loads(proc.stdout.readline())
        assert facts["node_ip"] == "127.0.0.1" and facts["loopback_status"] == 200
        if facts["routable"] != "127.0.0.1":  # a machine with a network address: not reachable there
            assert _status(f"http://{facts['routable']}:{facts['metrics_port']}/metrics") is None
        token = tmp_path / ".ray" / "auth_token"
        assert mode(token) == 0o600 and mode(token.parent) == 0o700
    finally:
        proc.communicate("\n", timeout=120)
    assert proc.returncode == 0
