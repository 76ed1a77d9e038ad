"""Score-histogram PNG: a valid image of the requested size, byte-for-byte deterministic."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from synthface_ray.evaluate import separability as sep
from synthface_ray.evaluate.histogram import score_histogram_png


def scores(seed: int = 0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0.4, 0.1, 3000), -1, 1), np.clip(rng.normal(0.0, 0.08, 30000), -1, 1)


def png(genuine, impostor, **kwargs) -> bytes:
    buf = io.BytesIO()
    score_histogram_png(genuine, impostor, buf, **kwargs)
    return buf.getvalue()


def test_png_file_is_valid_and_of_the_requested_size(tmp_path):
    g, i = scores()
    path = tmp_path / "plots" / "hist.png"
    img = score_histogram_png(g, i, path, title="toy", size=(640, 400))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as saved:
        assert saved.format == "PNG" and saved.size == (640, 400) and saved.mode == "RGB"
    assert img.size == (640, 400)
    # both histograms are drawn: their fill colours appear in the image
    colours = {c for _, c in img.getcolors(640 * 400)}
    assert any(r < g_ and b < g_ for r, g_, b in colours)  # green
    assert any(r > 150 > g_ for r, g_, b in colours)  # red


def test_png_bytes_are_deterministic():
    g, i = scores()
    first = png(g, i, title="same input")
    assert first == png(g, i, title="same input")
    assert first != png(g, i, title="another title")


def test_counts_and_scores_give_the_same_picture():
    """Integer arrays are histogram counts (e.g. SeparabilityResult.*_counts), floats are scores."""
    g, i = scores(1)
    res = sep.separability_from_scores(g, i)
    assert png(res.genuine_counts, res.impostor_counts) == png(g, i)


def test_threshold_outside_the_range_and_bad_input():
    g, i = scores(2)
    assert Image.open(io.BytesIO(png(g, i, score_range=(0.5, 1.0)))).size == (800, 500)
    with pytest.raises(sep.EvaluationError, match="different numbers of bins"):
        score_histogram_png(np.ones(10, int), np.ones(12, int))
    with pytest.raises(sep.EvaluationError, match="NaN"):
        score_histogram_png(np.r_[g, np.nan], i)
    with pytest.raises(sep.EvaluationError, match="score_range"):
        score_histogram_png(g, i, score_range=(0.5, 0.2))
