"""Starting Ray for a command, with nothing more exposed than the run needs.

``init_ray()`` connects to a cluster when there is one (``RAY_ADDRESS``, or a ``ray start`` on
this machine): that cluster's own settings apply. Otherwise it starts a local Ray on loopback:
Ray binds its metrics endpoints (no authentication; they name the runs) to loopback only when
the node's address is a loopback one, and on Linux it resolves ``127.0.0.1`` to the machine's
routable address, so the local node address is pinned to ``127.0.0.1`` while Ray starts.
``SYNTHFACE_RAY_HOST=node`` keeps Ray's default (the node's routable address, metrics on all
interfaces) for a Prometheus on another machine.

Ray 2.60 turns token authentication on for a new local Ray and writes a generated token to
``~/.ray/auth_token`` with the default umask (0644): readable by every user of the machine.
Before Ray starts, an existing token file is made 0600, and a missing one is created 0600 (in a
0700 ``~/.ray`` when that folder is new) with a token from the same generator Ray uses.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from synthface_ray.config import ConfigError

HOST_ENV = "SYNTHFACE_RAY_HOST"
HOST_MODES = ("loopback", "node")
TOKEN_FILE = Path(".ray") / "auth_token"


def host_mode(environ: Mapping[str, str]) -> str:
    """``loopback`` (default) or ``node``, from ``SYNTHFACE_RAY_HOST``."""
    mode = environ.get(HOST_ENV, "").strip().lower() or "loopback"
    if mode not in HOST_MODES:
        raise ConfigError(f"{HOST_ENV}={environ[HOST_ENV]!r} is not allowed: choose one of {list(HOST_MODES)} "
                          f"(loopback: a local Ray's metrics listen on 127.0.0.1 only; node: on all "
                          f"interfaces, for a Prometheus on another machine)")
    return mode


def token_path(environ: Mapping[str, str]) -> Path:
    """Where Ray reads and writes its default token: ``$HOME/.ray/auth_token``."""
    return Path(environ.get("HOME") or Path.home()) / TOKEN_FILE


def wants_default_token(environ: Mapping[str, str]) -> bool:
    """Whether a new local Ray reads (or generates) ``~/.ray/auth_token``: token mode (Ray's
    default for a local start) and no token given through the environment."""
    mode = environ.get("RAY_AUTH_MODE", "token").strip().lower()
    return mode == "token" and not environ.get("RAY_AUTH_TOKEN", "").strip() \
        and not environ.get("RAY_AUTH_TOKEN_PATH")


def secure_token_file(path: Path, create: bool) -> bool:
    """Make the token file at ``path`` readable by its owner only (0600); with ``create``, write
    a new token there first if there is none (the folder, if new, 0700). Returns whether the
    file exists afterwards."""
    if path.exists():
        if stat.S_IMODE(path.stat().st_mode) != 0o600:
            os.chmod(path, 0o600)
        return True
    if not create:
        return False
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))  # what ray's generate_new_authentication_token() writes
    return True


def starts_local_ray() -> bool:
    """Whether ``ray.init()`` would start a new local Ray (no ``RAY_ADDRESS``, no ``ray start``
    cluster on this machine), by Ray's own lookup."""
    if os.environ.get("RAY_ADDRESS", "").strip():
        return False
    from ray._private import services

    return services.canonicalize_bootstrap_address(None) is None


@contextlib.contextmanager
def loopback_node() -> Iterator[None]:
    """While Ray starts, its node address is 127.0.0.1 (as Ray does on macOS and Windows), so
    the metrics endpoints, the dashboard agent and the runtime-env agent bind to loopback."""
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def init_ray(environ: Mapping[str, str] | None = None, **kwargs) -> None:
    """``ray.init(**kwargs)`` unless Ray is up: a cluster if there is one, else a local Ray on
    loopback with its token file 0600 (see the module doc)."""
    import ray

    if ray.is_initialized():
        return
    environ = os.environ if environ is None else environ
    if not starts_local_ray():
        ray.init(**kwargs)
        return
    mode = host_mode(environ)
    token = token_path(environ) if wants_default_token(environ) else None
    if token is not None:
        secure_token_file(token, create=True)
    with loopback_node() if mode == "loopback" else contextlib.nullcontext():
        ray.init(**kwargs)
    if token is not None:
        secure_token_file(token, create=False)
