"""A claim's comparisons judged from results: the verdict words, the pairing (by seed, by
identity), missing evidence, and the config errors a claim file can make."""

from __future__ import annotations

import math

import pytest

from synthface_ray.benchmark import claims
from synthface_ray.benchmark.claims import ClaimSection, Comparison, claim_verdict, judge, outcome
from synthface_ray.benchmark.stats import Interval, paired_difference
from synthface_ray.config import ConfigError


def _iv(low: float, high: float) -> Interval:
    return Interval((low + high) / 2, 0.01, low, high, 3)


@pytest.mark.parametrize(("low", "high", "expect", "better", "word"), [
    (0.01, 0.03, "higher", +1, claims.HOLDS),
    (-0.03, -0.01, "higher", +1, claims.FAILS),
    (-0.01, 0.02, "higher", +1, claims.NOISE),
    (-0.03, -0.01, "lower", -1, claims.HOLDS),      # e.g. EER lower, as expected
    (0.01, 0.03, "lower", -1, claims.FAILS),
    (-0.01, 0.02, "no_worse", +1, claims.HOLDS),    # not worse beyond noise
    (-0.03, -0.01, "no_worse", +1, claims.FAILS),   # worse, interval below 0
    (0.01, 0.03, "no_worse", -1, claims.FAILS),     # a lower-is-better metric that rose
    (0.01, 0.03, "higher", 0, claims.HOLDS),        # diversity: a property, the claim says which way
])
def test_judge(low, high, expect, better, word):
    assert judge(_iv(low, high), expect, better) == word


def test_one_value_has_no_interval():
    assert judge(Interval(0.5, math.nan, math.nan, math.nan, 1), "higher", +1) == claims.UNKNOWN


def _o(word: str) -> claims.Outcome:
    iv = {claims.HOLDS: _iv(0.01, 0.02), claims.FAILS: _iv(-0.02, -0.01), claims.NOISE: _iv(-0.01, 0.01),
          "not run": None}[word]
    return claims.Outcome(Comparison("a", "b", "accuracy", "higher"), iv, 0.0, 0.0, "3 seeds")


@pytest.mark.parametrize(("words", "verdict"), [
    ([claims.HOLDS, claims.HOLDS], claims.HOLDS),
    ([claims.HOLDS, claims.NOISE], "partly holds"),
    ([claims.HOLDS, claims.FAILS], claims.FAILS),
    ([claims.NOISE, claims.NOISE], claims.NOISE),
    ([claims.HOLDS, "not run"], "holds so far (1 of 2 comparisons not run yet)"),
    (["not run", "not run"], "not run"),
])
def test_claim_verdict(words, verdict):
    assert claim_verdict([_o(w) for w in words]) == verdict


ROWS = [{"arm": arm, "seed": s, "test_set": "unseen", "accuracy": acc, "eer": 1 - acc}
        for arm, accs in {"base": [0.90, 0.91, 0.92], "new": [0.93, 0.935, 0.95]}.items()
        for s, acc in enumerate(accs)]


def test_benchmark_metric_is_paired_by_seed():
    o = outcome(Comparison("new", "base", "accuracy", "higher"), ROWS, {}, None)
    ref = paired_difference({0: 0.93, 1: 0.935, 2: 0.95}, {0: 0.90, 1: 0.91, 2: 0.92})
    assert (o.diff.mean, o.diff.low, o.diff.high) == pytest.approx((ref.mean, ref.low, ref.high))
    assert o.arm_value == pytest.approx(0.9383333) and o.pairs == "3 seeds" and o.verdict == claims.HOLDS
    assert outcome(Comparison("new", "base", "eer", "lower"), ROWS, {}, None).verdict == claims.HOLDS


def test_per_identity_metric_is_paired_by_identity_and_per_set_has_no_interval():
    metrics = {"a": {"per_identity": {"diversity_fr": {"1": 0.3, "2": 0.4, "3": 0.5, "9": 0.9}},
                     "separability": {"eer": 0.1}},
               "b": {"per_identity": {"diversity_fr": {"1": 0.2, "2": 0.3, "3": 0.41}},
                     "separability": {"eer": 0.2}}}
    o = outcome(Comparison("a", "b", "diversity_fr", "higher"), None, metrics, None)
    assert o.pairs == "3 identities" and o.diff.mean == pytest.approx(0.0966667) and o.verdict == claims.HOLDS
    o = outcome(Comparison("a", "b", "generated_eer", "lower"), None, metrics, None)
    assert o.diff.mean == pytest.approx(-0.1) and o.verdict == claims.UNKNOWN and o.pairs == "one set each"


def _boot(key: str, eer: list[float], seed: int = 0) -> dict:
    return {"replicates": len(eer), "seed": seed, "identities": 40, "identities_key": key, "generated_eer": eer}


def test_per_set_metric_is_paired_by_the_identity_bootstrap_when_both_sets_resampled_alike():
    """Replicate r of both sets resampled the same identities: the interval is the basic bootstrap
    interval of the replicate differences, so a shared swing (the same hard identities drawn) cancels."""
    swing = [0.05 * math.sin(i) for i in range(100)]
    metrics = {"a": {"separability": {"eer": 0.10}, "bootstrap": _boot("k", [0.10 + s for s in swing])},
               "b": {"separability": {"eer": 0.12}, "bootstrap": _boot("k", [0.12 + s + 0.001 * math.cos(i)
                                                                               for i, s in enumerate(swing)])}}
    o = outcome(Comparison("a", "b", "generated_eer", "lower"), None, metrics, None)
    assert o.pairs == "40 identities resampled (100 replicates)" and o.verdict == claims.HOLDS
    assert o.diff.mean == pytest.approx(-0.02) and -0.0215 < o.diff.low < o.diff.high < -0.0185
    for other in ({"bootstrap": _boot("other people", metrics["b"]["bootstrap"]["generated_eer"])},
                  {"bootstrap": _boot("k", metrics["b"]["bootstrap"]["generated_eer"], seed=1)},
                  {"bootstrap": None}):
        unpaired = {**metrics, "b": {**metrics["b"], **other}}
        o = outcome(Comparison("a", "b", "generated_eer", "lower"), None, unpaired, None)
        assert o.pairs == "one set each" and o.verdict == claims.UNKNOWN


def test_missing_evidence_is_not_run_and_an_old_report_is_named():
    assert outcome(Comparison("new", "base", "accuracy", "higher"), None, {}, None).verdict == "not run"
    assert outcome(Comparison("x", "base", "accuracy", "higher"), ROWS, {}, None).verdict == "not run"
    assert outcome(Comparison("a", "b", "consistency", "higher"), None, {"a": {}}, None).verdict == "not run"
    with pytest.raises(ConfigError, match="per_identity.consistency.*re-run"):
        outcome(Comparison("a", "b", "consistency", "higher"), None, {"a": {}, "b": {}}, None)


def test_tables_show_values_and_verdicts():
    o = outcome(Comparison("new", "base", "accuracy", "higher"), ROWS, {}, None)
    text = "\n".join(claims.comparison_table([o]) + claims.arm_table(["base", "new"], ROWS, {}, None))
    assert "**holds**" in text and "| new | 0.9383 +- 0.0104 (3) |" in text
    header, rule = claims.arm_table(["base", "new"], ROWS, {}, None)[:2]
    assert header.count("|") == rule.count("|") == 4  # as many cells as columns, none empty


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"metric": "fid"}, "comparisons\\[\\].metric"),
    ({"expect": "better"}, "comparisons\\[\\].expect"),
    ({"than": "a"}, "two different arms"),
    ({"metric": "diversity_fr", "expect": "no_worse"}, "no better direction"),
])
def test_bad_comparison(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Comparison(**{"arm": "a", "than": "b", **kwargs})


def test_bad_claim():
    c = [Comparison("a", "b", "accuracy", "higher")]
    with pytest.raises(ConfigError, match="comparisons is empty"):
        ClaimSection(1, "P", "S", evidence="e.yaml", comparisons=[])
    with pytest.raises(ConfigError, match="needs claim.benchmark"):
        ClaimSection(1, "P", "S", evidence="e.yaml", comparisons=c)
    with pytest.raises(ConfigError, match=r"evaluate report of arm\(s\) \['b'\]"):
        ClaimSection(1, "P", "S", evidence="e.yaml", evaluations={"a": "x"}, comparisons=[Comparison("a", "b", "fdr", "higher")])
    with pytest.raises(ConfigError, match="number"):
        ClaimSection(0, "P", "S", evidence="e.yaml", benchmark="x", comparisons=c)
