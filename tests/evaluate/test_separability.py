"""Identity separability (NegFaceDiff / AdaptDiff protocol) against brute-force references, the
paper's own Table 3, and closed forms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from synthface_ray.evaluate import separability as sep
from synthface_ray.evaluate import verification as ver


def clustered(n_ids: int, per_id: int, dim: int = 32, noise: float = 0.6, seed: int = 0):
    """Unit embeddings: a random unit centre per identity plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.repeat(centres, per_id, axis=0)
    x += noise * rng.standard_normal((n_ids * per_id, dim)) / np.sqrt(dim)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(n_ids), per_id)


def brute_force_pairs(x: np.ndarray, labels: np.ndarray):
    """Every pair i < j, scored in float64: (genuine, impostor)."""
    scores = x @ x.T
    i, j = np.triu_indices(len(x), 1)
    same = labels[i] == labels[j]
    return scores[i, j][same], scores[i, j][~same]


def random_scores(seed: int, decimals: int | None):
    """Overlapping genuine ~ N(0.35, 0.15) and impostor ~ N(0, 0.1) cosines; rounded scores
    create ties (both classes at one threshold)."""
    rng = np.random.default_rng(seed)
    g = np.clip(rng.normal(0.35, 0.15, 1500), -1, 1)
    i = np.clip(rng.normal(0.0, 0.1, 6000), -1, 1)
    if decimals is not None:
        g, i = np.round(g, decimals), np.round(i, decimals)
    return g, i


def sweep(genuine: np.ndarray, impostor: np.ndarray):
    """Brute force: for every distinct score t (and +inf, accepting nothing), in decreasing
    order, FMR = mean(impostor >= t) and FNMR = mean(genuine < t), each counted directly."""
    thresholds = np.r_[np.inf, np.unique(np.r_[genuine, impostor])[::-1]]
    fmr = np.array([(impostor >= t).mean() for t in thresholds])
    fnmr = np.array([(genuine < t).mean() for t in thresholds])
    return fmr, fnmr


def sweep_eer(fmr: np.ndarray, fnmr: np.ndarray) -> float:
    """The first threshold (decreasing) where FMR >= FNMR, linearly interpolated with the one
    before: the crossing of the two error curves."""
    for k in range(1, len(fmr)):
        if fmr[k] >= fnmr[k]:
            d0, d1 = fnmr[k - 1] - fmr[k - 1], fnmr[k] - fmr[k]
            t = d0 / (d0 - d1) if d0 != d1 else 0.0
            return fmr[k - 1] + t * (fmr[k] - fmr[k - 1])
    raise AssertionError("no crossing")


# --------------------------------------------------------------------------- exact-score path


@pytest.mark.parametrize("seed,decimals", [(0, None), (1, None), (2, 2), (3, 3)])
def test_exact_path_equals_brute_force_sweep(seed, decimals):
    g, i = random_scores(seed, decimals)
    fmr, fnmr = sweep(g, i)
    res = sep.separability_from_scores(g, i)
    assert res.eer == pytest.approx(sweep_eer(fmr, fnmr), abs=1e-6)
    scores, issame = np.r_[g, i], np.r_[np.ones(g.size, bool), np.zeros(i.size, bool)]
    assert res.eer == pytest.approx(ver.eer(scores, issame), abs=1e-12)
    assert res.fmr1000 == pytest.approx(1 - ver.tar_at_far(scores, issame, 1e-3), abs=1e-12)
    assert 0.02 < res.eer < 0.2  # the distributions overlap: a non-trivial check
    assert res.fmr100 == pytest.approx(fnmr[fmr <= 0.01].min(), abs=1e-6)
    assert res.fmr1000 == pytest.approx(fnmr[fmr <= 0.001].min(), abs=1e-6)
    assert res.genuine_mean == pytest.approx(g.mean(), abs=1e-12)
    assert res.impostor_std == pytest.approx(i.std(), abs=1e-12)
    assert (res.n_genuine, res.n_impostor) == (g.size, i.size)


@pytest.mark.parametrize("decimals", [None, 2])
def test_count_functions_agree_with_verification_on_exact_counts(decimals):
    """With one 'bin' per distinct score the count-based EER / FNMR@FMR are the exact ones."""
    g, i = random_scores(5, decimals)
    values = np.unique(np.r_[g, i])
    gc = np.bincount(np.searchsorted(values, g), minlength=values.size)
    ic = np.bincount(np.searchsorted(values, i), minlength=values.size)
    scores, issame = np.r_[g, i], np.r_[np.ones(g.size, bool), np.zeros(i.size, bool)]
    assert sep.eer_from_counts(gc, ic) == pytest.approx(ver.eer(scores, issame), abs=1e-12)
    for rate in (0.01, 0.001):
        assert sep.fnmr_at_fmr(gc, ic, rate) == pytest.approx(
            1 - ver.tar_at_far(scores, issame, rate), abs=1e-12)


# --------------------------------------------------------------------------- histogram path


@pytest.mark.parametrize("seed,decimals,bins", [(0, None, sep.HIST_BINS), (2, 2, sep.HIST_BINS),
                                                (0, None, 256)])
def test_histogram_path_agrees_within_one_bin(seed, decimals, bins):
    """Streamed metrics use thresholds at bin edges (width 2/65536 ~ 3.05e-5). At every edge FMR
    and FNMR are exact (checked directly), so the two ROC curves share those points and differ
    only inside one bin: |EER_hist - EER_exact| <= the largest probability mass of a single bin
    (the crossing lies on the diagonal inside the same bin's box), and 0 <= FMR100_hist -
    FMR100_exact <= the largest genuine mass of one bin (the smallest feasible edge is at most
    one bin above the exact threshold). 256 coarse bins make the bound bite."""
    g, i = random_scores(seed, decimals)
    gh, ih = sep.ScoreHistogram.from_scores(g, bins), sep.ScoreHistogram.from_scores(i, bins)
    fmr_edges, fnmr_edges = sep.error_rates(gh.counts, ih.counts)
    edges = gh.edges
    occupied = np.flatnonzero(gh.counts + ih.counts)
    ks = np.r_[occupied, occupied + 1]
    for k in np.random.default_rng(0).choice(ks, min(300, ks.size), replace=False):
        assert fmr_edges[k] * i.size == pytest.approx((i >= edges[k]).sum(), abs=1e-9)
        assert fnmr_edges[k] * g.size == pytest.approx((g < edges[k]).sum(), abs=1e-9)
    hist = sep.separability_from_histograms(gh, ih)
    exact = sep.separability_from_scores(g, i, bins=bins)
    g_mass, i_mass = gh.counts.max() / g.size, ih.counts.max() / i.size
    assert abs(hist.eer - exact.eer) <= max(g_mass, i_mass) + 1e-12
    for h, e in ((hist.fmr100, exact.fmr100), (hist.fmr1000, exact.fmr1000)):
        assert -1e-12 <= h - e <= g_mass + 1e-12
    assert hist.impostor_mean == pytest.approx(exact.impostor_mean, abs=1e-12)
    assert hist.genuine_std == pytest.approx(exact.genuine_std, abs=1e-12)
    assert hist.eer_threshold == exact.eer_threshold  # both from the same histograms


def test_streamed_statistics_equal_brute_force_for_every_block_size():
    x, labels = clustered(30, 5)
    genuine, impostor = brute_force_pairs(x, labels)
    expected_counts = sep.ScoreHistogram.from_scores(impostor).counts
    results = [sep.separability(x, labels, block_identities=b, dtype=np.float64)
               for b in (1, 3, 7, 30, 100)]
    for res in results:
        assert (res.n_genuine, res.n_impostor) == (30 * 10, 150 * 149 // 2 - 300)
        assert res.impostor_mean == pytest.approx(impostor.mean(), abs=1e-9)
        assert res.impostor_std == pytest.approx(impostor.std(), abs=1e-9)
        assert res.genuine_mean == pytest.approx(genuine.mean(), abs=1e-9)
        assert res.genuine_std == pytest.approx(genuine.std(), abs=1e-9)
        np.testing.assert_allclose(np.sort(res.genuine_scores), np.sort(genuine), atol=1e-12)
        np.testing.assert_array_equal(res.impostor_counts, expected_counts)
        assert res.impostor_mode == "all" and res.n_identities == 30
        assert (res.eer, res.fmr100, res.fmr1000) == (results[0].eer, results[0].fmr100,
                                                      results[0].fmr1000)


def test_unequal_identity_sizes_match_brute_force():
    """Identities of 2..9 images (genuine scores are batched by identity size)."""
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(40), rng.integers(2, 10, 40))
    x, _ = clustered(len(labels), 1, seed=7)
    genuine, impostor = brute_force_pairs(x, labels)  # labels sorted: same pair order
    res = sep.separability(x, labels, block_identities=6, dtype=np.float64)
    np.testing.assert_allclose(res.genuine_scores, genuine, atol=1e-12)
    assert res.n_impostor == impostor.size
    assert res.impostor_std == pytest.approx(impostor.std(), abs=1e-9)
    np.testing.assert_array_equal(res.impostor_counts,
                                  sep.ScoreHistogram.from_scores(impostor).counts)


def test_float32_products_and_unordered_input():
    """float32 products change scores by ~1e-7 only; row order and label type are irrelevant."""
    x, labels = clustered(20, 6, seed=3)
    perm = np.random.default_rng(1).permutation(len(x))
    names = np.array([f"id{k:02d}" for k in labels])
    ref = sep.separability(x, labels, dtype=np.float64)
    res = sep.separability(x[perm] * 3.0, names[perm])  # un-normalised rows are normalised
    assert res.n_impostor == ref.n_impostor
    assert res.impostor_mean == pytest.approx(ref.impostor_mean, abs=1e-6)
    assert res.eer == pytest.approx(ref.eer, abs=1e-3)


def test_sampled_impostors_are_uniform_cross_identity_pairs():
    x, labels = clustered(30, 5)
    _, impostor = brute_force_pairs(x, labels)
    res = sep.separability(x, labels, impostor=200_000, seed=1, dtype=np.float64)
    assert res.n_impostor == 200_000 and res.impostor_mode == "sampled"
    # every sampled score is a real impostor score; the sample reproduces the population moments
    population = sep.ScoreHistogram.from_scores(impostor).counts
    assert res.impostor_counts[population == 0].sum() == 0
    assert res.impostor_mean == pytest.approx(impostor.mean(), abs=3 * impostor.std() / 400)
    assert res.impostor_std == pytest.approx(impostor.std(), rel=0.01)
    again = sep.separability(x, labels, impostor=200_000, seed=1, dtype=np.float64)
    assert again.impostor_mean == res.impostor_mean


# --------------------------------------------------------------------------- FDR and d'

# AdaptDiff (seed 003) supplementary Table 3: G-mean, G-STD, I-mean, I-STD, FDR.
TABLE3 = {
    "C-WF (authentic)": (0.536, 0.215, 0.003, 0.070, 5.541),
    "FFHQ IDiff-Face": (0.208, 0.104, 0.015, 0.059, 2.631),
    "FFHQ NegFaceDiff": (0.319, 0.123, 0.013, 0.058, 5.052),
    "FFHQ AdaptDiff": (0.356, 0.129, 0.015, 0.058, 5.806),
    "C-WF IDiff-Face": (0.151, 0.101, 0.010, 0.059, 1.454),
    "C-WF NegFaceDiff": (0.294, 0.140, 0.007, 0.058, 3.579),
    "C-WF AdaptDiff": (0.332, 0.150, 0.008, 0.058, 4.081),
}
LFW = (0.708, 0.099, 0.003, 0.070, 33.301)


@pytest.mark.parametrize("row", sorted(TABLE3))
def test_fdr_reproduces_adaptdiff_table3(row):
    mu_g, s_g, mu_i, s_i, table_fdr = TABLE3[row]
    assert sep.fdr(mu_g, s_g, mu_i, s_i) == pytest.approx(table_fdr, rel=0.01)


def test_fdr_lfw_row_of_table3_is_inconsistent_with_its_own_moments():
    """The LFW row's FDR (33.301) is 1.5% below what its printed moments give (33.81), and below
    even the smallest value any rounding (+-0.0005) of those moments allows (33.33): a
    discrepancy in the paper (its I-mean/I-STD equal the C-WF row's), not in fdr()."""
    mu_g, s_g, mu_i, s_i, table_fdr = LFW
    assert sep.fdr(mu_g, s_g, mu_i, s_i) == pytest.approx(33.809, abs=1e-3)
    corners = [sep.fdr(mu_g + a, s_g + c, mu_i + b, s_i + d)
               for a, b, c, d in itertools.product((-5e-4, 5e-4), repeat=4)]
    assert min(corners) > table_fdr


def test_d_prime_on_known_gaussians():
    rng = np.random.default_rng(0)
    g, i = rng.normal(0.5, 0.1, 200_000), rng.normal(0.0, 0.1, 200_000)
    assert sep.d_prime(g.mean(), g.std(), i.mean(), i.std()) == pytest.approx(5.0, rel=0.02)
    assert sep.d_prime(0.5, 0.1, 0.0, 0.1) == pytest.approx(5.0, abs=1e-12)
    res = sep.separability_from_scores(np.clip(g, -1, 1), np.clip(i, -1, 1))
    assert res.d_prime == pytest.approx(5.0, rel=0.02)
    assert res.d_prime == pytest.approx(np.sqrt(2 * res.fdr), rel=1e-12)
    assert res.eer_threshold == pytest.approx(0.25, abs=0.01)  # equal variances: the midpoint


def test_fdr_and_d_prime_degenerate_cases():
    assert sep.fdr(1.0, 0.0, 0.0, 0.0) == np.inf and sep.d_prime(1.0, 0.0, 0.0, 0.0) == np.inf
    with pytest.raises(sep.EvaluationError, match="undefined"):
        sep.fdr(0.3, 0.0, 0.3, 0.0)
    with pytest.raises(sep.EvaluationError, match=">= 0"):
        sep.d_prime(0.5, -0.1, 0.0, 0.1)


def test_perfect_separation():
    res = sep.separability_from_scores(np.full(10, 0.9), np.full(100, 0.1))
    assert (res.eer, res.fmr100, res.fmr1000) == (0.0, 0.0, 0.0)
    hist = sep.separability_from_histograms(sep.ScoreHistogram.from_scores(np.full(10, 0.9)),
                                            sep.ScoreHistogram.from_scores(np.full(100, 0.1)))
    assert (hist.eer, hist.fmr100, hist.fmr1000) == (0.0, 0.0, 0.0)


# --------------------------------------------------------------------------- identity sampling


def test_sample_identities_is_reproducible_and_keeps_small_identities():
    labels = np.r_[np.repeat(np.arange(50), 30), np.repeat([50, 51], 3)]
    rows = sep.sample_identities(labels, n_identities=52, images_per_identity=20, seed=4)
    ids, counts = np.unique(labels[rows], return_counts=True)
    assert len(ids) == 52 and counts[:50].tolist() == [20] * 50 and counts[50:].tolist() == [3, 3]
    np.testing.assert_array_equal(rows, sep.sample_identities(labels, 52, 20, seed=4))
    sub = sep.sample_identities(labels, n_identities=10, images_per_identity=None, seed=1)
    assert len(np.unique(labels[sub])) == 10 and len(np.unique(sub)) == len(sub)
    assert not np.array_equal(sub, sep.sample_identities(labels, 10, None, seed=2))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("make,match", [
    (lambda x, y: (x, np.r_[y[:-1], 99]), "identity 99 has 1 image"),
    (lambda x, y: (x, np.zeros_like(y)), "single identity"),
    (lambda x, y: (np.where(np.arange(len(x))[:, None] == 7, np.nan, x), y), "row 7 has NaN"),
    (lambda x, y: (x, y[:-3]), "mismatched lengths"),
    (lambda x, y: (np.where(np.arange(len(x))[:, None] == 4, 0.0, x), y), "row 4 is all zeros"),
])
def test_bad_input_names_the_problem(make, match):
    x, labels = clustered(5, 4)
    with pytest.raises(sep.EvaluationError, match=match):
        sep.separability(*make(x, labels))


def test_bad_input_names_a_string_identity_and_bad_options():
    x, labels = clustered(5, 4)
    names = np.array(["ann"] * 4 + ["bob"] * 3 + ["cid"] + ["dee"] * 12)
    with pytest.raises(sep.EvaluationError, match="identity 'cid' has 1 image"):
        sep.separability(x, names)
    with pytest.raises(sep.EvaluationError, match="identity 'cid'"):
        sep.sample_identities(names)
    with pytest.raises(sep.EvaluationError, match="n_identities=10"):
        sep.sample_identities(labels, n_identities=10)
    for bad in ("some", 0, True, 2.5):
        with pytest.raises(sep.EvaluationError, match="impostor="):
            sep.separability(x, labels, impostor=bad)
    with pytest.raises(sep.EvaluationError, match="block_identities"):
        sep.separability(x, labels, block_identities=0)
    with pytest.raises(sep.EvaluationError, match="in \\[-1, 1\\]"):
        sep.separability_from_scores([0.5, 2.0], [0.1])
    with pytest.raises(sep.EvaluationError, match="impostor score 1 is NaN"):
        sep.separability_from_scores([0.5], [0.1, np.nan])
    with pytest.raises(sep.EvaluationError, match="same bins"):
        sep.eer_from_counts(np.ones(4, int), np.ones(5, int))
