"""The identity bootstrap of a set's one-number metrics (synthface_ray/evaluate/bootstrap.py):
replicates resample whole identities, never score two draws of one person as impostors, pair two
sets of the same identities replicate by replicate, and the basic interval corrects a bias the
resampling adds."""

from __future__ import annotations

import numpy as np
import pytest

from synthface_ray.evaluate import bootstrap as bs
from synthface_ray.evaluate.frechet import frechet_distance_of, gaussian_stats
from synthface_ray.evaluate.separability import EvaluationError, separability


def _clusters(n_ids=12, per=5, dim=24, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:n_ids] if noise == 0 else rng.standard_normal((n_ids, dim))
    labels = np.repeat(np.arange(n_ids) * 7 + 3, per)  # labels are not positions
    x = centres[np.repeat(np.arange(n_ids), per)] + noise * rng.standard_normal((n_ids * per, dim))
    order = rng.permutation(len(labels))  # rows in any order
    return x[order], labels[order]


def test_two_draws_of_one_identity_are_never_impostors():
    """Identical images per identity, orthogonal identities: every genuine score is 1, every true
    impostor 0, so each replicate's EER is 0, although most replicates draw some identity twice
    (scored as impostors, their pairs would score 1 and raise the EER)."""
    x, labels = _clusters()
    draws = bs.identity_draws(12, 30, seed=1)
    assert any(len(set(d.tolist())) < 12 for d in draws)
    reps = bs.separability_replicates(x, labels, draws, impostor=500, seed=0)
    assert reps["generated_eer"] == [0.0] * 30
    assert all(np.isinf(f) or f > 1e6 for f in reps["fdr"])  # no spread: FDR unbounded


def test_a_draw_of_every_identity_once_reproduces_the_set_figures():
    x, labels = _clusters(noise=0.6)
    ref = np.random.default_rng(5).standard_normal((80, 24))
    once = np.arange(12)[None, :]
    fd = bs.frechet_replicates(x, labels, gaussian_stats(ref), once)
    assert fd[0] == pytest.approx(frechet_distance_of(x, ref), rel=1e-9)
    sep = bs.separability_replicates(x, labels, once, impostor=20000, seed=0)
    assert sep["fdr"][0] == pytest.approx(float(separability(x, labels).fdr), rel=0.05)  # sampled impostors


def test_the_same_identities_and_seed_draw_the_same_people():
    a, la = _clusters(noise=0.5, seed=1)
    b, lb = _clusters(noise=0.9, seed=2)  # another set of the same people, rows in another order
    assert bs.identities_key(la) == bs.identities_key(lb) != bs.identities_key(la + 1)
    ma = bs.bootstrap_metrics(a, la, 20, 3, 1000)
    mb = bs.bootstrap_metrics(b, lb, 20, 3, 1000)
    assert (ma["identities_key"], ma["replicates"], ma["seed"], ma["identities"]) == \
        (mb["identities_key"], 20, 3, 12)
    assert np.array_equal(bs.identity_draws(12, 20, 3), bs.identity_draws(12, 20, 3))
    assert ma["generated_eer"] != mb["generated_eer"]  # other images, same draws


def test_basic_interval_corrects_a_shift_of_the_replicates():
    reps = np.linspace(-1, 1, 1001)
    assert bs.basic_interval(0.0, reps) == pytest.approx((-0.95, 0.95))
    low, high = bs.basic_interval(0.0, reps + 10)  # replicates biased up by 10: interval moves down
    assert (low, high) == pytest.approx((-10.95, -9.05))


@pytest.mark.parametrize(("call", "message"), [
    (lambda: bs.identity_draws(1, 10, 0), ">= 2 identities"),
    (lambda: bs.identity_draws(5, 0, 0), ">= 1 replicate"),
    (lambda: bs.basic_interval(0.0, [1.0]), ">= 2 finite replicates"),
    (lambda: bs.basic_interval(0.0, [1.0, float("nan")]), ">= 2 finite replicates"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(EvaluationError, match=message):
        call()
