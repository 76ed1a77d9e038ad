"""A paper's central claim as comparisons of arms, judged from measured results.

A claim (``synthface papers``, jobs/papers/*.yaml) names the arms it compares and, for each
comparison, a metric and what the paper expects (``higher``, ``lower`` or ``no_worse`` than the
other arm). Two kinds of evidence:

- **benchmark metrics** (``accuracy``, ``eer``, ``tar_far_1e3``): downstream FR trained on each
  arm's data, from a benchmark's ``results.parquet``; paired seed by seed (each seed shares the
  backbone initialisation and test pairs), the 95% Student-t interval of the mean difference;
- **evaluate metrics** of each arm's generated set (``synthface evaluate``'s ``metrics.json``):
  per identity (``diversity_fr``, ``diversity_pixel``, ``consistency``; two sets drawn on one plan
  share their identities, so they are paired identity by identity) or one number per set
  (``generated_eer``, ``fdr``, ``frechet``): paired by the identity bootstrap of ``evaluate``
  (the same identities resampled in each replicate of both sets; the basic bootstrap interval of
  the differences), or without an interval, said so, when the sets were not resampled alike.

A comparison *holds* when its interval lies wholly on the side the paper expects, *does not hold*
when it lies wholly on the other side, and is *within noise* otherwise (``no_worse`` holds unless
the interval lies wholly on the worse side). Pure: no Ray, no models.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from synthface_ray.benchmark.stats import (
    Interval,
    bootstrap_difference,
    paired_difference,
    t_interval,
)
from synthface_ray.config import ConfigError, check_choice

EXPECTATIONS = ("higher", "lower", "no_worse")
HOLDS, FAILS, NOISE, UNKNOWN = "holds", "does not hold", "within noise", "noise unknown"


@dataclass(frozen=True)
class Metric:
    """``source``: where the values come from (benchmark / per_identity / per_set); ``key``: the
    column of results.parquet or the path into metrics.json; ``better``: +1 when higher is better,
    -1 when lower is, 0 when neither (a property, e.g. diversity, the claim says which way)."""

    source: str
    key: tuple[str, ...]
    better: int
    label: str


#: metric name -> where it is read and which way is better
METRICS: dict[str, Metric] = {
    "accuracy": Metric("benchmark", ("accuracy",), +1, "benchmark verification accuracy"),
    "eer": Metric("benchmark", ("eer",), -1, "benchmark EER"),
    "tar_far_1e3": Metric("benchmark", ("tar_far_1e3",), +1, "benchmark TAR@FAR=1e-3"),
    "diversity_fr": Metric("per_identity", ("per_identity", "diversity_fr"), 0,
                           "intra-class diversity in FR space (mean 1 - cos)"),
    "diversity_pixel": Metric("per_identity", ("per_identity", "diversity_pixel"), 0,
                              "intra-class diversity in pixels (RMS difference)"),
    "consistency": Metric("per_identity", ("per_identity", "consistency"), +1,
                          "identity consistency (mean fr_cosine to the identity's context)"),
    "generated_eer": Metric("per_set", ("separability", "eer"), -1, "EER of the generated set"),
    "fdr": Metric("per_set", ("separability", "fdr"), +1, "FDR of the generated set"),
    "frechet": Metric("per_set", ("frechet", "distance"), -1, "Fréchet distance to held-out real images"),
}


@dataclass
class Comparison:
    """``arm`` against ``than`` on ``metric``; the paper expects ``arm`` to be ``expect``
    (higher / lower / no_worse) than ``than``."""

    arm: str = ""
    than: str = ""
    metric: str = "accuracy"
    expect: str = "higher"

    def __post_init__(self) -> None:
        check_choice("comparisons[].metric", self.metric, tuple(METRICS))
        check_choice("comparisons[].expect", self.expect, EXPECTATIONS)
        if not self.arm or not self.than or self.arm == self.than:
            raise ConfigError(f"comparisons[]: arm={self.arm!r} and than={self.than!r} must name two "
                              "different arms")
        if self.expect == "no_worse" and not METRICS[self.metric].better:
            raise ConfigError(f"comparisons[]: {self.metric} has no better direction; expect higher or lower")


@dataclass
class ClaimSection:
    """One paper's claim: its ``number`` in the suite, the ``paper``, the ``statement`` tested,
    the ``protocol`` (what was run, in words), ``evidence`` (the pipeline file whose steps make
    the evidence; claims may share one), where the evidence lies (``benchmark``: a benchmark
    output folder holding results.parquet; ``evaluations``: arm -> evaluate report folder holding
    metrics.json; ``{root}`` allowed), the ``comparisons`` and ``also``: arms shown beside them in
    the report's table without a comparison (e.g. a setting that is not the paper's); ``reading``:
    what the team thinks the measurement says and what may explain it (printed under the tables,
    naming the figures it reads, so that a re-measurement that moves them shows it stale)."""

    number: int = 0
    paper: str = ""
    statement: str = ""
    protocol: str = ""
    evidence: str = ""
    benchmark: str = ""
    test_set: str | None = None
    evaluations: dict[str, str] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    also: list[str] = field(default_factory=list)
    reading: str = ""

    def resolved(self, root: str) -> ClaimSection:
        """A copy with ``{root}`` replaced in the evidence locations."""
        r = root.rstrip("/")
        return dataclasses.replace(self, benchmark=self.benchmark.replace("{root}", r),
                                   evaluations={a: p.replace("{root}", r) for a, p in self.evaluations.items()})

    def __post_init__(self) -> None:
        if self.number < 1 or not self.statement or not self.paper or not self.evidence:
            raise ConfigError("claims[]: number (>= 1), paper, statement and evidence (a pipeline file) "
                              "are required")
        if not self.comparisons:
            raise ConfigError(f"claim {self.number}: comparisons is empty: name at least one "
                              "(arm, than, metric, expect)")
        for c in self.comparisons:
            source = METRICS[c.metric].source
            if source == "benchmark" and not self.benchmark:
                raise ConfigError(f"claim {self.number}: comparison on {c.metric} needs claim.benchmark "
                                  "(the benchmark output folder)")
            missing = [a for a in (c.arm, c.than) if source != "benchmark" and a not in self.evaluations]
            if missing:
                raise ConfigError(f"claim {self.number}: comparison on {c.metric} needs an evaluate report "
                                  f"of arm(s) {missing}: add them to claim.evaluations")


@dataclass(frozen=True)
class Outcome:
    """A comparison's measured ``diff`` (arm - than, paired) and what it says of the claim."""

    comparison: Comparison
    diff: Interval | None  # None: no evidence yet (the run has not happened)
    arm_value: float
    than_value: float
    pairs: str  # what was paired: "3 seeds", "70 identities", "one set each"

    @property
    def verdict(self) -> str:
        if self.diff is None:
            return "not run"
        return judge(self.diff, self.comparison.expect, METRICS[self.comparison.metric].better)


def judge(diff: Interval, expect: str, better: int) -> str:
    """holds / does not hold / within noise / noise unknown for a paired difference (arm - than)
    and the paper's expectation."""
    if not diff.resolved:
        return UNKNOWN
    above, below = diff.low > 0, diff.high < 0
    if expect == "no_worse":
        worse = below if better > 0 else above
        return FAILS if worse else HOLDS
    want, other = (above, below) if expect == "higher" else (below, above)
    return HOLDS if want else FAILS if other else NOISE


def claim_verdict(outcomes: list[Outcome]) -> str:
    """The claim as a whole: holds when every comparison holds, does not hold when any fails,
    partly holds when some hold and the rest are within noise, else within noise; comparisons
    without evidence yet are left out and counted ("... so far (n of m comparisons not run yet)")."""
    everything = [o.verdict for o in outcomes]
    words = [w for w in everything if w != "not run"]
    if not words:
        return "not run"
    pending = len(everything) - len(words)
    if FAILS in words:
        word = FAILS
    elif all(w == HOLDS for w in words):
        word = HOLDS
    else:
        word = "partly holds" if HOLDS in words else NOISE if NOISE in words else UNKNOWN
    return word + (f" so far ({pending} of {len(everything)} comparisons not run yet)" if pending else "")


def _dig(metrics: Mapping[str, Any], key: tuple[str, ...], where: str) -> Any:
    value: Any = metrics
    for part in key:
        if not isinstance(value, Mapping) or part not in value:
            raise ConfigError(f"{where} has no {'.'.join(key)}: re-run its `synthface evaluate` "
                              "(per-identity figures need this version; frechet needs frechet.reference)")
        value = value[part]
    return value


def outcome(c: Comparison, benchmark_rows: list[dict[str, Any]] | None, metrics: Mapping[str, Any],
            test_set: str | None) -> Outcome:
    """Measure one comparison from a benchmark's rows (results.parquet as dicts) and the arms'
    evaluate metrics (arm -> metrics.json dict); ``diff`` None when the evidence is missing."""
    m = METRICS[c.metric]
    if m.source == "benchmark":
        if not benchmark_rows:
            return Outcome(c, None, math.nan, math.nan, "")
        sets = sorted({r["test_set"] for r in benchmark_rows})
        name = test_set or sets[0]
        by = {arm: {r["seed"]: float(r[m.key[0]]) for r in benchmark_rows
                    if r["arm"] == arm and r["test_set"] == name} for arm in (c.arm, c.than)}
        if not by[c.arm] or not by[c.than]:
            return Outcome(c, None, math.nan, math.nan, "")
        diff = paired_difference(by[c.arm], by[c.than])
        return Outcome(c, diff, _mean(by[c.arm]), _mean(by[c.than]), f"{diff.n} seeds")
    if c.arm not in metrics or c.than not in metrics:
        return Outcome(c, None, math.nan, math.nan, "")
    a = _dig(metrics[c.arm], m.key, f"the evaluate report of {c.arm}")
    b = _dig(metrics[c.than], m.key, f"the evaluate report of {c.than}")
    if m.source == "per_identity":
        diff = paired_difference(a, b)
        return Outcome(c, diff, _mean(a), _mean(b), f"{diff.n} identities")
    a, b = float(a), float(b)
    paired = _paired_bootstrap(c.metric, metrics[c.arm], metrics[c.than])
    if paired is None:
        return Outcome(c, t_interval([a - b]), a, b, "one set each")
    reps_a, reps_b, n = paired
    points = [metrics[x]["bootstrap"].get(f"{c.metric}_point", v) for x, v in ((c.arm, a), (c.than, b))]
    diff = bootstrap_difference(*points, reps_a, reps_b, n)
    return Outcome(c, diff, a, b, f"{n} identities resampled ({len(reps_a)} replicates)")


def _paired_bootstrap(metric: str, arm: Mapping[str, Any], than: Mapping[str, Any]
                      ) -> tuple[list[float], list[float], int] | None:
    """Both sets' bootstrap replicates of a one-number metric and the identities resampled, when
    they resampled the same identities replicate by replicate (same identities, replicates and
    seed: ``synthface evaluate``'s ``bootstrap`` section); None otherwise. The interval centres
    on ``{metric}_point`` where the section has it (the statistic of exactly the resampled images)."""
    a, b = arm.get("bootstrap"), than.get("bootstrap")
    if not a or not b or metric not in a or metric not in b:
        return None
    if any(a[k] != b[k] for k in ("identities_key", "replicates", "seed")):
        return None
    return a[metric], b[metric], int(a["identities"])


def _mean(values: Mapping[Any, float]) -> float:
    return float(sum(values.values()) / len(values)) if values else math.nan


def read_metrics(paths: Mapping[str, str], read_text: Callable[[str], str | None]) -> dict[str, dict]:
    """arm -> metrics.json of its evaluate report folder, for the folders that have one."""
    out = {}
    for arm, folder in paths.items():
        text = read_text(folder.rstrip("/") + "/metrics.json")
        if text is not None:
            out[arm] = json.loads(text)
    return out


def _fmt(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.4f}"


def _interval(o: Outcome) -> str:
    if o.diff is None:
        return "-"
    if not o.diff.resolved:
        return f"{o.diff.mean:+.4f} (no interval: {o.pairs})"
    return f"{o.diff.mean:+.4f} [{o.diff.low:+.4f}, {o.diff.high:+.4f}]"


def comparison_table(outcomes: list[Outcome]) -> list[str]:
    """Markdown rows: each comparison, both arms' values, the paired difference and its verdict."""
    lines = ["| comparison | metric | arm | than | Δ = arm - than [95% CI] | paired over | verdict |",
             "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        c = o.comparison
        lines.append(f"| {c.arm} {c.expect.replace('_', ' ')} than {c.than} | {METRICS[c.metric].label} | "
                     f"{_fmt(o.arm_value)} | {_fmt(o.than_value)} | {_interval(o)} | {o.pairs or '-'} | "
                     f"**{o.verdict}** |")
    return lines


def arm_table(arms: list[str], benchmark_rows: list[dict[str, Any]] | None, metrics: Mapping[str, Any],
              test_set: str | None) -> list[str]:
    """Markdown rows: per arm, the benchmark's accuracy / EER (mean +- std over seeds) and its
    generated set's evaluate figures, where measured."""
    rows = [r for r in benchmark_rows or [] if r["test_set"] == (test_set or min(
        (x["test_set"] for x in benchmark_rows or []), default=""))]
    cols = [k for k in ("diversity_fr", "diversity_pixel", "consistency", "generated_eer", "fdr", "frechet")
            if any(_has(metrics.get(a), METRICS[k].key) for a in arms)]
    lines = ["| " + " | ".join(["arm", "accuracy (mean +- std, seeds)", "EER", *cols]) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for arm in arms:
        acc = [r["accuracy"] for r in rows if r["arm"] == arm]
        eer = [r["eer"] for r in rows if r["arm"] == arm]
        cells = [_mean_std(acc), _mean_std(eer)]
        for k in cols:
            v = _dig(metrics[arm], METRICS[k].key, arm) if _has(metrics.get(arm), METRICS[k].key) else None
            cells.append("-" if v is None else _fmt(_mean(v) if isinstance(v, Mapping) else float(v)))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def _has(metrics: Mapping[str, Any] | None, key: tuple[str, ...]) -> bool:
    value: Any = metrics
    for part in key:
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return True


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    i = t_interval(values)
    return f"{i.mean:.4f}" + (f" +- {i.std:.4f} ({i.n})" if i.resolved else " (1)")


__all__ = ["ClaimSection", "Comparison", "EXPECTATIONS", "METRICS", "Metric", "Outcome", "arm_table", "claim_verdict",
           "comparison_table",
           "judge", "outcome", "read_metrics"]
