"""The generation plan: one row per image to generate (``shared/DESIGN.md``).

Columns: ``row_id`` int64 (unique, 0..), ``identity_id`` int64, ``mix_ids`` list<int64> (the
identities whose contexts are mixed; one id = plain conditional), ``mix_weights``
list<float32> (ScoreMix lambdas, summing to 1), ``negative_id`` int64 (-1 = none), ``seed``
int64 = a hash of (plan seed, row_id), so a row's noise is fixed by the plan alone.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from synthface_ray.config import ConfigError
from synthface_ray.limits import check_count

ROW_ID, IDENTITY_ID, MIX_IDS, MIX_WEIGHTS, NEGATIVE_ID, SEED = (
    "row_id", "identity_id", "mix_ids", "mix_weights", "negative_id", "seed")
_MASK63 = np.uint64(2**63 - 1)
#: a plan's list columns (mix_ids, mix_weights) use 32-bit offsets: at most this many rows, and
#: this many list entries (one per single-identity row, one per source of each mix row)
MAX_ROWS = MAX_ENTRIES = 2**31 - 1
#: measured peak memory of :func:`plan_rows` per row (the table is 52 B a row, plus temporaries)
ROW_BYTES = 120

#: rows per row group of a plan file: a generation read task decodes one or two for its shard
PLAN_ROW_GROUP = 8192

def check_plan_size(identities: int, images_per_identity: int, mixes: int, images_per_mix: int,
                    mix_sources: int | None = None) -> None:
    """Refuse a plan that cannot be built here: more rows or list entries than a plan holds
    (``mix_sources``: the sources of all mixes together, default 2 per mix), or more than memory fits."""
    what = f"a plan of {identities} identities x {images_per_identity} images + {mixes} mixes x {images_per_mix} images"
    fix = ("lower plan.images_per_identity / plan.images_per_mix, or split the identities into "
           "several plans (and generate them as several runs)")
    rows = identities * images_per_identity + mixes * images_per_mix
    entries = identities * images_per_identity + (2 * mixes if mix_sources is None else mix_sources) * images_per_mix
    if rows <= MAX_ROWS < entries:
        raise ConfigError(f"{what} = {entries:,} mix_ids entries (one per single-identity row, one per source of "
                          f"each mix row): more than the {MAX_ENTRIES:,} a plan's list columns hold; {fix}")
    check_count(what, rows, "rows", ROW_BYTES, fix, MAX_ROWS, "a plan holds")


def list_offsets(sizes: np.ndarray) -> pa.Array:
    """The int32 offsets of list columns whose rows hold ``sizes`` entries; refuses more entries
    than int32 offsets address (:data:`MAX_ENTRIES`) instead of wrapping around."""
    offsets = np.concatenate([[0], np.cumsum(np.asarray(sizes, np.int64))])
    if offsets[-1] > MAX_ENTRIES:
        raise ConfigError(f"a plan of {len(sizes):,} rows holds {int(offsets[-1]):,} mix_ids entries: more than "
                          f"the {MAX_ENTRIES:,} a plan's list columns hold; split it into several plans")
    return pa.array(offsets.astype(np.int32))


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (Steele et al. 2014), vectorised over uint64."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def row_seeds(plan_seed: int, row_ids: np.ndarray) -> np.ndarray:
    """Per-row seeds in [0, 2^63): ``splitmix64(splitmix64(plan_seed) + row_id)``; deterministic,
    independent of how the plan is split or ordered."""
    with np.errstate(over="ignore"):
        base = splitmix64(np.array([plan_seed], np.uint64))[0]
        return (splitmix64(base + np.asarray(row_ids, np.uint64)) & _MASK63).astype(np.int64)


def plan_rows(identity_ids, images_per_identity: int, negative_of: dict[int, int] | None = None,
              mixes: list[tuple[int, list[int], list[float]]] | None = None,
              images_per_mix: int = 0, seed: int = 0) -> pa.Table:
    """``images_per_identity`` rows per identity (conditioned on it alone, with its mined
    negative if any), then ``images_per_mix`` rows per mix ``(mix identity_id, source ids,
    weights)``; row ids in that order, seeds from :func:`row_seeds`. Vectorised (millions of
    rows build in seconds)."""
    ids = np.asarray(identity_ids, np.int64)
    negative_of = negative_of or {}
    neg = np.array([negative_of.get(int(i), -1) for i in ids], np.int64)
    single_ids = np.repeat(ids, images_per_identity)
    single_neg = np.repeat(neg, images_per_identity)
    mixes = mixes or []
    mix_rows = [m for m in mixes for _ in range(images_per_mix)]
    n_single = len(single_ids)
    identity = np.concatenate([single_ids, np.array([m[0] for m in mix_rows], np.int64)])
    offsets = list_offsets(np.concatenate([np.ones(n_single, np.int64),
                                           np.array([len(m[1]) for m in mix_rows], np.int64)]))
    flat_ids = np.concatenate([single_ids] + [np.asarray(m[1], np.int64) for m in mix_rows])
    flat_w = np.concatenate([np.ones(n_single, np.float32)]
                            + [np.asarray(m[2], np.float32) for m in mix_rows])
    rows = np.arange(len(identity), dtype=np.int64)
    return pa.table({
        ROW_ID: rows,
        IDENTITY_ID: identity,
        MIX_IDS: pa.ListArray.from_arrays(offsets, pa.array(flat_ids, pa.int64())),
        MIX_WEIGHTS: pa.ListArray.from_arrays(offsets, pa.array(flat_w, pa.float32())),
        NEGATIVE_ID: np.concatenate([single_neg, np.full(len(mix_rows), -1, np.int64)]),
        SEED: row_seeds(seed, rows),
    })


__all__ = ["IDENTITY_ID", "MIX_IDS", "PLAN_ROW_GROUP", "MIX_WEIGHTS", "NEGATIVE_ID", "ROW_ID", "SEED", "plan_rows",
           "row_seeds", "splitmix64"]
