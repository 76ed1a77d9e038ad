"""Plan rows: unique row ids, deterministic per-row seeds, identities/mixes/negatives in order."""

from __future__ import annotations

import numpy as np

from synthface_ray.mining.plan import plan_rows, row_seeds, splitmix64


def test_row_ids_unique_and_seeds_deterministic_and_order_free():
    t = plan_rows([3, 5, 9], 4, {3: 9}, [(20, [3, 5], [0.5, 0.5])], 2, seed=7)
    rows = t.column("row_id").to_numpy()
    assert (rows == np.arange(14)).all()
    seeds = t.column("seed").to_numpy()
    assert len(np.unique(seeds)) == 14 and (seeds >= 0).all()
    again = plan_rows([3, 5, 9], 4, {3: 9}, [(20, [3, 5], [0.5, 0.5])], 2, seed=7)
    assert (again.column("seed").to_numpy() == seeds).all()
    assert (row_seeds(7, rows[::-1]) == seeds[::-1]).all()  # a row's seed depends on its id only
    assert not (plan_rows([3, 5, 9], 4, seed=8).column("seed").to_numpy() == seeds[:12]).any()


def test_rows_carry_identities_mixes_and_negatives():
    t = plan_rows([3, 5], 2, {3: 5}, [(20, [3, 5], [0.25, 0.75])], 3, seed=0).to_pydict()
    assert t["identity_id"] == [3, 3, 5, 5, 20, 20, 20]
    assert t["mix_ids"] == [[3], [3], [5], [5], [3, 5], [3, 5], [3, 5]]
    assert t["mix_weights"][4] == [0.25, 0.75] and t["mix_weights"][0] == [1.0]
    assert t["negative_id"] == [5, 5, -1, -1, -1, -1, -1]


def test_splitmix64_known_values():
    # first outputs of SplitMix64 seeded with 0 (state advanced by the golden gamma each call)
    gamma = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        states = np.array([0, gamma], np.uint64)
    assert [hex(int(v)) for v in splitmix64(states)] == ["0xe220a8397b1dcdaf", "0x6e789e6aa1b965f4"]


def test_more_list_entries_than_int32_offsets_hold_are_refused_not_wrapped():
    # mix_ids / mix_weights use 32-bit offsets: 2^31 entries would wrap to negative offsets
    import pytest

    from synthface_ray.config import ConfigError
    from synthface_ray.mining.plan import MAX_ENTRIES, check_plan_size, list_offsets

    assert list_offsets(np.array([1, 2, 3])).to_pylist() == [0, 1, 3, 6]
    with pytest.raises(ConfigError, match=r"2,147,483,648 mix_ids entries: more than the 2,147,483,647"):
        list_offsets(np.array([MAX_ENTRIES, 1]))
    # 1.2e9 mix rows of 2 sources: rows fit a plan, entries do not (checked before any memory estimate)
    with pytest.raises(ConfigError, match=r"= 2,400,000,000 mix_ids entries .* more than the 2,147,483,647 a "
                                          r"plan's list columns hold; lower plan.images_per_identity"):
        check_plan_size(10, 0, 1_200_000, 1000)
    with pytest.raises(ConfigError, match=r"3,600,000,000 mix_ids entries"):
        check_plan_size(10, 0, 1_200_000, 1000, mix_sources=3_600_000)
