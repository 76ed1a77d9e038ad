"""``synthface export``: faces table -> image folders or insightface RecordIO."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Literal

from synthface_ray import config, storage
from synthface_ray.commands.common import print_dry_run
from synthface_ray.data.formats import EXPORTERS
from synthface_ray.storage import StorageConfig

HELP = "export a faces table as image folders or insightface RecordIO (train.rec + train.idx)"
EXAMPLES = """\
  synthface export --from runs/toyfaces --format recordio --out runs/toyfaces-rec
  synthface export --from s3://bucket/generated --format folders --out /data/synthetic"""
SHORTCUTS = {"--from": "input.path", "--format": "output.format", "--out": "output.path"}


@dataclass
class InputConfig:
    path: str = ""
    allow_incomplete: bool = False  # read a dataset without its manifest (an interrupted run), with a warning


@dataclass
class OutputConfig:
    format: Literal["folders", "recordio"] = "recordio"
    path: str = ""
    overwrite: bool = False
    verify: bool = True  # decode every image and skip (or, strict, refuse) corrupt ones
    strict: bool = False

    def __post_init__(self) -> None:
        config.check_choice("output.format", self.format, sorted(EXPORTERS))


@dataclass
class Config:
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)


def run(cfg: Config, dry_run: bool = False) -> int:
    for key, value, flag in (("input.path", cfg.input.path, "--from"), ("output.path", cfg.output.path, "--out")):
        if not value:
            raise config.ConfigError(f"{key} is not set: pass {flag} PATH")
    src = storage.resolve(cfg.input.path, cfg.storage)
    out = storage.resolve(cfg.output.path, cfg.storage)
    if dry_run:
        print_dry_run("export", cfg, [f"read faces from {src.uri}", f"write {cfg.output.format} to {out.uri}"])
        return 0
    exporter = EXPORTERS[cfg.output.format]
    summary, report = exporter(src.uri, out.uri, cfg.storage, overwrite=cfg.output.overwrite,
                               verify=cfg.output.verify, strict=cfg.output.strict,
                               allow_incomplete=cfg.input.allow_incomplete)
    print(f"exported {summary} from {src.uri} to {out.uri}")
    if report.skipped:
        print(report.summary(), file=sys.stderr)
    return 0
