"""Benchmark report: the summary's numbers come from the per-trial rows, the table and chart show them."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from synthface_ray.benchmark import report
from synthface_ray.benchmark.stats import paired_difference, t_interval


def _result(arm, seed, acc, eer=0.1, images=100):
    test = {"accuracy": acc, "accuracy_std": 0.01, "eer": eer, "tar_at_far_1e3": acc / 2, "tar_at_far_1e4": acc / 4,
            "pairs": 200, "images": 50, "skipped": 0}
    return {"arm": arm, "seed": seed, "train": {"images": images, "identities": 10, "steps": 5, "loss": 1.0},
            "test": {"unseen": test}, "wall_s": 3.0, "folder": f"/x/{arm}/{seed}"}


RESULTS = [_result("real", s, a) for s, a in ((0, 0.95), (1, 0.96), (2, 0.97))] + \
          [_result("syn", s, a) for s, a in ((0, 0.80), (1, 0.83), (2, 0.79))] + \
          [_result("random_init", s, a, images=0) for s, a in ((0, 0.70), (1, 0.72), (2, 0.71))]


def test_summary_numbers_are_the_per_trial_numbers():
    rows = report.result_rows(RESULTS)
    assert len(rows) == 9
    summary = {s["arm"]: s for s in report.summarise(rows, ["real", "syn", "random_init"], "real", "random_init")}
    syn = summary["syn"]
    iv = t_interval([0.80, 0.83, 0.79])
    assert (syn["accuracy_mean"], syn["accuracy_ci_low"], syn["accuracy_ci_high"]) == (
        pytest.approx(iv.mean), pytest.approx(iv.low), pytest.approx(iv.high))
    d = paired_difference({0: 0.80, 1: 0.83, 2: 0.79}, {0: 0.95, 1: 0.96, 2: 0.97})
    assert syn["accuracy_diff"] == pytest.approx(d.mean) and syn["accuracy_verdict"] == "worse"
    assert syn["gap_closed"] == pytest.approx((0.8066667 - 0.71) / (0.96 - 0.71), abs=1e-6)
    assert summary["real"]["gap_closed"] == 1.0 and summary["random_init"]["gap_closed"] == 0.0
    assert "accuracy_diff" not in summary["real"]
    assert summary["syn"]["eer_verdict"] == "within noise"  # equal EERs


def test_report_and_chart_show_the_summary():
    rows = report.result_rows(RESULTS)
    summary = report.summarise(rows, ["real", "syn", "random_init"], "real", "random_init")
    text = report.report_md("t", rows, summary, "real", {"unseen": "plots/accuracy_unseen.png"}, ["note"],
                            ["syn seed 3: boom"])
    assert "| syn | 3 | 100 | 10 | 0.8067 ± 0.0208 |" in text
    assert "syn seed 3: boom" in text and "(reference)" in text and "![accuracy on unseen]" in text
    assert text.count("| unseen | ") == 9  # every trial listed
    png = Image.open(io.BytesIO(report.accuracy_png(summary, rows, "unseen")))
    assert png.size == report.SIZE
