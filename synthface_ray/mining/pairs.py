"""ScoreMix source selection: which identities are mixed together.

ScoreMix (Rahimi & Marcel 2025) mixes the class-conditioned scores of identity pairs; pairs
**far apart** ("Dist") in the discriminator's embedding space (its class centres) beat close
pairs and condition-space choices, and m-plets chosen to maximise ("Sum Max") or minimise
("Sum Min") the sum of pairwise distances do not beat pairs. The space is whatever matrix is
passed: FR class centres, or the generator's condition embeddings. Distance = 1 - cosine.

Both selections are greedy over a candidate graph (each identity's ``candidates`` farthest or
nearest partners, exact faiss top-k); an identity joins at most ``max_per_identity`` mixes. When
a greedy pass runs out of candidates, it continues over the identities still below the cap with
twice as many candidates among them, up to all of them (:func:`_run_passes`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from synthface_ray.mining.index import MiningError, check_embeddings, topk_others

PAIR_STRATEGIES = ("dist", "close")
MPLET_OBJECTIVES = ("sum_max", "sum_min")
_CHUNK = 16384  # rows gathered at a time by pair_distance


def _distances(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``1 - cos(x[a], x[b])`` in float64 (float64 accumulation of float32 rows), chunked."""
    out = np.empty(len(a), dtype=np.float64)
    for lo in range(0, len(a), _CHUNK):
        sl = slice(lo, lo + _CHUNK)
        out[sl] = 1.0 - np.einsum("ij,ij->i", x[a[sl]], x[b[sl]], dtype=np.float64)
    return out


def pair_distance(emb, pairs) -> np.ndarray:
    """Distances ``1 - cos`` (float64) of the rows of ``emb`` indexed by ``pairs`` (P, 2)."""
    x = check_embeddings(emb, "emb")
    p = np.asarray(pairs)
    if p.ndim != 2 or p.shape[1] != 2 or not np.issubdtype(p.dtype, np.integer):
        raise MiningError(f"pairs must be a (P, 2) integer array, got {p.dtype} {p.shape}")
    if p.size and (p.min() < 0 or p.max() >= len(x)):
        raise MiningError(f"pairs index rows outside [0, {len(x) - 1}]")
    return _distances(x, p[:, 0], p[:, 1])


def _check_counts(n: int, size: int, n_wanted: int, cap: int, candidates: int, what: str) -> None:
    for name, value, low in (("max_per_identity", cap, 1), ("candidates", candidates, 1),
                             (f"n_{what}", n_wanted, 0)):
        if int(value) != value or value < low:
            raise MiningError(f"{name}={value!r} must be an integer >= {low}")
    by_cap, distinct = n * cap // size, math.comb(n, size)
    if n_wanted > min(by_cap, distinct):
        raise MiningError(f"more {what} requested than possible: n_{what}={n_wanted} > "
                          f"floor(N * max_per_identity / {size}) = floor({n} * {cap} / {size}) "
                          f"= {by_cap}" + ("" if n_wanted <= distinct else
                                           f" or > C(N, {size}) = {distinct} distinct sets"))


@dataclass
class _Greedy:
    """State shared by the greedy passes: mixes joined per identity, accepted sets in order."""

    used: np.ndarray
    chosen: list[list[int]] = field(default_factory=list)
    seen: set[tuple[int, ...]] = field(default_factory=set)
    on_accept: Callable[[int], object] | None = None  # called with 1 per accepted set (a progress bar's update)

    def accept(self, members: list[int]) -> None:
        self.seen.add(tuple(sorted(members)))
        self.used[members] += 1
        self.chosen.append(members)
        if self.on_accept is not None:
            self.on_accept(1)


def _run_passes(n: int, size: int, wanted: int, c: int, cap: int, one_pass, what: str,
                on_accept: Callable[[int], object] | None = None) -> _Greedy:
    """Greedy passes until ``wanted`` sets: the first over all N identities with c candidates
    each; when it ends short, the next runs over the identities still below ``cap`` only, with
    their candidates re-searched among themselves (partners at cap cannot be accepted anyway)
    and twice as many of them, up to all; short after a pass with every available partner a
    candidate -> :class:`MiningError`. Accepted sets are kept across passes; ``on_accept(1)`` is
    called for each."""
    state = _Greedy(np.zeros(n, dtype=np.int64), on_accept=on_accept)
    active = np.arange(n, dtype=np.int64)
    while True:
        one_pass(active, c, state)
        if len(state.chosen) == wanted:
            return state
        exhausted = c >= len(active) - 1
        active = np.flatnonzero(state.used < cap)
        if exhausted or len(active) < size:
            raise MiningError(f"more {what} requested than possible: the greedy selection found "
                              f"only {len(state.chosen)} of n_{what}={wanted} with every "
                              f"available partner as a candidate (N={n}, max_per_identity={cap})")
        c = min(2 * c, len(active) - 1)


def _candidates(x: np.ndarray, active: np.ndarray, c: int, far: bool, use_gpu: str) -> np.ndarray:
    """(len(active), c) global ids: each active identity's c farthest / nearest active others."""
    sub = x if len(active) == len(x) else x[active]
    return active[topk_others(sub, c, largest=not far, use_gpu=use_gpu)[1]]


def _pairs_pass(x: np.ndarray, active: np.ndarray, c: int, far: bool, cap: int, wanted: int,
                state: _Greedy, use_gpu: str) -> None:
    """One greedy pass over the candidate pairs of ``active`` (each one's c farthest / nearest
    active partners): deduplicated as (i < j), sorted by distance (descending if ``far``; ties
    by i, then j), accepted while both ends are below ``cap`` and the pair is new."""
    n = len(x)
    i = np.repeat(active, c)
    j = _candidates(x, active, c, far, use_gpu).reshape(-1)
    key = np.unique(np.minimum(i, j) * n + np.maximum(i, j))
    a, b = key // n, key % n
    dist = _distances(x, a, b)
    order = np.lexsort((b, a, -dist if far else dist))
    used = state.used.tolist()
    for p, q in zip(a[order].tolist(), b[order].tolist()):
        if used[p] < cap and used[q] < cap and (p, q) not in state.seen:
            used[p] += 1
            used[q] += 1
            state.accept([p, q])
            if len(state.chosen) == wanted:
                return


def select_pairs(emb, n_pairs: int, strategy: str = "dist", max_per_identity: int = 1,
                 candidates: int = 32, use_gpu: str = "auto",
                 on_accept: Callable[[int], object] | None = None) -> np.ndarray:
    """ScoreMix pairs: ``n_pairs`` identity pairs (int64 (n_pairs, 2), i < j per row, in the
    greedy acceptance order) far apart (``"dist"``, ScoreMix's best) or close together
    (``"close"``) in the space of ``emb``; no pair repeats and no identity is in more than
    ``max_per_identity`` pairs. Deterministic.

    Greedy over each identity's ``candidates`` farthest (nearest, self excluded) partners; if
    the pass ends short, it continues over the identities still below the cap with twice the
    candidates among them, up to all (:func:`_run_passes`). :class:`MiningError` when
    ``n_pairs > floor(N * max_per_identity / 2)`` (or > N(N-1)/2), or when even every
    available partner leaves the greedy short (a greedy b-matching is maximal, not maximum).
    ``on_accept(1)`` per accepted pair (e.g. ``tqdm.update``).
    """
    if strategy not in PAIR_STRATEGIES:
        raise MiningError(f"unknown pair strategy {strategy!r}: expected one of "
                          f"{', '.join(PAIR_STRATEGIES)}")
    x = check_embeddings(emb, "emb")
    n = len(x)
    _check_counts(n, 2, n_pairs, max_per_identity, candidates, "pairs")
    if n_pairs == 0:
        return np.empty((0, 2), dtype=np.int64)
    cap, far = int(max_per_identity), strategy == "dist"

    def one_pass(active, c, state):
        _pairs_pass(x, active, c, far, cap, int(n_pairs), state, use_gpu)

    state = _run_passes(n, 2, int(n_pairs), min(int(candidates), n - 1), cap, one_pass, "pairs", on_accept)
    return np.asarray(state.chosen, dtype=np.int64).reshape(-1, 2)


def _grow_mplet(x: np.ndarray, seed: int, pool: np.ndarray, m: int, far: bool) -> list[int] | None:
    """Grow an m-plet from ``seed``: add, from ``pool`` (candidate partners, in rank order),
    the one maximising (``far``) or minimising the sum of distances to the current members;
    ties go to the earlier candidate. None when the pool runs out."""
    members = [seed]
    sums = np.zeros(len(pool), dtype=np.float64)
    free = np.ones(len(pool), dtype=bool)
    for _ in range(m - 1):
        sums += 1.0 - (x[pool] @ x[members[-1]]).astype(np.float64)
        if not free.any():
            return None
        score = np.where(free, sums if far else -sums, -np.inf)
        best = int(np.argmax(score))
        members.append(int(pool[best]))
        free[best] = False
    return members


def _mplets_pass(x: np.ndarray, active: np.ndarray, c: int, far: bool, cap: int, m: int,
                 wanted: int, state: _Greedy, use_gpu: str) -> None:
    """One greedy pass: sweeps over the seeds in ``active`` (index order) that are below
    ``cap``, each growing an m-plet from its c candidate partners below cap
    (:func:`_grow_mplet`); new sets are accepted. Sweeps repeat until one adds nothing."""
    ids = _candidates(x, active, c, far, use_gpu)
    progress = True
    while progress and len(state.chosen) < wanted:
        progress = False
        for row, s in enumerate(active.tolist()):
            if state.used[s] >= cap:
                continue
            pool = ids[row][state.used[ids[row]] < cap]
            members = _grow_mplet(x, s, pool, m, far)
            if members is None or tuple(sorted(members)) in state.seen:
                continue
            state.accept(members)
            progress = True
            if len(state.chosen) == wanted:
                return


def mplet_sums(x: np.ndarray, mplets: np.ndarray) -> np.ndarray:
    """Exact sums of pairwise distances ``sum_{a<b} 1 - cos`` of each m-plet row (float64)."""
    sums = np.zeros(len(mplets), dtype=np.float64)
    m = mplets.shape[1]
    for u in range(m):
        for v in range(u + 1, m):
            sums += _distances(x, mplets[:, u], mplets[:, v])
    return sums


def select_mplets(emb, m: int, n: int, objective: str = "sum_max", max_per_identity: int = 1,
                  candidates: int = 32, use_gpu: str = "auto",
                  on_accept: Callable[[int], object] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ScoreMix m-plets (m = 3 triplets, 4 quads): ``n`` sets of m distinct identities whose
    sum of pairwise distances is greedily maximised (``"sum_max"``) or minimised (``"sum_min"``).

    Seeds are taken in index order among identities below ``max_per_identity``; each m-plet
    grows from its seed's ``candidates`` farthest (sum_max) / nearest (sum_min) partners below
    the cap, adding the partner with the largest / smallest sum of distances to the members so
    far. Returns ``(mplets int64 (n, m) seed first, sums float64 (n,))``, ``sums`` the exact
    pairwise-distance sums. Continues with more candidates when short, as
    :func:`select_pairs` does (:func:`_run_passes`). ``on_accept(1)`` per accepted m-plet.
    """
    if objective not in MPLET_OBJECTIVES:
        raise MiningError(f"unknown m-plet objective {objective!r}: expected one of "
                          f"{', '.join(MPLET_OBJECTIVES)}")
    if int(m) != m or m < 2:
        raise MiningError(f"m={m!r}: an m-plet mixes m >= 2 identities")
    x = check_embeddings(emb, "emb")
    _check_counts(len(x), int(m), n, max_per_identity, candidates, "mplets")
    if n == 0:
        return np.empty((0, int(m)), dtype=np.int64), np.empty(0, dtype=np.float64)
    cap, far = int(max_per_identity), objective == "sum_max"

    def one_pass(active, c, state):
        _mplets_pass(x, active, c, far, cap, int(m), int(n), state, use_gpu)

    state = _run_passes(len(x), int(m), int(n), min(int(candidates), len(x) - 1), cap, one_pass,
                        "mplets", on_accept)
    found = np.asarray(state.chosen, dtype=np.int64).reshape(-1, int(m))
    return found, mplet_sums(x, found)


__all__ = ["MPLET_OBJECTIVES", "PAIR_STRATEGIES", "mplet_sums", "pair_distance", "select_mplets",
           "select_pairs"]
