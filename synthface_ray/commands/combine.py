"""``synthface combine``: several faces datasets as one (e.g. real + synthetic for CASD's
source-labelled training or SDA), each input's identities numbered apart and its source label set;
see :mod:`synthface_ray.data.combine`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from synthface_ray import config, storage
from synthface_ray.commands.common import OutputConfig, print_dry_run, write_resolved_config
from synthface_ray.config import check_choice, check_range
from synthface_ray.data.combine import combine, label_offsets, read_facts, shared_columns
from synthface_ray.progress import progress_bar
from synthface_ray.storage import StorageConfig


@dataclass
class InputSection:
    """One faces dataset (local or s3://); ``source``: the CASD source label its rows get (0 =
    real, 1.. = synthetic sources; null = keep each row's own)."""

    path: str = ""
    source: int | None = None

    def __post_init__(self) -> None:
        if not self.path:
            raise config.ConfigError("combine.inputs[].path is empty: give a faces dataset (local or s3://)")
        if self.source is not None:
            check_range("combine.inputs[].source", self.source, 0)


@dataclass
class CombineSection:
    """``inputs``: two or more faces datasets, in order; ``labels``: ``offset`` (each input's
    identities numbered after the previous inputs', so that they stay apart) or ``keep`` (as they
    are; refused when two inputs share a label)."""

    inputs: list[InputSection] = field(default_factory=list)
    labels: str = "offset"

    def __post_init__(self) -> None:
        check_choice("combine.labels", self.labels, ("offset", "keep"))


@dataclass
class Config:
    combine: CombineSection = field(default_factory=CombineSection)
    output: OutputConfig = field(default_factory=lambda: OutputConfig(path="runs/combined"))
    storage: StorageConfig = field(default_factory=StorageConfig)


def _check(cfg: Config) -> None:
    c = cfg.combine
    if len(c.inputs) < 2:
        raise config.ConfigError(f"combine.inputs has {len(c.inputs)} dataset(s): give two or more "
                                 "(e.g. --set 'combine.inputs=[{path: REAL, source: 0}, {path: SYN, source: 1}]')")
    out = storage.resolve(cfg.output.path, cfg.storage).uri.rstrip("/")
    for i in c.inputs:
        if storage.resolve(i.path, cfg.storage).uri.rstrip("/") == out:
            raise config.ConfigError(f"output.path={cfg.output.path} is also an input: write the combined "
                                     "dataset somewhere else")


def run(cfg: Config, dry_run: bool = False) -> int:
    _check(cfg)
    c = cfg.combine
    facts = [read_facts(i.path, cfg.storage) for i in c.inputs]
    offsets = label_offsets(facts, c.labels)
    sources = [i.source for i in c.inputs]
    columns, dropped = shared_columns(facts)
    lines = [f"{f.path}: {f.rows} rows, {len(f.labels)} identities (labels {int(f.labels[0])}.."
             f"{int(f.labels[-1])}) -> labels + {o}" + ("" if s is None else f", source {s}")
             for f, o, s in zip(facts, offsets, sources, strict=True)]
    lines.append(f"columns: {', '.join(columns)}" + (f"; dropped (not in every input, or of another type): "
                                                     f"{', '.join(dropped)}" if dropped else ""))
    if dry_run:
        print_dry_run("combine", cfg, lines + [f"write the combined faces dataset to {cfg.output.path}"])
        return 0
    print("\n".join(lines), flush=True)
    start, total = time.perf_counter(), sum(f.rows for f in facts)
    out = storage.resolve(cfg.output.path, cfg.storage)
    with progress_bar(total, "combine") as bar:
        manifest = combine(facts, offsets, sources, out, cfg.storage, cfg.output.rows_per_shard,
                           cfg.output.overwrite, before_manifest=lambda folder: write_resolved_config(folder, cfg, "combine"),
                           on_rows=bar.update, command="combine")
    print(f"combined {manifest['rows']} images of {manifest['identities']} identities from {len(facts)} "
          f"datasets into {out.uri} in {time.perf_counter() - start:.1f} s")
    return 0
