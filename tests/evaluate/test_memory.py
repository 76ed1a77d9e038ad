"""The metrics that read a few rows of a large embedding set, or reduce it, hold no full-size
copy of it (issue 24: at 1M x 512 each float64 copy is 4 GiB)."""

from __future__ import annotations

import tracemalloc

import numpy as np

from synthface_ray.evaluate import diversity
from synthface_ray.evaluate.verification import cosine_scores, make_pairs


def _peak(fn, *args):
    tracemalloc.start()
    try:
        out = fn(*args)
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _data(n=200_000, dim=64, identities=4_000):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, dim), dtype=np.float32), rng.integers(0, identities, n)


def test_pair_scores_touch_only_the_paired_rows():
    x, labels = _data()
    pairs, _ = make_pairs(labels, 100, 100, seed=0)
    scores, peak = _peak(cosine_scores, x, pairs)
    unit = x[pairs].astype(np.float64)
    unit /= np.linalg.norm(unit, axis=2, keepdims=True)
    assert np.allclose(scores, (unit[:, 0] * unit[:, 1]).sum(axis=1))
    assert peak < 2**20, f"cosine_scores of 200 pairs peaked at {peak / 2**20:.1f} MiB"  # was 2 float64 copies


def test_centres_and_diversity_peak_below_one_copy_of_the_embeddings():
    x, labels = _data()
    (ids, centres), peak = _peak(diversity.class_centres, x, labels)
    assert peak < x.nbytes, f"class_centres peaked at {peak / 2**20:.0f} MiB for {x.nbytes / 2**20:.0f} MiB of data"
    one = labels == ids[7]
    mean = (x[one] / np.linalg.norm(x[one], axis=1, keepdims=True)).astype(np.float64).sum(axis=0)
    assert np.allclose(centres[7], mean / np.linalg.norm(mean), atol=1e-6)
    _, peak = _peak(diversity.intra_class_diversity, x, labels, 50, 0)
    assert peak < x.nbytes / 2, f"intra_class_diversity peaked at {peak / 2**20:.0f} MiB"


def test_pairs_of_many_identities_are_drawn_from_each_identity_s_own_rows():
    _, labels = _data(n=50_000, identities=20_000)
    pairs, same = make_pairs(labels, 500, 500, seed=1)
    assert (labels[pairs[same, 0]] == labels[pairs[same, 1]]).all()
    assert (labels[pairs[~same, 0]] != labels[pairs[~same, 1]]).all()
    assert (pairs[same, 0] != pairs[same, 1]).all()


def test_the_pixel_sample_is_bounded_by_images_and_identities():
    import pytest

    from synthface_ray import config
    from synthface_ray.config import ConfigError
    from synthface_ray.evaluate.config import Config
    from synthface_ray.evaluate.report import first_per_label

    taken = {}
    assert first_per_label(np.array([5, 5, 5, 9, 9, 7, 7]), taken, 2, identities=2) == [0, 1, 3, 4]
    assert first_per_label(np.array([7, 9, 5, 3]), taken, 2, identities=2) == []  # 7, 3 are new: over the cap
    assert taken == {5: 2, 9: 2}
    assert first_per_label(np.array([5, 9, 7]), {}, 2) == [0, 1, 2]  # no identity cap
    assert config.load(Config, None, []).diversity.pixel_identities == 1000
    with pytest.raises(ConfigError, match="diversity.pixel_identities"):
        config.load(Config, None, ["diversity.pixel_identities=0"])
