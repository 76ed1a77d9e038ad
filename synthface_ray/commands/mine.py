"""``synthface mine``: ScoreMix pairs / m-plets and NegFaceDiff negatives over an identities table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synthface_ray import storage
from synthface_ray.commands.common import (
    CONFIG_FILE,
    print_dry_run,
    resolved_config_text,
)
from synthface_ray.config import ConfigError, check_choice, check_range, to_dict
from synthface_ray.data.identities import read_identities
from synthface_ray.mining.negatives import negatives
from synthface_ray.mining.pairs import pair_distance, select_mplets, select_pairs
from synthface_ray.progress import progress_bar
from synthface_ray.storage import FileOutput, StorageConfig

# output folder: mixes.parquet, negatives.parquet and mining.json (written last: the folder is
# complete only with it)
MIXES_FILE, NEGATIVES_FILE, SUMMARY_FILE = "mixes.parquet", "negatives.parquet", "mining.json"


@dataclass
class InputSection:
    """``identities``: the identities table; ``generator``: an export, needed for the
    ``condition`` space (the generator's own context of each identity)."""

    identities: str = ""
    generator: str | None = None


@dataclass
class PairsSection:
    """``count`` mixes of ``m`` identities (2 = ScoreMix pairs; 3, 4 = m-plets), chosen far apart
    (``dist``; for m > 2 ``sum_max``) or close together (``close``; ``sum_min``) in ``space``:
    ``fr`` (the identities' embeddings, e.g. FR class centres) or ``condition`` (the generator's
    context of each identity). Each identity joins at most ``max_per_identity`` mixes; mixed
    identities get fresh ids from ``id_offset`` (null = after the largest id)."""

    count: int = 0
    m: int = 2
    strategy: str = "dist"
    space: str = "fr"
    max_per_identity: int = 1
    id_offset: int | None = None

    def __post_init__(self) -> None:
        check_range("pairs.count", self.count, 0)
        check_range("pairs.m", self.m, 2, 4)
        check_choice("pairs.strategy", self.strategy, ("dist", "close"))
        check_choice("pairs.space", self.space, ("fr", "condition"))
        check_range("pairs.max_per_identity", self.max_per_identity, 1)


@dataclass
class NegativesSection:
    """NegFaceDiff negative per identity: far (lowest cosine; the released code's default),
    close, mid (median), random, null (no negative), or none (do not mine)."""

    strategy: str = "far"
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("negatives.strategy", self.strategy, ("far", "close", "mid", "random", "null", "none"))


@dataclass
class Config:
    input: InputSection = field(default_factory=InputSection)
    pairs: PairsSection = field(default_factory=PairsSection)
    negatives: NegativesSection = field(default_factory=NegativesSection)
    use_gpu: str = "auto"
    output: FileOutput = field(default_factory=FileOutput)  # a folder
    storage: StorageConfig = field(default_factory=StorageConfig)


def condition_space(generator: str, ids: np.ndarray, emb: np.ndarray) -> np.ndarray:
    """The generator's flattened context of each identity (class table rows for class
    conditions, the projected embedding otherwise)."""
    import torch

    from synthface_ray.sampling.exported import load_generator  # lazy: imports torch

    gen = load_generator(generator)
    cond = torch.from_numpy(ids) if gen.model.config.condition == "class" else torch.from_numpy(emb)
    return gen.contexts(cond).flatten(1).double().numpy()


def _mixes(cfg: Config, ids: np.ndarray, emb: np.ndarray):
    import pyarrow as pa

    p = cfg.pairs
    space = emb
    if p.space == "condition":
        if not cfg.input.generator:
            raise ConfigError("pairs.space=condition needs input.generator (a generator export)")
        space = condition_space(cfg.input.generator, ids, emb)
    with progress_bar(p.count, f"mine {'pairs' if p.m == 2 else f'{p.m}-plets'}", unit="mix") as bar:
        if p.m == 2:
            members = select_pairs(space, p.count, p.strategy, p.max_per_identity, use_gpu=cfg.use_gpu,
                                   on_accept=bar.update)
            dist = pair_distance(space, members)
        else:
            objective = "sum_max" if p.strategy == "dist" else "sum_min"
            members, dist = select_mplets(space, p.m, p.count, objective, p.max_per_identity,
                                          use_gpu=cfg.use_gpu, on_accept=bar.update)
    start = int(ids.max()) + 1 if p.id_offset is None else p.id_offset
    lam = np.full(p.m, 1.0 / p.m, np.float32)
    return pa.table({
        "identity_id": np.arange(start, start + len(members), dtype=np.int64),
        "mix_ids": pa.array([ids[m].tolist() for m in members], pa.list_(pa.int64())),
        "mix_weights": pa.array([lam.tolist()] * len(members), pa.list_(pa.float32())),
        "origin": pa.array(["mixed"] * len(members)),
        "space": pa.array([p.space] * len(members)),
        "distance": np.asarray(dist, np.float64),
    })


def _negatives(cfg: Config, ids: np.ndarray, emb: np.ndarray):
    import pyarrow as pa

    idx = negatives(emb, cfg.negatives.strategy, 1, cfg.negatives.seed, use_gpu=cfg.use_gpu)[:, 0]
    neg = np.where(idx >= 0, ids[np.clip(idx, 0, None)], -1)
    return pa.table({"identity_id": ids, "negative_id": neg.astype(np.int64),
                     "strategy": pa.array([cfg.negatives.strategy] * len(ids))})


def _publish(cfg: Config, out, tables: dict) -> None:
    """Write the tables and ``mining.json`` (config + row counts) into a temporary folder and
    publish it as ``out`` with ``mining.json`` last: a folder without it is incomplete."""
    import json
    import tempfile
    from pathlib import Path

    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="synthface-mine-") as tmp:
        for name, table in tables.items():
            pq.write_table(table, Path(tmp) / name)
        summary = {"config": to_dict(cfg), "rows": {k: t.num_rows for k, t in tables.items()}}
        (Path(tmp) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        (Path(tmp) / CONFIG_FILE).write_text(resolved_config_text(cfg, "mine"), encoding="utf-8")
        storage.publish_dir(tmp, out, marker=SUMMARY_FILE)


def run(cfg: Config, dry_run: bool = False) -> int:
    if not cfg.input.identities:
        raise ConfigError("input.identities is required (--identities)")
    out = cfg.output.location(cfg.storage, "output.path (--out)")
    if dry_run:
        print_dry_run("mine", cfg, [f"{cfg.pairs.count} mixes of {cfg.pairs.m} ({cfg.pairs.strategy}, "
                                    f"{cfg.pairs.space} space), negatives {cfg.negatives.strategy}",
                                    f"write {out.join(MIXES_FILE).uri}, {out.join(NEGATIVES_FILE).uri}"])
        return 0
    ids, emb = read_identities(cfg.input.identities, cfg.storage)
    tables = {}
    if cfg.pairs.count:
        tables[MIXES_FILE] = _mixes(cfg, ids, emb)
    if cfg.negatives.strategy != "none":
        tables[NEGATIVES_FILE] = _negatives(cfg, ids, emb)
    _publish(cfg, out, tables)
    if MIXES_FILE in tables:
        d = tables[MIXES_FILE].column("distance").to_numpy()
        print(f"{len(d)} mixes of {cfg.pairs.m} ({cfg.pairs.strategy}, {cfg.pairs.space} space): "
              f"distance (1 - cosine) mean {d.mean():.4f}, min {d.min():.4f}, max {d.max():.4f}")
    if NEGATIVES_FILE in tables:
        print(f"{len(ids)} {cfg.negatives.strategy} negatives")
    print(f"wrote {', '.join(tables)} to {out.uri}")
    return 0
