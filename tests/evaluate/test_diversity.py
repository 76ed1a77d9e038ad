"""Consistency, intra-class diversity (FR and pixel space), uniqueness and leakage on data whose
answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from synthface_ray.evaluate import diversity as div
from synthface_ray.evaluate.separability import EvaluationError

E = np.eye(4)


def greedy_unique(x: np.ndarray, tau: float) -> np.ndarray:
    """Reference of the greedy rule: in input order, row i is kept iff its cosine to every
    previously kept row is <= tau."""
    keep = np.zeros(len(x), dtype=bool)
    for i in range(len(x)):
        keep[i] = not keep.any() or (x[keep] @ x[i]).max() <= tau
    return keep


def test_consistency_of_known_cosines():
    contexts = E[:2]
    emb = np.array([E[0], E[0], E[1], E[2]])  # cosines to their contexts: 1, 1, 1, 0
    assert div.consistency(emb, contexts, np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    tilted = np.array([[np.cos(0.3), np.sin(0.3), 0, 0]]) * 5.0  # un-normalised: normalised
    assert div.consistency(tilted, contexts, np.array([0])) == pytest.approx(np.cos(0.3))
    assert div.identity_consistency([0.2, 0.4, 0.9]) == pytest.approx(0.5)


def test_intra_class_diversity_known_answer():
    emb = np.array([E[0], E[1],          # identity a: orthogonal pair, distance 1
                    E[2], E[2], E[2],    # identity b: identical, distance 0
                    E[0], -E[0]])        # identity c: opposite, distance 2
    labels = np.array(["a", "a", "b", "b", "b", "c", "c"])
    assert div.intra_class_diversity(emb, labels) == pytest.approx((1 + 0 + 2) / 3)
    assert div.intra_class_diversity(emb[:5], labels[:5]) == pytest.approx(0.5)


def test_diversity_by_identity_is_each_identity_s_own_value_and_averages_to_the_total():
    emb = np.array([E[0], E[1], E[2], E[2], E[2], E[0], -E[0]])
    labels = np.array(["a", "a", "b", "b", "b", "c", "c"])
    ids, values = div.intra_class_diversity_by_identity(emb, labels)
    assert ids.tolist() == ["a", "b", "c"] and values == pytest.approx([1, 0, 2])
    assert values.mean() == pytest.approx(div.intra_class_diversity(emb, labels))
    black, white = np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)
    ids, values = div.pixel_diversity_by_identity(np.stack([black, white, black, black]), np.array([7, 7, 3, 3]))
    assert ids.tolist() == [3, 7] and values == pytest.approx([0, 1])


def test_intra_class_diversity_cap_subsamples_reproducibly():
    rng = np.random.default_rng(0)
    emb, labels = rng.standard_normal((300, 8)), np.repeat([0, 1, 2], 100)
    full = div.intra_class_diversity(emb, labels, max_per_class=None)
    capped = div.intra_class_diversity(emb, labels, max_per_class=20, seed=3)
    assert capped == div.intra_class_diversity(emb, labels, max_per_class=20, seed=3)
    assert capped != div.intra_class_diversity(emb, labels, max_per_class=20, seed=4)
    assert capped == pytest.approx(full, abs=0.1)  # random 8-d directions: ~1 either way
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    brute = np.mean([1 - (x[k * 100:(k + 1) * 100] @ x[k * 100:(k + 1) * 100].T)[
        np.triu_indices(100, 1)].mean() for k in range(3)])
    assert full == pytest.approx(brute, abs=1e-12)


def test_pixel_diversity_known_answer():
    black, white = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)
    half = np.zeros((8, 8, 3), np.uint8)
    half[:4] = 255  # differs from black in half the values: RMS sqrt(0.5)
    images = np.stack([black, white, black, black, black, half])
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert div.pixel_diversity(images, labels) == pytest.approx((1 + 0 + np.sqrt(0.5)) / 3)
    floats = images.astype(np.float64) / 255
    assert div.pixel_diversity(floats, labels) == pytest.approx((1 + 0 + np.sqrt(0.5)) / 3)
    with pytest.raises(EvaluationError, match=r"scaled to \[0, 1\]"):
        div.pixel_diversity(floats * 255, labels)


def test_pixel_diversity_cap():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (60, 6, 6), dtype=np.uint8)
    labels = np.repeat([0, 1], 30)
    capped = div.pixel_diversity(images, labels, max_per_class=5, seed=0)
    assert capped == div.pixel_diversity(images, labels, max_per_class=5, seed=0)
    # uniform bytes: E|a-b|^2 = 2 var = 2 (1/12) in [0, 1] units, RMS ~ sqrt(1/6) ~ 0.408
    assert div.pixel_diversity(images, labels, max_per_class=None) == pytest.approx(0.408, abs=0.02)


def test_class_centres():
    emb = np.array([E[0], E[1], E[2], E[2] * 2])
    ids, centres = div.class_centres(emb, np.array([7, 7, 3, 3]))
    assert ids.tolist() == [3, 7]
    np.testing.assert_allclose(centres, [E[2], (E[0] + E[1]) / np.sqrt(2)], atol=1e-12)


def test_uniqueness_counts_distinct_identities():
    near = np.array([1.0, 0.1, 0, 0])  # cosine 0.995 to E[0]: a duplicate identity
    centres = np.array([E[0], E[1], near, E[2], E[1] + 0.05 * E[3], E[3]])
    res = div.uniqueness(centres, tau=0.3)
    assert res.keep.tolist() == [True, True, False, True, False, True]
    assert (res.n_unique, res.n_total, res.fraction) == (4, 6, 4 / 6)
    assert div.uniqueness(centres, tau=0.999).n_unique == 6


def test_uniqueness_matches_greedy_reference_on_random_centres():
    x = np.random.default_rng(0).standard_normal((400, 6))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    res = div.uniqueness(x, tau=0.4)
    np.testing.assert_array_equal(res.keep, greedy_unique(x, 0.4))
    assert 5 < res.n_unique < 400


def test_leakage_counts_synthetic_centres_close_to_real():
    real = np.array([E[0], E[1]])
    synthetic = np.array([E[0] + 0.01 * E[2], E[2], E[3], (E[1] + E[3]) / np.sqrt(2)])
    res = div.leakage(synthetic, real, tau_leak=0.6)  # cosines 0.99995, 0, 0, 0.707
    assert res.leaked.tolist() == [True, False, False, True]
    assert (res.n_leaked, res.n_total, res.fraction) == (2, 4, 0.5)
    assert div.leakage(synthetic, real, tau_leak=0.8).n_leaked == 1


def test_bad_input_names_the_problem():
    with pytest.raises(EvaluationError, match="identity 'solo' has 1 image"):
        div.intra_class_diversity(np.eye(3), np.array(["solo", "duo", "duo"]))
    with pytest.raises(EvaluationError, match="row 1 has NaN"):
        div.intra_class_diversity(np.array([E[0], [np.nan] * 4]), [0, 0])
    with pytest.raises(EvaluationError, match="mismatched lengths"):
        div.consistency(np.eye(4), np.eye(4), np.arange(3))
    with pytest.raises(EvaluationError, match="labels must be integer rows"):
        div.consistency(np.eye(4), np.eye(2, 4), np.arange(4))
    with pytest.raises(EvaluationError, match="tau=1.0"):
        div.uniqueness(np.eye(3), tau=1.0)
    with pytest.raises(EvaluationError, match="D=4 but real_centres has D=3"):
        div.leakage(np.eye(4), np.eye(3), 0.5)
    with pytest.raises(EvaluationError, match="fr_cosine value 1 is NaN"):
        div.identity_consistency([0.5, np.nan])
