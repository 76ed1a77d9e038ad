"""Sweep config checks: rungs, objective, metric names, multi-objective rules."""

from __future__ import annotations

import pytest

from synthface_ray.config import ConfigError, from_dict
from synthface_ray.tune.config import METRICS, Config, ObjectiveSection, ProtocolSection


@pytest.mark.parametrize("lo, hi, growth, rungs", [(8, 32, 2, [8, 16, 32]), (8, 20, 2, [8, 16, 20]),
                                                   (4, 4, 3, [4]), (2, 50, 3, [2, 6, 18, 50])])
def test_rungs_grow_by_the_factor_and_end_at_the_budget(lo, hi, growth, rungs):
    assert ProtocolSection(min_identities=lo, max_identities=hi, growth=growth).rungs() == rungs


@pytest.mark.parametrize("section, message", [
    ({"min_identities": 16, "max_identities": 8}, "budget is too small for one rung"),
    ({"min_identities": 1}, "at least 2 identities"),
    ({"images_per_identity": 1}, "at least 2 images"),
    ({"growth": 1}, "protocol.growth"),
])
def test_protocols_that_cannot_make_a_rung_are_refused(section, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(ProtocolSection, section)


@pytest.mark.parametrize("objective, message", [
    ({"metric": "accuracy"}, r"'accuracy' is not a metric the trials report"),
    ({"weights": {"eer": -1, "sharpness": 1}}, "'sharpness' is not a metric"),
    ({"multi": {"eer": "min"}}, "at least 2 metrics"),
    ({"multi": {"eer": "min", "diversity_fr": "up"}}, "objective.multi.diversity_fr"),
    ({"mode": "minimise"}, "objective.mode"),
    ({"metric": None}, "give metric"),
])
def test_objectives_over_unknown_metrics_are_refused(objective, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(ObjectiveSection, objective)


def test_weighted_objective_is_the_weighted_sum():
    obj = from_dict(ObjectiveSection, {"weights": {"eer": -1.0, "diversity_fr": 0.5}, "mode": "max"})
    assert obj.value({"eer": 0.1, "diversity_fr": 0.4, "fdr": 3.0}) == pytest.approx(0.1)
    assert from_dict(ObjectiveSection, {"metric": "fdr", "mode": "max"}).value({"fdr": 3.0}) == 3.0


def test_multi_objective_needs_optuna_and_fifo():
    multi = {"multi": {"eer": "min", "diversity_fr": "max"}}
    with pytest.raises(ConfigError, match="ASHA ranks trials by one metric"):
        from_dict(Config, {"objective": multi, "search": {"algorithm": "optuna"}})
    with pytest.raises(ConfigError, match="needs search.algorithm=optuna"):
        from_dict(Config, {"objective": multi, "search": {"scheduler": "fifo"}})
    cfg = from_dict(Config, {"objective": multi, "search": {"algorithm": "optuna", "scheduler": "fifo"}})
    assert (cfg.tune_metric, cfg.tune_mode) == (["eer", "diversity_fr"], ["min", "max"])


def test_metric_names_are_unique_paths():
    assert len(set(METRICS.values())) == len(METRICS)
