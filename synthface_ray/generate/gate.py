"""The consistency gate of generation: per-row acceptance on identity consistency, with
deterministic re-draws.

DCFace and IDiff-Face filter their generated sets by FR consistency after the fact; here the
filter runs inside the generation step, so that a rejected row is re-drawn at once (with its next
deterministic seed) instead of leaving its identity short of images. A row is accepted when

- its image's FR cosine to its own identity (``fr_cosine``, :func:`batch.reference_embeddings`)
  is at least ``min_fr_cosine`` for a single-identity row, ``min_mix_cosine`` for a ScoreMix row
  (whose reference, the normalised weighted sum of its sources, sits between two people: on the
  ToyFaces generator plain rows score 0.87 on average and mixes 0.41, so one threshold for both
  drops the mixes), and
- its highest FR cosine to any *other* identity of the identities table (its mix sources
  excluded) is at most ``max_other_cosine`` (the image must not look like somebody else).

Attempt ``a`` of a row uses :func:`attempt_seed` (attempt 0 = the plan's seed, so a gate that
accepts everything writes the same pixels as no gate). The rejected rows of a shard are re-drawn
together in fixed micro-batches: the same shard always yields the same rows, byte for byte, which
is what exactly-once resume needs. After ``attempts`` draws a row that never passed is dropped
(``on_fail: drop``) or kept with ``gate_passed = false`` (``keep``): its best draw by the gate's
margin. No Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from synthface_ray.config import check_choice, check_range
from synthface_ray.generate import batch as gb
from synthface_ray.mining.plan import MIX_IDS, SEED, splitmix64

ATTEMPTS, GATE_PASSED = gb.GATE_COLUMNS
ON_FAIL = ("drop", "keep")
THRESHOLDS = ("min_fr_cosine", "min_mix_cosine", "max_other_cosine")
_MASK63 = np.uint64((1 << 63) - 1)


@dataclass
class GateSection:
    """The ``gate`` section of ``synthface generate`` (off unless a threshold is set).

    ``min_fr_cosine``: accept a single-identity row only if its image's FR cosine to its identity
    is at least this (in [-1, 1]; null = no such test). ``min_mix_cosine``: the same for ScoreMix
    rows, against the normalised weighted sum of their sources (null = mixes are not tested on
    it). ``max_other_cosine``: accept only if its highest cosine to
    any other identity of the identities table is at most this (in [-1, 1]; null = no test).
    ``attempts``: draws per row at most (1 = no re-draw). ``on_fail``: ``drop`` a row that never
    passed, or ``keep`` its best draw flagged ``gate_passed = false``. Needs ``model.fr``."""

    min_fr_cosine: float | None = None
    min_mix_cosine: float | None = None
    max_other_cosine: float | None = None
    attempts: int = 4
    on_fail: str = "drop"

    def __post_init__(self) -> None:
        for key in THRESHOLDS:
            value = getattr(self, key)
            if value is not None:
                check_range(f"gate.{key}", value, -1.0, 1.0)
        check_range("gate.attempts", self.attempts, 1, 1000)
        check_choice("gate.on_fail", self.on_fail, ON_FAIL)

    @property
    def enabled(self) -> bool:
        return any(getattr(self, key) is not None for key in THRESHOLDS)


def attempt_seed(seeds: np.ndarray, attempt: int) -> np.ndarray:
    """The noise seed of each row's ``attempt``-th draw, in [0, 2^63): the plan's seed for attempt
    0, else ``splitmix64(splitmix64(seed) + attempt)`` (deterministic, independent of the other
    rows; the inner hash keeps seed s, attempt a+1 apart from seed s+1, attempt a)."""
    seeds = np.asarray(seeds, np.int64)
    if attempt == 0:
        return seeds
    with np.errstate(over="ignore"):
        mixed = splitmix64(seeds.astype(np.uint64)) + np.uint64(attempt)
        return (splitmix64(mixed) & _MASK63).astype(np.int64)


def other_max_cosine(emb: np.ndarray, own: list[np.ndarray], identities: gb.IdentityTable,
                     chunk: int = 65536) -> np.ndarray:
    """Each row's highest cosine to an identity of the table other than its ``own`` ids (its mix
    sources); -1 when the table has no other identity. Chunked over the table (large tables)."""
    best = np.full(len(emb), -1.0, np.float32)
    for start in range(0, len(identities.ids), chunk):
        ids = identities.ids[start:start + chunk]
        table = identities.embeddings[start:start + chunk]
        table = table / np.linalg.norm(table, axis=1, keepdims=True).clip(min=1e-12)
        sims = emb @ table.T
        for r, mine in enumerate(own):
            pos = np.searchsorted(ids, mine)
            hit = pos[(pos < len(ids)) & (ids[pos.clip(max=len(ids) - 1)] == mine)]
            sims[r, hit] = -np.inf
        if sims.shape[1]:
            best = np.maximum(best, sims.max(axis=1))
    return best


def margin(fr_cosine: np.ndarray, other: np.ndarray, is_mix: np.ndarray, gate: GateSection) -> np.ndarray:
    """How far each draw is inside the gate (>= 0 = accepted): the smallest slack of the tests
    that apply to it (``min_mix_cosine`` to mixes, ``min_fr_cosine`` to the other rows,
    ``max_other_cosine`` to all); a test that is off has infinite slack."""
    def floor(value):
        return -np.inf if value is None else value

    own_floor = np.where(is_mix, floor(gate.min_mix_cosine), floor(gate.min_fr_cosine))
    hi = np.inf if gate.max_other_cosine is None else gate.max_other_cosine - other
    return np.minimum(fr_cosine - own_floor, hi)


def _score(embedder, drawn: pa.Table, identities: gb.IdentityTable, size: int):
    """``(fr_cosine, highest cosine to another identity, is a mix)`` of each drawn row."""
    emb = gb.image_embeddings(embedder, gb.pixel_array(drawn, size))
    fr = (emb * gb.reference_embeddings(drawn, identities)).sum(1)
    own = [np.asarray(ids, np.int64) for ids in drawn.column(MIX_IDS).to_pylist()]
    is_mix = np.array([len(ids) > 1 for ids in own], bool)
    return fr.astype(np.float32), other_max_cosine(emb, own, identities), is_mix


def _with_seeds(batch: pa.Table, seeds: np.ndarray) -> pa.Table:
    return batch.set_column(batch.schema.get_field_index(SEED), SEED, pa.array(seeds, pa.int64()))


def sample_gated(gen, batch: pa.Table, sampler, identities: gb.IdentityTable, embedder, gate: GateSection,
                 *, size: int, micro_batch: int, device, dtype) -> pa.Table:
    """:func:`batch.sample_batch` with the gate: every row of ``batch`` drawn up to
    ``gate.attempts`` times until it passes; returns the rows (plan order) with the seed of the
    kept draw, ``pixels``, ``t0``, ``nfe``, ``fr_cosine``, ``attempts`` and ``gate_passed``."""
    n = batch.num_rows
    plan_seeds = batch.column(SEED).to_numpy()
    kept: list[dict | None] = [None] * n
    best = np.full(n, -np.inf)
    attempts, passed = np.zeros(n, np.int32), np.zeros(n, bool)
    pending = np.arange(n)
    for attempt in range(gate.attempts):
        seeds = attempt_seed(plan_seeds[pending], attempt)
        drawn = gb.sample_batch(gen, _with_seeds(batch.take(pending), seeds), sampler, identities,
                                micro_batch=micro_batch, device=device, dtype=dtype)
        fr, other, is_mix = _score(embedder, drawn, identities, size)
        slack = margin(fr, other, is_mix, gate)
        rows = drawn.select([SEED, gb.PIXELS, gb.T0, gb.NFE]).to_pylist()
        for k, r in enumerate(pending):
            attempts[r] += 1
            if slack[k] > best[r]:
                best[r], kept[r] = slack[k], {**rows[k], gb.FR_COSINE: float(fr[k])}
        passed[pending[slack >= 0]] = True
        pending = pending[slack < 0]
        if not pending.size:
            break
    return _assemble(batch, kept, attempts, passed)


def _assemble(batch: pa.Table, kept: list[dict], attempts: np.ndarray, passed: np.ndarray) -> pa.Table:
    """The plan rows with their kept draws' columns."""
    col = {k: [row[k] for row in kept] for k in (SEED, gb.PIXELS, gb.T0, gb.NFE, gb.FR_COSINE)}
    out = _with_seeds(batch, np.asarray(col[SEED], np.int64))
    return (out.append_column(gb.PIXELS, pa.array(col[gb.PIXELS], pa.binary()))
            .append_column(gb.T0, pa.array(col[gb.T0], pa.int32()))
            .append_column(gb.NFE, pa.array(col[gb.NFE], pa.int32()))
            .append_column(gb.FR_COSINE, pa.array(col[gb.FR_COSINE], pa.float32()))
            .append_column(ATTEMPTS, pa.array(attempts, pa.int32()))
            .append_column(GATE_PASSED, pa.array(passed, pa.bool_())))


def drop_failed(table: pa.Table) -> pa.Table:
    """The rows that passed the gate (a table without the gate's columns is returned as is)."""
    if GATE_PASSED not in table.column_names:
        return table
    return table.filter(table.column(GATE_PASSED))


def gate_counts(attempts: np.ndarray, passed: np.ndarray, planned: int) -> dict[str, int]:
    """What the gate did to a dataset, from its written rows' ``attempts`` and ``gate_passed``:
    rows planned, written, passed at the first draw, passed after re-draws, kept failing, dropped."""
    attempts, passed = np.asarray(attempts), np.asarray(passed, bool)
    return {"planned": int(planned), "written": int(len(attempts)),
            "passed_first_draw": int((passed & (attempts == 1)).sum()),
            "passed_after_redraw": int((passed & (attempts > 1)).sum()),
            "kept_failing": int((~passed).sum()), "dropped": int(planned - len(attempts))}


__all__ = ["ATTEMPTS", "GATE_PASSED", "GateSection", "attempt_seed", "drop_failed", "gate_counts", "margin",
           "other_max_cosine", "sample_gated"]
