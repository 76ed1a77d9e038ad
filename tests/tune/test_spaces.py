"""Search-space parsing and checking against the job's sampler and the plan knobs (no Ray cluster)."""

from __future__ import annotations

import pytest

from synthface_ray.config import ConfigError
from synthface_ray.tune import spaces
from synthface_ray.tune.config import PlanKnobs

SAMPLER = {"recipe": "scoremix_cfg", "cfg_scale": 2.0, "negative": {"schedule": "linear", "w_max": 1.0}}


def test_every_kind_parses_to_its_dimension_and_tune_domain():
    from ray.tune.search.sample import Categorical, Float

    dims = spaces.parse_space({"plan.mix_lambda": {"uniform": [0.2, 0.8]},
                               "sampler.negative.w_max": {"loguniform": [0.1, 4]},
                               "sampler.negative.schedule": {"choice": ["constant", "linear"]},
                               "sampler.steps": {"grid": [5, 10]}})
    assert [(d.path, d.kind, d.values) for d in dims] == [
        ("plan.mix_lambda", "uniform", (0.2, 0.8)), ("sampler.negative.w_max", "loguniform", (0.1, 4)),
        ("sampler.negative.schedule", "choice", ("constant", "linear")), ("sampler.steps", "grid", (5, 10))]
    space = spaces.param_space(dims)
    assert isinstance(space["plan.mix_lambda"], Float) and isinstance(space["sampler.negative.schedule"], Categorical)
    assert space["sampler.steps"] == {"grid_search": [5, 10]}
    assert spaces.grid_size(dims) == 2
    spaces.check_space(dims, SAMPLER, PlanKnobs())


@pytest.mark.parametrize("space, message", [
    ({}, "space is empty"),
    ({"cfg_scale": {"uniform": [0, 1]}}, "not a searchable path"),
    ({"model.generator": {"choice": ["a"]}}, "not a searchable path"),
    ({"sampler.cfg_scale": {"normal": [0, 1]}}, "must be one of"),
    ({"sampler.cfg_scale": {"uniform": [2, 1]}}, "low < high"),
    ({"sampler.cfg_scale": {"uniform": [1]}}, r"\[low, high\]"),
    ({"sampler.negative.w_max": {"loguniform": [0, 1]}}, "0 < low"),
    ({"sampler.steps": {"choice": []}}, "non-empty list"),
    ({"sampler.steps": {"grid": [5, 5]}}, "twice"),
    ({"sampler.negative": {"choice": [{}]}, "sampler.negative.w_max": {"uniform": [0, 1]}}, "inside the other"),
])
def test_malformed_spaces_are_refused_with_the_reason(space, message):
    with pytest.raises(ConfigError, match=message):
        spaces.parse_space(space)


@pytest.mark.parametrize("space, message", [
    ({"sampler.negative.wmax": {"uniform": [0, 1]}}, r"unknown parameter path \('wmax'.*w_max"),
    ({"sampler.cfg": {"uniform": [0, 1]}}, "unknown parameter path"),
    ({"plan.lambda": {"uniform": [0, 1]}}, r"unknown parameter path.*mix_lambda"),
    ({"sampler.steps": {"choice": [10, 0]}}, r"value 0 is not allowed.*sampler.steps"),
    ({"sampler.negative.schedule": {"choice": ["linear", "cubic"]}}, "value 'cubic' is not allowed"),
    ({"plan.mix_lambda": {"uniform": [0.5, 1.5]}}, r"value 1.5 is not allowed.*plan.mix_lambda"),
    ({"plan.negative": {"choice": ["far", "nearest"]}}, "value 'nearest' is not allowed"),
    ({"sampler.steps": {"uniform": [5, 21]}}, r"value 13.0 is not allowed \(an integer key: use choice or grid\)"),
])
def test_unknown_paths_and_invalid_values_are_refused_before_any_trial(space, message):
    with pytest.raises(ConfigError, match=message):
        spaces.check_space(spaces.parse_space(space), SAMPLER, PlanKnobs())


def test_apply_params_sets_nested_sampler_keys_and_plan_knobs_without_touching_the_base():
    base = dict(SAMPLER)
    sampler, knobs = spaces.apply_params(base, PlanKnobs(), {"sampler.negative.w_max": 0.25,
                                                             "sampler.steps": 7, "plan.mix_lambda": 0.3,
                                                             "plan.negative": "close"})
    assert (sampler.negative.schedule, sampler.negative.w_max, sampler.steps) == ("linear", 0.25, 7)
    assert sampler.cfg_scale == 2.0 and sampler.recipe == "scoremix_cfg"  # the rest as the job resolved it
    assert (knobs.mix_lambda, knobs.negative, knobs.tau) == (0.3, "close", None)
    assert base == SAMPLER  # the job's sampler is not modified


def test_a_recipe_is_not_a_searchable_knob():
    """The job's sampler is resolved once at load; switching its recipe name in a trial would change the
    label, not the settings: refused, naming what to search instead."""
    with pytest.raises(ConfigError, match="space.sampler.recipe: a recipe is a bundle of settings"):
        spaces.check_space(spaces.parse_space({"sampler.recipe": {"choice": ["cfg", "uiface"]}}), SAMPLER, PlanKnobs())
