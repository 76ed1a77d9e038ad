"""``synthface cka``: linear CKA between the generator's condition space and FR class centres
(ScoreMix takeaway 5: the two spaces are weakly aligned)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synthface_ray.commands.common import print_dry_run
from synthface_ray.commands.mine import condition_space
from synthface_ray.config import ConfigError
from synthface_ray.data.identities import read_identities
from synthface_ray.mining.cka import linear_cka
from synthface_ray.storage import StorageConfig


@dataclass
class InputSection:
    """``identities``: FR class centres whose ``identity_id`` are the generator's class ids
    (``synthface embed`` of the generator's training set); ``generator``: its export."""

    identities: str = ""
    generator: str = ""


@dataclass
class Config:
    input: InputSection = field(default_factory=InputSection)
    storage: StorageConfig = field(default_factory=StorageConfig)


def run(cfg: Config, dry_run: bool = False) -> int:
    if not cfg.input.identities or not cfg.input.generator:
        raise ConfigError("input.identities and input.generator are required (--identities, --generator)")
    if dry_run:
        print_dry_run("cka", cfg, [f"CKA of {cfg.input.generator}'s contexts vs {cfg.input.identities}"])
        return 0
    ids, centres = read_identities(cfg.input.identities, cfg.storage)
    contexts = condition_space(cfg.input.generator, ids, centres)
    value = linear_cka(contexts, centres.astype(np.float64))
    print(f"linear CKA(generator condition space, FR class centres) over {len(ids)} identities: "
          f"{value:.4f}")
    return 0
