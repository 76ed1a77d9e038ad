"""ScoreMix pairs and m-plets: the greedy rule against plain-loop references on small sets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from synthface_ray.mining.index import MiningError
from synthface_ray.mining.pairs import mplet_sums, pair_distance, select_mplets, select_pairs


def unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def dist(x: np.ndarray, i: int, j: int) -> float:
    return 1.0 - float(np.dot(x[i].astype(np.float64), x[j].astype(np.float64)))


def partners(x: np.ndarray, i: int, c: int, far: bool, among: list[int] | None = None) -> list:
    """Row i's c farthest (far) or nearest others within ``among`` (default all), plain sort."""
    pool = range(len(x)) if among is None else among
    others = sorted((j for j in pool if j != i), key=lambda j: dist(x, i, j), reverse=far)
    return others[:c]


def reference_pairs(x: np.ndarray, n_pairs: int, far: bool, cap: int, c: int) -> list[tuple]:
    """The greedy rule with plain loops: candidate pairs = every active identity's c partners
    among the active ones, deduplicated as (i < j), sorted by distance (far: descending) then i
    then j; accept new pairs while both ends are below cap. The first pass has every identity
    active; when short, the next has those below cap, with 2c (up to all of them)."""
    n = len(x)
    used, chosen, active = [0] * n, [], list(range(n))
    while True:
        cand = {(min(i, j), max(i, j)) for i in active for j in partners(x, i, c, far, active)}
        ordered = sorted(cand, key=lambda p: (-dist(x, *p) if far else dist(x, *p), p[0], p[1]))
        for i, j in ordered:
            if (len(chosen) < n_pairs and used[i] < cap and used[j] < cap
                    and (i, j) not in chosen):
                used[i] += 1
                used[j] += 1
                chosen.append((i, j))
        exhausted = c >= len(active) - 1
        active = [i for i in range(n) if used[i] < cap]
        if len(chosen) == n_pairs or exhausted or len(active) < 2:
            return chosen
        c = min(2 * c, len(active) - 1)


@pytest.mark.parametrize("strategy", ["dist", "close"])
@pytest.mark.parametrize("cap,n_pairs,c", [(1, 20, 39), (1, 20, 3), (1, 12, 32), (2, 35, 5),
                                           (2, 39, 2), (3, 55, 39)])
def test_pairs_match_the_plain_loop_reference(strategy, cap, n_pairs, c):
    x = unit(40, 8, seed=11)
    pairs = select_pairs(x, n_pairs, strategy, max_per_identity=cap, candidates=c)
    assert pairs.dtype == np.int64 and pairs.shape == (n_pairs, 2)
    ref = reference_pairs(x, n_pairs, strategy == "dist", cap, min(c, 39))
    assert [tuple(p) for p in pairs.tolist()] == ref
    assert (pairs[:, 0] < pairs[:, 1]).all()
    assert len({tuple(p) for p in pairs.tolist()}) == n_pairs
    assert np.bincount(pairs.ravel(), minlength=40).max() <= cap


def test_dist_pairs_are_far_and_sorted():
    x = unit(200, 16, seed=12)
    far, close = select_pairs(x, 100, "dist"), select_pairs(x, 100, "close")
    d_far, d_close = pair_distance(x, far), pair_distance(x, close)
    assert (np.diff(d_far) <= 0).all() and (np.diff(d_close) >= 0).all()  # acceptance order
    assert d_far.mean() > 1.4 and d_close.mean() < 0.6
    assert select_pairs(x, 0).shape == (0, 2)
    np.testing.assert_array_equal(select_pairs(x, 100, "dist"), far)  # deterministic


def test_pair_distance_is_one_minus_cosine():
    x = unit(30, 8, seed=13)
    pairs = np.array([[0, 1], [5, 3], [7, 7]])
    np.testing.assert_allclose(pair_distance(x, pairs), [dist(x, *p) for p in pairs], atol=1e-12)
    with pytest.raises(MiningError, match=r"\(P, 2\) integer"):
        pair_distance(x, np.zeros((3, 3), int))
    with pytest.raises(MiningError, match="outside"):
        pair_distance(x, np.array([[0, 30]]))


def test_too_many_pairs():
    x = unit(41, 8)
    with pytest.raises(MiningError, match=r"more pairs requested than possible: n_pairs=21 > "
                                          r"floor\(N \* max_per_identity / 2\) = floor\(41 \* 1 "
                                          r"/ 2\) = 20"):
        select_pairs(x, 21)
    with pytest.raises(MiningError, match="more pairs requested than possible.*C\\(N, 2\\) = 3 "):
        select_pairs(unit(3, 4), 4, max_per_identity=5)


def test_greedy_dead_end_is_reported():
    # 0, 1, 2 at 120 degrees in a plane (distance 1.5 apart), 3 orthogonal to all (distance 1):
    # "dist" with cap 2 takes the triangle first, leaving 3 alone: 3 pairs, not the 4 possible.
    a = np.array([[1, 0, 0], [-0.5, 3**0.5 / 2, 0], [-0.5, -(3**0.5) / 2, 0], [0, 0, 1]])
    with pytest.raises(MiningError, match=r"more pairs requested than possible: the greedy "
                                          r"selection found only 3 of n_pairs=4"):
        select_pairs(a, 4, "dist", max_per_identity=2, candidates=3)


def test_bad_pair_options():
    x = unit(10, 4)
    with pytest.raises(MiningError, match=r"unknown pair strategy 'far'.*dist, close"):
        select_pairs(x, 2, "far")
    with pytest.raises(MiningError, match="max_per_identity=0"):
        select_pairs(x, 2, max_per_identity=0)
    x[2] = np.nan
    with pytest.raises(MiningError, match="emb row 2 has NaN"):
        select_pairs(x, 2)


def reference_mplets(x: np.ndarray, m: int, n: int, far: bool, cap: int) -> list[list[int]]:
    """The m-plet greedy with every other identity as a candidate, plain loops."""
    used, seen, chosen, progress = [0] * len(x), set(), [], True
    while progress and len(chosen) < n:
        progress = False
        for s in range(len(x)):
            if used[s] >= cap or len(chosen) == n:
                continue
            pool = [j for j in partners(x, s, len(x) - 1, far) if used[j] < cap]
            members = [s]
            while len(members) < m and len(pool) > len(members) - 1:
                free = [j for j in pool if j not in members]
                score = [sum(dist(x, j, u) for u in members) for j in free]
                members.append(free[int(np.argmax(score) if far else np.argmin(score))])
            key = tuple(sorted(members))
            if len(members) == m and key not in seen:
                seen.add(key)
                for u in members:
                    used[u] += 1
                chosen.append(members)
                progress = True
    return chosen


@pytest.mark.parametrize("objective", ["sum_max", "sum_min"])
@pytest.mark.parametrize("m,n,cap", [(3, 10, 1), (4, 7, 1), (3, 20, 2)])
def test_mplets_members_sums_and_caps(objective, m, n, cap):
    x = unit(30, 8, seed=14)
    mplets, sums = select_mplets(x, m, n, objective, max_per_identity=cap, candidates=29)
    assert mplets.shape == (n, m) and mplets.dtype == np.int64 and sums.dtype == np.float64
    assert all(len(set(row)) == m for row in mplets.tolist())
    assert len({tuple(sorted(row)) for row in mplets.tolist()}) == n
    assert np.bincount(mplets.ravel(), minlength=30).max() <= cap
    brute = [sum(dist(x, u, v) for u, v in itertools.combinations(row, 2)) for row in mplets]
    np.testing.assert_allclose(sums, brute, atol=1e-12)
    np.testing.assert_allclose(mplet_sums(x, mplets), sums, atol=0)
    assert mplets.tolist() == reference_mplets(x, m, n, objective == "sum_max", cap)


def test_sum_max_beats_sum_min_on_average():
    for seed in range(5):
        x = unit(60, 16, seed=seed)
        hi = select_mplets(x, 3, 20, "sum_max")[1]
        lo = select_mplets(x, 3, 20, "sum_min")[1]
        assert hi.mean() > lo.mean()


def test_mplets_with_few_candidates_retry_and_bad_options():
    x = unit(24, 8, seed=15)
    mplets, _ = select_mplets(x, 4, 6, "sum_max", candidates=2)  # needs reruns to fill up
    assert mplets.shape == (6, 4) and np.bincount(mplets.ravel()).max() == 1
    with pytest.raises(MiningError, match=r"m=1"):
        select_mplets(x, 1, 2)
    with pytest.raises(MiningError, match=r"more mplets requested than possible: n_mplets=7 > "
                                          r"floor\(N \* max_per_identity / 4\) = floor\(24 \* 1 "
                                          r"/ 4\) = 6"):
        select_mplets(x, 4, 7)
    with pytest.raises(MiningError, match=r"unknown m-plet objective 'max'.*sum_max, sum_min"):
        select_mplets(x, 3, 2, "max")
    empty, sums = select_mplets(x, 3, 0)
    assert empty.shape == (0, 3) and sums.shape == (0,)
