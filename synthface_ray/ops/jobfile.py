"""Job files: a YAML in ``jobs/`` (or ``tuning/``) whose first line names its command,
``# synthface COMMAND --config ...``. Read, checked against the command's config type and
fingerprinted here; pure (no Ray), shared by ``synthface submit`` and ``synthface pipeline``."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthface_ray import config

HEADER = re.compile(r"#\s*synthface\s+([\w-]+)\s+--config\b")
#: commands that never run as a submitted job step (they submit or chain jobs themselves)
NOT_A_JOB = ("submit",)


@dataclass(frozen=True)
class JobFile:
    """A job file loaded into its command's config: ``command``, ``path``, the ``overrides``
    applied, and the resolved ``cfg``."""

    command: str
    path: Path
    overrides: tuple[str, ...]
    cfg: Any

    def digest(self) -> str:
        """12 hex digits of SHA-256 over the command and the resolved config (secrets redacted):
        the same job resolves to the same digest on every machine."""
        body = json.dumps({"command": self.command, "config": config.to_dict(self.cfg)},
                          sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:12]


def header_command(path: Path) -> str | None:
    """The command named on line 1 (``# synthface COMMAND --config ...``), or None."""
    with open(path, encoding="utf-8") as fh:
        match = HEADER.match(fh.readline().strip())
    return match.group(1) if match else None


def load_job(path: str | Path, overrides: tuple[str, ...] | list[str] = (), command: str | None = None, *,
             config_types: Mapping[str, Callable[[], type]]) -> JobFile:
    """Read a job file and load it into its command's config type (``config_types``: command
    name -> a function returning its config class, e.g. ``commands.catalog.config_types()``).

    Raises FileNotFoundError for a missing file and ConfigError for a file that is not a
    synthface job (no header: e.g. a cluster YAML), a ``command`` that differs from the header,
    or a body that does not load into the command's config (a job YAML of the wrong type)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"job file {path} not found (jobs/*.yaml lists the shipped jobs)")
    named = header_command(path)
    if named is None:
        raise config.ConfigError(
            f"{path} is not a synthface job file: its first line must be "
            f"`# synthface COMMAND --config {path}` (cluster YAMLs are launched with `ray up`, "
            f"KubeRay manifests with `kubectl apply`)")
    if command and command != named:
        raise config.ConfigError(f"{path} is a `synthface {named}` job, not `synthface {command}`: "
                                 f"drop the command setting or pick a {command} job file")
    if named not in config_types or named in NOT_A_JOB:
        runnable = sorted(set(config_types) - set(NOT_A_JOB))
        raise config.ConfigError(f"{path} names `synthface {named}`, which is not a job command; "
                                 f"job commands: {runnable}")
    try:
        cfg = config.load(config_types[named](), str(path), list(overrides))
    except config.ConfigError as exc:
        raise config.ConfigError(f"{path} does not load as a `synthface {named}` job: {exc}") from exc
    return JobFile(named, path, tuple(overrides), cfg)
