"""Pieces shared by the commands: output section, resolved-config writing, Parquet files, dry runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synthface_ray import config, storage
from synthface_ray.config import check_range
from synthface_ray.storage import Location


@dataclass
class OutputConfig:
    """Where a command writes its dataset."""

    path: str = "runs/out"
    overwrite: bool = False
    rows_per_shard: int = 10_000

    def __post_init__(self) -> None:
        check_range("output.rows_per_shard", self.rows_per_shard, 1)
        if not self.path:
            raise config.ConfigError("output.path is empty: give a local path or s3://bucket/prefix")


#: Parquet key-value metadata key of a single-file output's resolved config (a file has no folder
#: for config.yaml): ``pyarrow.parquet.read_schema(path).metadata[b"synthface.config"]``
CONFIG_METADATA_KEY = b"synthface.config"


def write_parquet(table, loc: Location, cfg: Any = None, command: str = "", row_group_size: int | None = None) -> None:
    """Write one Parquet file atomically (a hidden temp file renamed or uploaded at the end); with
    ``cfg``, its resolved config goes into the file's metadata under :data:`CONFIG_METADATA_KEY`."""
    import pyarrow.parquet as pq

    if cfg is not None:
        metadata = dict(table.schema.metadata or {})
        metadata[CONFIG_METADATA_KEY] = resolved_config_text(cfg, command).encode("utf-8")
        table = table.replace_schema_metadata(metadata)
    with storage.atomic_local_path(loc) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size)


#: the resolved config every output folder gets
CONFIG_FILE = "config.yaml"


def resolved_config_text(cfg: Any, command: str) -> str:
    """The resolved config (secrets redacted) as YAML that re-runs the job with ``--config``."""
    return f"# resolved config of `synthface {command}`; re-run with --config this-file\n" + config.dump_yaml(cfg)


def write_resolved_config(loc: Location, cfg: Any, command: str) -> None:
    """Save the resolved config as ``config.yaml`` in the output folder ``loc`` (atomically)."""
    storage.atomic_write_text(loc.join(CONFIG_FILE), resolved_config_text(cfg, command))


def print_dry_run(command: str, cfg: Any, plan: list[str]) -> None:
    print(f"# dry run of `synthface {command}`: nothing is written\n# resolved config:")
    print(config.dump_yaml(cfg), end="")
    store = getattr(cfg, "storage", None)
    if store is not None:
        print(f"# S3 access (for s3:// paths; secrets hidden): {storage.describe(store)}")
    print("# plan:")
    for line in plan:
        print(f"#   {line}")
