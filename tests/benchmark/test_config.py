"""The benchmark config refuses what cannot run, naming the key and how to fix it."""

from __future__ import annotations

import pytest

from synthface_ray.config import ConfigError


@pytest.mark.parametrize("overrides, message", [
    ({"arms": []}, "arms is empty"),
    ({"test.sets": []}, "test.sets is empty"),
    ({"arms": [{"name": "random_init", "sources": [{"path": "x"}]}]}, "built-in untrained arm"),
    ({"arms": [{"name": "a", "sources": [{"path": "x"}]}, {"name": "a", "sources": [{"path": "y"}]}]},
     "arm names repeat"),
    ({"arms": [{"name": "a b", "sources": [{"path": "x"}]}]}, "letters, digits"),
    ({"arms": [{"name": "a", "sources": []}]}, "has no sources"),
    ({"arms": [{"name": "a", "sources": [{"path": "x", "images": 0}]}]}, "images=0 is out of range"),
    ({"arms": [{"name": "a", "sources": [{"path": "x", "weight": 0}]}]}, "must be > 0"),
    ({"reference": "synthetic"}, "reference='synthetic' is not an arm"),
    ({"seeds": [0, 0]}, "distinct seeds"),
    ({"seeds": []}, "distinct seeds"),
    ({"test.sets": [{"name": "a", "path": "x"}, {"name": "a", "path": "y"}]}, "names repeat"),
    ({"resources.concurrent": 0}, "resources.concurrent=0"),
    ({"test.impostor": 0}, "test.impostor=0"),
    ({"train.set": {"run.seed": 3}}, "train.set key 'run.seed': the benchmark sets it"),
    ({"arms": [{"name": "a", "sources": [{"path": "x"}], "train": {"holdout.identities": 5}}]},
     "arm a train key 'holdout.identities': the benchmark sets it"),
])
def test_bad_configs_are_refused_with_the_key(bench, overrides, message):
    with pytest.raises(ConfigError, match=message):
        bench(**overrides)


def test_arm_names_put_the_built_in_floor_last_and_reference_defaults_to_the_first(bench):
    cfg = bench(arms=[{"name": "real", "sources": [{"path": "x"}]}, {"name": "syn", "sources": [{"path": "y"}]}])
    assert cfg.arm_names == ["real", "syn", "random_init"] and cfg.reference_arm == "real"
    assert bench(random_init=False).arm_names == ["real"]
    assert bench(arms=[{"name": "real", "sources": [{"path": "x"}]}, {"name": "syn", "sources": [{"path": "y"}]}],
                 reference="syn").reference_arm == "syn"


@pytest.mark.parametrize("arms, message", [
    ([{"name": "a", "sources": [{"path": "x"}], "match": "b"}], "must name another configured arm"),
    ([{"name": "a", "sources": [{"path": "x"}], "match": "a"}], "must name another configured arm"),
    ([{"name": "a", "sources": [{"path": "x", "images": 4}], "match": "b"}, {"name": "b", "sources": [{"path": "z"}]}],
     "must have no images/identities budgets"),
    ([{"name": "a", "sources": [{"path": "x"}], "match": "b"}, {"name": "b", "sources": [{"path": "z"}], "match": "a"}],
     "which matches 'a' itself"),
])
def test_bad_matches_are_refused(bench, arms, message):
    with pytest.raises(ConfigError, match=message):
        bench(arms=arms)
