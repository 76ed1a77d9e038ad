"""``synthface inspect``: summarise a faces dataset (rows, identities, sources, schema, manifest)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow.compute as pc

from synthface_ray import config, storage
from synthface_ray.commands.common import print_dry_run
from synthface_ray.data import faces, schema
from synthface_ray.data.transforms import DecodeReport, decode_column
from synthface_ray.storage import StorageConfig


@dataclass
class InputConfig:
    path: str = ""
    check_images: bool = False  # decode every image and report corrupt ones


@dataclass
class Config:
    input: InputConfig = field(default_factory=InputConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)


def run(cfg: Config, dry_run: bool = False) -> int:
    if not cfg.input.path:
        raise config.ConfigError("input.path is not set: synthface inspect PATH")
    if dry_run:
        print_dry_run("inspect", cfg, [f"read {storage.resolve(cfg.input.path, cfg.storage).uri}"])
        return 0
    dataset = faces.open_faces(cfg.input.path, cfg.storage, allow_incomplete=True)  # "complete" says which
    table = dataset.to_table(columns=[schema.LABEL, schema.SOURCE])
    sources = pc.value_counts(table.column(schema.SOURCE)).to_pylist()
    summary = {
        "uri": storage.resolve(cfg.input.path, cfg.storage).uri,
        "rows": table.num_rows,
        "identities": len(pc.unique(table.column(schema.LABEL))),
        "sources": {str(s["values"]): s["counts"] for s in sources},
        "schema": [f"{f.name}: {f.type}" for f in dataset.schema],
        "complete": faces.read_manifest(cfg.input.path, cfg.storage) is not None,
    }
    if cfg.input.check_images:
        report, offset = DecodeReport(), 0
        for batch in dataset.to_batches(columns=[schema.IMAGE]):
            decode_column(batch.column(schema.IMAGE), None, row_offset=offset, report=report)
            offset += batch.num_rows
        summary["images"] = report.summary()
    print(json.dumps(summary, indent=2))
    return 0
