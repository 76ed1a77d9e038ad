"""``synthface import``: image folders or insightface RecordIO -> faces table."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Literal

from synthface_ray import config, storage
from synthface_ray.commands.common import OutputConfig, print_dry_run, write_resolved_config
from synthface_ray.data.formats import IMPORTERS, import_faces
from synthface_ray.data.formats.common import ImportOptions
from synthface_ray.storage import StorageConfig


@dataclass
class InputConfig(ImportOptions):
    """What to import. ``path`` is a folder root, or a ``.rec`` file (its ``.idx`` beside it)."""

    format: Literal["folders", "recordio"] = "folders"
    path: str = ""
    idx: str | None = None  # recordio: index file; default <path without .rec>.idx

    def __post_init__(self) -> None:
        super().__post_init__()
        config.check_choice("input.format", self.format, sorted(IMPORTERS))


@dataclass
class Config:
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=lambda: OutputConfig(path="runs/imported"))
    storage: StorageConfig = field(default_factory=StorageConfig)


def run(cfg: Config, dry_run: bool = False) -> int:
    if not cfg.input.path:
        raise config.ConfigError("input.path is not set: pass --from PATH (a folder root or a train.rec file)")
    src = storage.resolve(cfg.input.path, cfg.storage)
    out = storage.resolve(cfg.output.path, cfg.storage)
    if dry_run:
        print_dry_run("import", cfg, [f"read {cfg.input.format} from {src.uri}",
                                      f"write faces shards, manifest.json, config.yaml to {out.uri}"])
        return 0
    opts = ImportOptions(cfg.input.resolution, cfg.input.source, cfg.input.strict,
                         cfg.input.label_from, cfg.output.rows_per_shard)
    start = time.perf_counter()
    manifest, report = import_faces(
        cfg.input.format, src.uri, out.uri, opts, cfg.storage, overwrite=cfg.output.overwrite,
        idx=cfg.input.idx, before_manifest=lambda folder: write_resolved_config(folder, cfg, "import"),
        command="import", config=config.to_dict(cfg))
    print(f"imported {manifest['rows']} images with {manifest.get('identities', '?')} identities "
          f"from {src.uri} to {out.uri} in {time.perf_counter() - start:.1f} s")
    if report.skipped:
        print(report.summary(), file=sys.stderr)
    return 0
