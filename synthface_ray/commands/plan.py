"""``synthface plan``: the generation plan (one row per image) from identities, mixes, negatives."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synthface_ray import storage
from synthface_ray.commands.common import print_dry_run, write_parquet
from synthface_ray.commands.mine import MIXES_FILE, NEGATIVES_FILE, SUMMARY_FILE
from synthface_ray.config import ConfigError, check_range, check_seed
from synthface_ray.data.identities import read_identities
from synthface_ray.mining.plan import PLAN_ROW_GROUP, check_plan_size, plan_rows
from synthface_ray.storage import FileOutput, StorageConfig


@dataclass
class InputSection:
    """``identities``: the identities table; ``mining``: a ``synthface mine`` output folder
    (its mixes and negatives are used when present), or null."""

    identities: str = ""
    mining: str | None = None


@dataclass
class PlanSection:
    """Rows per identity and per mix; ``negatives``: attach each identity's mined negative;
    ``seed``: the plan seed every row's seed is derived from (with its row_id)."""

    images_per_identity: int = 8
    images_per_mix: int = 8
    negatives: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_range("plan.images_per_identity", self.images_per_identity, 0)
        check_range("plan.images_per_mix", self.images_per_mix, 0)
        check_seed("plan.seed", self.seed)


@dataclass
class Config:
    input: InputSection = field(default_factory=InputSection)
    plan: PlanSection = field(default_factory=PlanSection)
    output: FileOutput = field(default_factory=FileOutput)
    storage: StorageConfig = field(default_factory=StorageConfig)


def _read_table(loc):
    return storage.read_parquet(loc, "input.mining", "mine") if storage.exists(loc) else None


def _mining(cfg: Config, ids: np.ndarray) -> tuple[dict[int, int], list]:
    if not cfg.input.mining:
        return {}, []
    folder = storage.resolve(cfg.input.mining, cfg.storage)
    if not storage.exists(folder.join(SUMMARY_FILE)):
        raise FileNotFoundError(f"{folder.uri} has no {SUMMARY_FILE}: it is not a complete "
                                "`synthface mine` output (re-run mine)")
    negatives, mixes = _read_table(folder.join(NEGATIVES_FILE)), _read_table(folder.join(MIXES_FILE))
    known = set(ids.tolist())
    negative_of = {}
    if negatives is not None and cfg.plan.negatives:
        pairs = zip(negatives["identity_id"].to_pylist(), negatives["negative_id"].to_pylist(), strict=True)
        negative_of = {i: n for i, n in pairs if n >= 0}
    rows = []
    if mixes is not None:
        for i, src, lam in zip(mixes["identity_id"].to_pylist(), mixes["mix_ids"].to_pylist(),
                               mixes["mix_weights"].to_pylist(), strict=True):
            missing = [s for s in src if s not in known]
            if missing:
                raise ValueError(f"mix {i} uses identities {missing} that are not in "
                                 f"{cfg.input.identities}: mine and plan from the same identities table")
            rows.append((i, src, lam))
    return negative_of, rows


def run(cfg: Config, dry_run: bool = False) -> int:
    if not cfg.input.identities:
        raise ConfigError("input.identities is required (--identities)")
    out = cfg.output.location(cfg.storage, "output.path (--out)")
    if dry_run:
        print_dry_run("plan", cfg, [f"{cfg.plan.images_per_identity} rows per identity, "
                                    f"{cfg.plan.images_per_mix} per mix -> {out.uri}"])
        return 0
    ids, _ = read_identities(cfg.input.identities, cfg.storage)
    negative_of, mixes = _mining(cfg, ids)
    check_plan_size(len(ids), cfg.plan.images_per_identity, len(mixes), cfg.plan.images_per_mix,
                    sum(len(m[1]) for m in mixes))
    table = plan_rows(ids, cfg.plan.images_per_identity, negative_of, mixes,
                      cfg.plan.images_per_mix, cfg.plan.seed)
    write_parquet(table, out, cfg, "plan", row_group_size=PLAN_ROW_GROUP)
    print(f"wrote a plan of {table.num_rows} rows ({len(ids)} identities x "
          f"{cfg.plan.images_per_identity}, {len(mixes)} mixes x {cfg.plan.images_per_mix}; "
          f"{len(negative_of)} identities with a negative) to {out.uri}")
    return 0
