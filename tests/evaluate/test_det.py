"""The DET curve: the same error rates as the report's EER / FMR100 / FMR1000, drawn log-log."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from synthface_ray.evaluate.det import det_curve_png, det_points
from synthface_ray.evaluate.separability import (
    EvaluationError,
    ScoreHistogram,
    eer_from_counts,
    fnmr_at_fmr,
)


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(0)
    g = ScoreHistogram.from_scores(np.clip(rng.normal(0.6, 0.15, 2000), -1, 1), 65536).counts
    i = ScoreHistogram.from_scores(np.clip(rng.normal(0.05, 0.1, 20000), -1, 1), 65536).counts
    return g, i


def test_det_points_are_the_operating_points_of_the_report(counts):
    g, i = counts
    fmr, fnmr = det_points(g, i)
    assert fmr[0] == 0 and fmr[-1] == 1 and fnmr[-1] == 0
    assert (np.diff(fmr) > 0).all() and (np.diff(fnmr) <= 0).all()  # a trade-off: one rate rises, the other falls
    for at in (0.01, 0.001):  # the curve at FMR <= at reaches exactly the report's FNMR@FMR
        assert fnmr[fmr <= at].min() == fnmr_at_fmr(g, i, at)
    eer = eer_from_counts(g, i)
    k = np.flatnonzero(fmr >= fnmr)[0]  # the EER lies between the two points around the crossing
    assert min(fmr[k - 1], fnmr[k]) <= eer <= max(fmr[k], fnmr[k - 1])


def test_det_png_is_deterministic_and_labels_the_points(counts, tmp_path):
    g, i = counts
    a, b = io.BytesIO(), io.BytesIO()
    det_curve_png(g, i, a, title="t")
    det_curve_png(g, i, b, title="t")
    assert a.getvalue() == b.getvalue()
    img = det_curve_png(g, i, tmp_path / "sub" / "det.png", size=(500, 400))
    assert Image.open(tmp_path / "sub" / "det.png").size == img.size == (500, 400)
    pixels = np.asarray(img).reshape(-1, 3)
    assert ((pixels == (31, 119, 180)).all(axis=1)).sum() > 200  # the curve is drawn


def test_det_refuses_empty_histograms():
    with pytest.raises(EvaluationError, match="need genuine and impostor scores"):
        det_curve_png(np.zeros(8, int), np.ones(8, int))
