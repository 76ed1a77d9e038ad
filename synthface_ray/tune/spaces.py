"""Search spaces over dotted config paths (pure: no Ray until :func:`to_tune`).

A sweep's ``space`` maps a dotted path to one distribution::

    space:
      plan.mix_lambda: {uniform: [0.3, 0.7]}       # ScoreMix lambda
      sampler.negative.w_max: {loguniform: [0.1, 4]}
      sampler.negative.schedule: {choice: [constant, linear, cosine]}
      sampler.steps: {grid: [10, 20]}               # every value, crossed with the samples

Paths start with ``sampler.`` (the generation job's sampler section, checked by resolving it) or
``plan.`` (the trial plan's knobs: :class:`~synthface_ray.tune.config.PlanKnobs`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from synthface_ray.config import ConfigError, apply_dotted, from_dict, to_dict
from synthface_ray.sampling.recipes import SamplerConfig, resolve

KINDS = ("uniform", "loguniform", "choice", "grid")
ROOTS = ("sampler", "plan")


@dataclass(frozen=True)
class Dimension:
    """One searched knob: ``path`` (dotted), ``kind`` (a key of :data:`KINDS`), ``values``
    (``[low, high]`` for uniform/loguniform, the candidates for choice/grid)."""

    path: str
    kind: str
    values: tuple

    @property
    def probes(self) -> tuple:
        """Values that must all be valid settings: every candidate; for a range both bounds and
        a float inside it (an integer key cannot take a continuous range)."""
        if self.kind in ("uniform", "loguniform"):
            lo, hi = self.values
            mid = math.sqrt(lo * hi) if self.kind == "loguniform" else (lo + hi) / 2
            return (lo, hi, float(mid))
        return self.values


def _check_bounds(path: str, kind: str, values: list) -> None:
    if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"space.{path}: {kind} takes [low, high] numbers, got {values!r}")
    low, high = values
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ConfigError(f"space.{path}: {kind} needs finite low < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"space.{path}: loguniform needs 0 < low, got {low} (use uniform to include 0)")


def parse_dimension(path: str, spec: Any) -> Dimension:
    """One ``space`` entry, checked for shape (its values are checked against the config by
    :func:`check_space`)."""
    if not isinstance(path, str) or path.split(".", 1)[0] not in ROOTS or "." not in path:
        raise ConfigError(f"space key {path!r} is not a searchable path: use sampler.<key> (e.g. "
                          "sampler.cfg_scale) or plan.<knob> (e.g. plan.mix_lambda)")
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise ConfigError(f"space.{path} must be one of {{{': ..., '.join(KINDS)}: ...}}, got {spec!r}")
    kind, values = next(iter(spec.items()))
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"space.{path}: {kind} needs a non-empty list, got {values!r}")
    if kind in ("uniform", "loguniform"):
        _check_bounds(path, kind, list(values))
    if len({repr(v) for v in values}) != len(values):
        raise ConfigError(f"space.{path}: {kind} lists a value twice: {values!r}")
    return Dimension(path, kind, tuple(values))


def parse_space(space: Mapping[str, Any]) -> list[Dimension]:
    """Every dimension of a ``space`` section (at least one; paths unique and not nested in each other)."""
    if not space:
        raise ConfigError("space is empty: give at least one knob, e.g. "
                          "space: {sampler.cfg_scale: {uniform: [0.5, 3.0]}}")
    dims = [parse_dimension(path, spec) for path, spec in space.items()]
    paths = sorted(d.path for d in dims)
    for a, b in zip(paths, paths[1:], strict=False):
        if b.startswith(a + "."):
            raise ConfigError(f"space sets both {a} and {b}: one is inside the other")
    return dims


def apply_params(sampler: SamplerConfig | Mapping[str, Any], plan: Any,
                 params: Mapping[str, Any]) -> tuple[SamplerConfig, Any]:
    """The trial's ``(sampler config, plan knobs)``: the job's resolved ones (a job's
    ``SamplerConfig``, or a ``sampler`` section resolved here) with each ``path: value`` of
    ``params`` set (values as the search drew them, typed; no text round trip). Raises
    :class:`ConfigError` naming the path when the value is not allowed."""
    data = {"sampler": to_dict(resolve(sampler), redact=False), "plan": to_dict(plan, redact=False)}
    data = apply_dotted(data, params, "space")
    return (from_dict(SamplerConfig, data["sampler"], "sampler."),  # every key explicit: no recipe applies
            from_dict(type(plan), data["plan"], "plan."))


def check_space(dims: list[Dimension], sampler: SamplerConfig | Mapping[str, Any], plan: Any) -> None:
    """Before any trial: every path exists and every bound / candidate is an allowed setting."""
    known = to_dict(resolve(sampler), redact=False)
    for dim in dims:
        if dim.path == "sampler.recipe":
            raise ConfigError("space.sampler.recipe: a recipe is a bundle of settings, resolved once when the "
                              "job loads; search the settings themselves (e.g. sampler.cfg_scale, "
                              "sampler.negative.w_max, sampler.two_stage.mode), or compare recipes as arms "
                              "of `synthface benchmark`")
        root, rest = dim.path.split(".", 1)
        node: Any = known if root == "sampler" else to_dict(plan, redact=False)
        for part in rest.split("."):
            if not isinstance(node, dict) or part not in node:
                allowed = sorted(node) if isinstance(node, dict) else []
                raise ConfigError(f"space.{dim.path}: unknown parameter path ('{part}' is not a "
                                  f"{root} key; allowed here: {allowed})")
            node = node[part]
        for value in dim.probes:
            try:
                apply_params(sampler, plan, {dim.path: value})
            except ConfigError as exc:
                hint = " (an integer key: use choice or grid)" if "must be an integer" in str(exc) else ""
                raise ConfigError(f"space.{dim.path}: value {value!r} is not allowed{hint}: {exc}") from None


def to_tune(dim: Dimension) -> Any:
    """The Ray Tune domain of a dimension (Ray imported here only)."""
    from ray import tune

    makers: dict[str, Callable[[tuple], Any]] = {
        "uniform": lambda v: tune.uniform(*v),
        "loguniform": lambda v: tune.loguniform(*v),
        "choice": lambda v: tune.choice(list(v)),
        "grid": lambda v: tune.grid_search(list(v)),
    }
    return makers[dim.kind](dim.values)


def param_space(dims: list[Dimension]) -> dict[str, Any]:
    return {dim.path: to_tune(dim) for dim in dims}


def grid_size(dims: list[Dimension]) -> int:
    """How many grid combinations every sample is crossed with (1 without grid dimensions)."""
    return math.prod(len(d.values) for d in dims if d.kind == "grid")


__all__ = ["KINDS", "Dimension", "apply_params", "check_space", "grid_size", "param_space",
           "parse_dimension", "parse_space", "to_tune"]
