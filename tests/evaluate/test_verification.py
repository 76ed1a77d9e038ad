"""Verification protocol on synthetic score distributions whose answers are known in closed form."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from synthface_ray.evaluate import verification as v

PHI = NormalDist()


def gaussian_scores(d: float, n: int = 100_000, seed: int = 0):
    """Genuine ~ N(d, 1), impostor ~ N(0, 1), interleaved."""
    rng = np.random.default_rng(seed)
    issame = rng.random(2 * n) < 0.5
    scores = rng.normal(size=2 * n) + d * issame
    return scores, issame


def test_separable_scores_are_perfect():
    scores, issame = np.r_[np.full(50, 0.9), np.full(50, 0.1)], np.r_[np.ones(50, bool), np.zeros(50, bool)]
    res = v.verify(scores, issame)
    assert res.accuracy == 1.0 and res.eer == 0.0 and res.tar_at_far_1e3 == 1.0


@pytest.mark.parametrize("d", [1.0, 2.0, 3.0])
def test_gaussian_eer_accuracy_and_tar_match_closed_forms(d):
    scores, issame = gaussian_scores(d)
    # equal variances: EER at the midpoint threshold d/2, best accuracy Phi(d/2) too
    assert v.eer(scores, issame) == pytest.approx(PHI.cdf(-d / 2), abs=0.005)
    acc, std = v.kfold_accuracy(scores, issame)
    assert acc == pytest.approx(PHI.cdf(d / 2), abs=0.005) and std < 0.01
    thr = PHI.inv_cdf(1 - 1e-3)  # FAR 1e-3 -> TAR = 1 - Phi(thr - d)
    assert v.tar_at_far(scores, issame, 1e-3) == pytest.approx(1 - PHI.cdf(thr - d), abs=0.02)


def test_roc_is_monotone_and_ends_at_one():
    far, tar, thr = v.roc(*gaussian_scores(1.0, 1000))
    assert far[0] == tar[0] == 0 and far[-1] == tar[-1] == 1
    assert (np.diff(far) >= 0).all() and (np.diff(tar) >= 0).all() and (np.diff(thr) < 0).all()


def test_threshold_is_chosen_on_training_folds_only():
    # fold 10 alone has inverted scores: a threshold fitted on it would score 100% there
    scores = np.r_[np.tile([0.9, 0.1], 45), np.tile([0.1, 0.9], 5)]
    issame = np.tile([True, False], 50)
    acc, _ = v.kfold_accuracy(scores, issame, folds=10)
    assert acc == pytest.approx(0.9)


def test_pairs_from_labels():
    labels = np.repeat(np.arange(5), 4)
    pairs, issame = v.make_pairs(labels, genuine=30, impostor=40, seed=1)
    assert pairs.shape == (70, 2) and issame.sum() == 30
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    assert (same == issame).all() and (pairs[:, 0] != pairs[:, 1]).all()
    with pytest.raises(ValueError, match="at least 2"):
        v.make_pairs(np.zeros(10), 5, 5)
    with pytest.raises(ValueError, match="both genuine"):
        v.verify(np.ones(20), np.ones(20, bool))


def test_cosine_scores():
    emb = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    assert np.allclose(v.cosine_scores(emb, np.array([[0, 1], [0, 2]])), [1.0, 0.0])


def test_far_resolution_warnings_below_ten_over_far_impostors():
    from synthface_ray.evaluate.verification import far_resolution_warnings

    assert far_resolution_warnings(100_000) == []
    only = far_resolution_warnings(10_000)
    assert len(only) == 1 and "FAR=0.0001" in only[0] and "fewer than 100000" in only[0]
    both = far_resolution_warnings(3000)
    assert len(both) == 2 and "rests on 3.0 impostor score(s)" in both[0]
