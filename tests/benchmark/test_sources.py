"""Benchmark sources: budgets spread evenly and seeded, subsets written exactly, overlap found by
identity names and by identical image bytes, incomplete folders refused."""

from __future__ import annotations

import numpy as np
import pytest

from synthface_ray import storage
from synthface_ray.benchmark.sources import (
    budget_rows,
    check_complete,
    name_overlap,
    read_facts,
    write_subset,
)
from synthface_ray.config import ConfigError
from synthface_ray.data.faces import read_faces


def test_budgets_pick_identities_then_spread_images_evenly():
    labels = np.repeat(np.arange(10), 8)
    rows = budget_rows(labels, images=20, identities=4, seed=3)
    ids, counts = np.unique(labels[rows], return_counts=True)
    assert len(ids) == 4 and counts.tolist() == [5, 5, 5, 5]
    assert np.all(np.diff(rows) > 0)  # sorted, no repeats
    assert np.array_equal(rows, budget_rows(labels, 20, 4, seed=3))
    assert not np.array_equal(rows, budget_rows(labels, 20, 4, seed=4))
    uneven = np.repeat(np.arange(3), [2, 10, 10])  # identity 0 has fewer images than its share
    assert np.bincount(uneven[budget_rows(uneven, 12, None, seed=0)]).tolist() == [2, 5, 5]
    assert budget_rows(labels, None, None, seed=0).tolist() == list(range(len(labels)))


def test_budgets_beyond_the_set_are_refused():
    labels = np.repeat(np.arange(4), 3)
    with pytest.raises(ConfigError, match="identities budget 5 exceeds the 4"):
        budget_rows(labels, None, 5, 0)
    with pytest.raises(ConfigError, match="images budget 13 exceeds the 12"):
        budget_rows(labels, 13, None, 0)
    with pytest.raises(ConfigError, match="in the 2 identities kept"):
        budget_rows(labels, 7, 2, 0)


def test_a_subset_holds_exactly_the_chosen_rows(bench_sets, tmp_path):
    src = bench_sets["real"]
    facts, _ = read_facts(src, None)
    rows = budget_rows(facts.labels, 10, 5, seed=1)
    write_subset(src, None, rows, storage.resolve(str(tmp_path / "sub")))
    whole, sub = read_faces(src), read_faces(str(tmp_path / "sub"))
    assert sub.column("image").to_pylist() == whole.take(rows).column("image").to_pylist()
    assert sub.column("label").to_pylist() == facts.labels[rows].tolist()


def test_facts_names_digests_and_overlap(bench_sets):
    test, _ = read_facts(bench_sets["test"], None, digests=True)
    assert test.rows == 20 and test.identities == 5 and test.resolution == (24, 24)
    assert test.names == {f"toy-{i:06d}" for i in range(8, 13)} and len(test.digests) == 20
    real, found = read_facts(bench_sets["real"], None, match=test.digests)
    assert real.resolution == (16, 16) and not found and not name_overlap(test, real)
    same, found = read_facts(bench_sets["test"], None, match=test.digests)
    assert found == {f"toy-{i:06d}" for i in range(8, 13)} and len(name_overlap(test, same)) == 5
    other, _ = read_facts(bench_sets["other"], None)
    assert other.names is None and name_overlap(test, other) == []


def test_a_folder_without_its_manifest_is_not_a_dataset(bench_sets, tmp_path):
    import shutil

    shutil.copytree(bench_sets["real"], tmp_path / "cut")
    (tmp_path / "cut" / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        check_complete(str(tmp_path / "cut"), None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_complete(str(tmp_path / "nowhere"), None)
