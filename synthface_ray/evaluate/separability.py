"""Identity separability of a labelled face-embedding set (the NegFaceDiff / AdaptDiff protocol).

NegFaceDiff (Caldeira, Damer & Boutros 2025) and AdaptDiff (supplementary, "Identity
Separability Evaluation" and Table 3) judge a synthetic face dataset by the scores a pre-trained
FR model gives its pairs: 1,000 identities x 20 images are embedded; every same-identity pair
gives a *genuine* cosine score, every cross-identity pair an *impostor* score, and the two score
distributions are summarised by

- EER, FMR100, FMR1000: "the lowest false non-match rate (FNMR) for a false match rate (FMR)
  < 1.0% and < 0.1%" -- here FMR <= 1% / 0.1%, the convention of
  :func:`synthface_ray.evaluate.verification.tar_at_far`;
- the genuine and impostor means and standard deviations (G-mean, G-STD, I-mean, I-STD);
- the Fisher Discriminant Ratio (Poh & Bengio 2004),
  FDR = (mu_G - mu_I)^2 / (sigma_G^2 + sigma_I^2);
- (not in the paper) the decidability index d' = |mu_G - mu_I| / sqrt((sigma_G^2 + sigma_I^2) / 2)
  (Daugman), which is sqrt(2 FDR).

A pair *matches* when its score >= the threshold. Standard deviations are population ones (ddof=0).
Embeddings are compared by cosine: rows are normalised to unit length.

Impostor scores, two ways (``impostor=`` of :func:`separability`):

- ``"all"``: every cross-identity pair, N(N-1)/2 - n_genuine (199.8M for 1000 x 20). They
  are never materialised: identities are taken in blocks, and each block's rows are multiplied by
  the rows of its own and all later identities (each unordered pair once). Per block, the exact
  float64 sum, sum of squares and count are accumulated (exact mean/std), and the scores are
  counted into a fixed histogram of ``HIST_BINS`` = 65,536 equal bins over [-1, 1] (int64
  counts; bin width 2/65536 ~ 3.05e-5). FMR and FNMR are then *exact at the bin edges*: EER,
  FMR100 and FMR1000 are computed with thresholds restricted to bin edges (see
  :func:`error_rates`), so they may differ from the exact-score values by at most the
  probability mass of one bin (tested).
- an ``int`` k: k impostor pairs drawn uniformly (with replacement) from all cross-identity
  pairs, each scored exactly (float32 or float64 dot products); EER / FMR100 / FMR1000 come from
  the exact scores (:func:`synthface_ray.evaluate.verification.roc` and the rules of its ``eer``
  and ``tar_at_far``), with the sampling error of k pairs (FMR1000 from 1M pairs rests on
  ~1,000 impostors above the threshold).

Genuine scores (1000 x 190 = 190k) are always computed and kept exactly.

Pure numpy; no model, no Ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from synthface_ray.evaluate.verification import roc

HIST_BINS = 65536  # fine histogram of the streamed scores over [-1, 1]
BIN_WIDTH = 2.0 / HIST_BINS  # ~3.05e-5: the threshold resolution of the streamed metrics
FMR100, FMR1000 = 0.01, 0.001
SCORE_SLACK = 1e-5  # cosines computed in float32 may exceed [-1, 1] by rounding
SAMPLE_CHUNK = 2048  # pairs (rows) gathered at a time: two float32 chunks stay in cache
CHECK_CHUNK = 2048  # rows validated and normalised at a time


class EvaluationError(ValueError):
    """Invalid input to an evaluation function; the message names the problem."""


# --------------------------------------------------------------------------- score histograms


@dataclass(eq=False)
class ScoreHistogram:
    """Streaming summary of a score set: exact float64 ``total``, ``total_sq`` and ``count``
    (hence exact mean/std) and int64 ``counts`` of equal bins over [-1, 1]. Bin k holds scores
    in [edges[k], edges[k+1]); scores outside [-1, 1] (rounding) go to the end bins, so a score
    of exactly 1 is in the last bin. With a power-of-two number of bins (the default 65,536) the
    edges and the binning arithmetic are exact in float64."""

    counts: np.ndarray
    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    @classmethod
    def empty(cls, bins: int = HIST_BINS) -> ScoreHistogram:
        return cls(np.zeros(int(bins), dtype=np.int64))

    @classmethod
    def from_scores(cls, scores, bins: int = HIST_BINS) -> ScoreHistogram:
        hist = cls.empty(bins)
        hist.add(scores)
        return hist

    @property
    def bins(self) -> int:
        return len(self.counts)

    @property
    def edges(self) -> np.ndarray:
        """``bins + 1`` bin edges from -1 to 1 (exact binary fractions)."""
        return np.linspace(-1.0, 1.0, self.bins + 1)

    @property
    def mean(self) -> float:
        return self.total / self.count

    @property
    def std(self) -> float:
        """Population standard deviation from the sums (clipped at 0 against rounding)."""
        return math.sqrt(max(self.total_sq / self.count - self.mean**2, 0.0))

    def add(self, scores) -> None:
        """Count a block of scores (any shape; copied, never modified). Holds one float64 copy
        and one intp index array of the block: 16 bytes per score."""
        s = np.array(scores, dtype=np.float64, copy=True).ravel()
        if not s.size:
            return
        self.count += s.size
        self.total += float(s.sum())
        self.total_sq += float(np.dot(s, s))
        half = self.bins / 2.0
        s += 1.0
        s *= half  # s + 1 >= 0 up to rounding; clipped below, so truncation is floor
        np.clip(s, 0.0, self.bins - 1, out=s)
        self.counts += np.bincount(s.astype(np.intp), minlength=self.bins)


def _check_counts(genuine_counts, impostor_counts) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(genuine_counts)
    i = np.asarray(impostor_counts)
    if g.ndim != 1 or g.shape != i.shape:
        raise EvaluationError(f"genuine counts {g.shape} and impostor counts {i.shape} must be "
                              "1-D histograms over the same bins")
    g, i = g.astype(np.int64), i.astype(np.int64)
    if (g < 0).any() or (i < 0).any():
        raise EvaluationError("histogram counts must be non-negative")
    if not g.sum() or not i.sum():
        raise EvaluationError(f"need genuine and impostor scores, got {g.sum()} genuine and "
                              f"{i.sum()} impostor counts")
    return g, i


def _roc_from_counts(genuine_counts, impostor_counts) -> tuple[np.ndarray, np.ndarray]:
    """``(far, frr)`` at decreasing thresholds edges[bins], edges[bins-1], ..., edges[0]: point j
    accepts the top j bins. Same order and arithmetic as ``verification.roc``."""
    g, i = _check_counts(genuine_counts, impostor_counts)
    far = np.r_[0, np.cumsum(i[::-1])] / i.sum()
    tar = np.r_[0, np.cumsum(g[::-1])] / g.sum()
    return far, 1.0 - tar


def error_rates(genuine_counts, impostor_counts) -> tuple[np.ndarray, np.ndarray]:
    """``(fmr, fnmr)``, each of length bins + 1: accepting ``score >= edges[k]`` (bins k and
    above) gives ``fmr[k]`` = impostor counts in bins >= k / n_I and ``fnmr[k]`` = genuine counts
    in bins < k / n_G; k = bins accepts nothing. Exact at the bin edges."""
    far, frr = _roc_from_counts(genuine_counts, impostor_counts)
    return far[::-1], frr[::-1]


def _crossing(far: np.ndarray, frr: np.ndarray) -> tuple[float, int, float]:
    """``(eer, i, t)``: the first point i where FAR >= FRR and the interpolation weight t between
    points i-1 and i -- the rule of ``verification.eer``."""
    i = int(np.flatnonzero(far >= frr)[0])
    if i == 0:
        return 0.0, 0, 0.0
    d0, d1 = frr[i - 1] - far[i - 1], frr[i] - far[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(far[i - 1] + t * (far[i] - far[i - 1])), i, float(t)


def eer_from_counts(genuine_counts, impostor_counts) -> float:
    """Equal error rate (FMR = FNMR) from two histograms over the same bins, thresholds at bin
    edges, linearly interpolated between the two edges around the crossing -- the same rule as
    :func:`synthface_ray.evaluate.verification.eer` on exact scores."""
    return _crossing(*_roc_from_counts(genuine_counts, impostor_counts))[0]


def eer_threshold(genuine_counts, impostor_counts) -> float:
    """The score threshold at the EER crossing (interpolated between the two bin edges around
    it), for histograms over [-1, 1]; resolution one bin width."""
    far, frr = _roc_from_counts(genuine_counts, impostor_counts)
    _, i, t = _crossing(far, frr)
    thresholds = np.linspace(1.0, -1.0, len(far))  # edges, decreasing like far/frr
    if i == 0:
        return float(thresholds[0])
    return float(thresholds[i - 1] + t * (thresholds[i] - thresholds[i - 1]))


def fnmr_at_fmr(genuine_counts, impostor_counts, fmr: float) -> float:
    """The lowest FNMR over bin-edge thresholds whose FMR is <= ``fmr`` (FMR100: fmr=0.01,
    FMR1000: fmr=0.001), i.e. ``1 - tar_at_far`` on histograms."""
    if not 0.0 <= fmr <= 1.0:
        raise EvaluationError(f"fmr={fmr} must be a rate in [0, 1]")
    far, frr = _roc_from_counts(genuine_counts, impostor_counts)
    return float(frr[far <= fmr].min())


# --------------------------------------------------------------------------- closed forms


def _check_moments(mu_g, sigma_g, mu_i, sigma_i) -> float:
    values = (mu_g, sigma_g, mu_i, sigma_i)
    if not all(math.isfinite(float(v)) for v in values):
        raise EvaluationError(f"means and standard deviations must be finite, got {values}")
    if sigma_g < 0 or sigma_i < 0:
        raise EvaluationError(f"standard deviations must be >= 0, got {sigma_g} and {sigma_i}")
    var = float(sigma_g) ** 2 + float(sigma_i) ** 2
    if var == 0 and mu_g == mu_i:
        raise EvaluationError("both distributions are the same single value: separability "
                              "is undefined (0 / 0)")
    return var


def fdr(mu_g: float, sigma_g: float, mu_i: float, sigma_i: float) -> float:
    """Fisher Discriminant Ratio (Poh & Bengio 2004; AdaptDiff Table 3):
    (mu_G - mu_I)^2 / (sigma_G^2 + sigma_I^2). Infinite for two distinct constant score sets."""
    var = _check_moments(mu_g, sigma_g, mu_i, sigma_i)
    return math.inf if var == 0 else (float(mu_g) - float(mu_i)) ** 2 / var


def d_prime(mu_g: float, sigma_g: float, mu_i: float, sigma_i: float) -> float:
    """Decidability index (Daugman): |mu_G - mu_I| / sqrt((sigma_G^2 + sigma_I^2) / 2)
    = sqrt(2 FDR). Infinite for two distinct constant score sets."""
    var = _check_moments(mu_g, sigma_g, mu_i, sigma_i)
    return math.inf if var == 0 else abs(float(mu_g) - float(mu_i)) / math.sqrt(var / 2)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class SeparabilityResult:
    """AdaptDiff Table 3's columns plus d', the pair counts and the histograms for the plot.

    ``genuine_counts`` / ``impostor_counts``: int64 histograms over ``HIST_BINS`` equal bins of
    [-1, 1] (both modes); ``genuine_scores``: the exact genuine scores (float64).
    ``impostor_mode``: ``"all"`` (streamed; error rates at bin resolution), ``"sampled"``
    (``impostor=k``) or ``"exact"`` (:func:`separability_from_scores` on given scores)."""

    eer: float
    fmr100: float
    fmr1000: float
    eer_threshold: float
    genuine_mean: float
    genuine_std: float
    impostor_mean: float
    impostor_std: float
    fdr: float
    d_prime: float
    n_genuine: int
    n_impostor: int
    impostor_mode: str
    genuine_counts: np.ndarray
    impostor_counts: np.ndarray
    genuine_scores: np.ndarray | None = None
    n_identities: int | None = None

    def summary(self) -> str:
        ids = f"{self.n_identities} identities, " if self.n_identities else ""
        return (f"EER {self.eer:.4f} | FMR100 {self.fmr100:.4f} | FMR1000 {self.fmr1000:.4f} | "
                f"genuine {self.genuine_mean:.3f} +- {self.genuine_std:.3f} | impostor "
                f"{self.impostor_mean:.3f} +- {self.impostor_std:.3f} | FDR {self.fdr:.3f} | "
                f"d' {self.d_prime:.3f} | {ids}{self.n_genuine} genuine, {self.n_impostor} "
                f"impostor pairs ({self.impostor_mode})")


def _check_scores(scores, name: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).ravel()
    if not s.size:
        raise EvaluationError(f"no {name} scores")
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        raise EvaluationError(f"{name} score {bad[0]} is NaN or infinite ({bad.size} bad)")
    if np.abs(s).max() > 1.0 + SCORE_SLACK:
        raise EvaluationError(f"{name} scores must be cosines in [-1, 1], got range "
                              f"[{s.min():.6g}, {s.max():.6g}]")
    return s


def _result(rates: tuple[float, float, float, float], gh: ScoreHistogram, ih: ScoreHistogram,
            moments: tuple[float, float, float, float], mode: str, genuine) -> SeparabilityResult:
    return SeparabilityResult(*rates, *moments, fdr(*moments), d_prime(*moments), gh.count,
                              ih.count, mode, gh.counts, ih.counts, genuine)


def separability_from_scores(genuine, impostor, bins: int = HIST_BINS,
                             mode: str = "exact") -> SeparabilityResult:
    """All metrics from exact genuine and impostor cosine scores: one ``verification.roc``
    (thresholds at every distinct score), from which EER by the rule of ``verification.eer`` and
    FMR100 / FMR1000 as ``1 - verification.tar_at_far`` (tested equal to both and to a
    brute-force sweep); mean/std exact; the histograms (``bins`` over [-1, 1]) are for the plot
    and the EER threshold."""
    g, i = _check_scores(genuine, "genuine"), _check_scores(impostor, "impostor")
    far, tar, _ = roc(np.r_[g, i], np.r_[np.ones(g.size, bool), np.zeros(i.size, bool)])
    gh, ih = ScoreHistogram.from_scores(g, bins), ScoreHistogram.from_scores(i, bins)
    rates = (_crossing(far, 1.0 - tar)[0], 1.0 - float(tar[far <= FMR100].max()),
             1.0 - float(tar[far <= FMR1000].max()), eer_threshold(gh.counts, ih.counts))
    moments = (float(g.mean()), float(g.std()), float(i.mean()), float(i.std()))
    return _result(rates, gh, ih, moments, mode, g)


def separability_from_histograms(genuine: ScoreHistogram, impostor: ScoreHistogram,
                                 genuine_scores=None) -> SeparabilityResult:
    """All metrics from two streamed histograms: error rates at bin-edge thresholds
    (:func:`eer_from_counts`, :func:`fnmr_at_fmr`), mean/std exact from the float64 sums."""
    g, i = genuine.counts, impostor.counts
    rates = (eer_from_counts(g, i), fnmr_at_fmr(g, i, FMR100), fnmr_at_fmr(g, i, FMR1000),
             eer_threshold(g, i))
    moments = (genuine.mean, genuine.std, impostor.mean, impostor.std)
    return _result(rates, genuine, impostor, moments, "all", genuine_scores)


# --------------------------------------------------------------------------- inputs


def _name(identity) -> str:
    return repr(identity.item() if isinstance(identity, np.generic) else identity)


def check_labels(labels, n_rows: int | None = None,
                 min_identities: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, codes, counts)`` of a 1-D label array: ``ids[codes] == labels``. Raises
    :class:`EvaluationError` for a length other than ``n_rows``, fewer than ``min_identities``
    identities (a single one has no impostor pair), or an identity with fewer than 2 images
    (named: it has no genuine pair)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise EvaluationError(f"labels must be 1-D, got shape {labels.shape}")
    if n_rows is not None and len(labels) != n_rows:
        raise EvaluationError(f"mismatched lengths: embeddings has {n_rows} rows but labels has "
                              f"{len(labels)} entries")
    ids, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if not len(ids) or len(ids) < min_identities:
        only = f" ({_name(ids[0])})" if len(ids) else ""
        raise EvaluationError(f"a single identity{only}: impostor pairs need at least 2 "
                              f"identities, got {len(ids)}")
    few = np.flatnonzero(counts < 2)
    if few.size:
        raise EvaluationError(f"identity {_name(ids[few[0]])} has {counts[few[0]]} image: genuine "
                              f"pairs need at least 2 images per identity ({few.size} such "
                              "identities; drop them first)")
    return ids, codes.ravel().astype(np.int64), counts


def _check_matrix(embeddings, name: str) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[1] < 1 or not np.issubdtype(x.dtype, np.number):
        raise EvaluationError(f"{name} must be a numeric (N, D) array, got shape {x.shape} "
                              f"dtype {x.dtype}")
    bad = np.concatenate([start + np.flatnonzero(~np.isfinite(x[start:start + CHECK_CHUNK]).all(axis=1))
                          for start in range(0, len(x), CHECK_CHUNK)] or [np.empty(0, np.int64)])
    if bad.size:
        raise EvaluationError(f"{name} row {bad[0]} has NaN or inf values ({bad.size} bad rows)")
    return x


def _unit_rows(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows scaled to unit length in float64, which rows are all zeros)``."""
    chunk = chunk.astype(np.float64)
    norms = np.linalg.norm(chunk, axis=1)
    return chunk / np.where(norms == 0, 1.0, norms)[:, None], norms == 0


def validate_embeddings(embeddings, name: str = "embeddings") -> np.ndarray:
    """The (N, D) matrix as it is (no copy), after the checks of :func:`check_embeddings`, made
    ``CHECK_CHUNK`` rows at a time: for metrics that use a few rows of a large set at once."""
    x = _check_matrix(embeddings, name)
    for start in range(0, len(x), CHECK_CHUNK):
        zero = np.flatnonzero(~x[start:start + CHECK_CHUNK].any(axis=1))
        if zero.size:
            raise EvaluationError(f"{name} row {start + zero[0]} is all zeros: a cosine needs a direction")
    return x


def unit_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of a :func:`validate_embeddings` matrix in float64 at unit length (the same numbers
    :func:`check_embeddings` gives them)."""
    return _unit_rows(x[rows])[0]


def check_embeddings(embeddings, name: str = "embeddings", dtype=np.float64,
                     order=None) -> np.ndarray:
    """A new C-contiguous (N, D) ``dtype`` array of the rows (in ``order`` if given) scaled to
    unit length, normalised in float64 ``CHECK_CHUNK`` rows at a time (memory: the output plus
    one chunk). NaN/inf or all-zero rows raise :class:`EvaluationError` naming the first one."""
    x = _check_matrix(embeddings, name)
    order = np.arange(len(x)) if order is None else np.asarray(order)
    out = np.empty((len(order), x.shape[1]), dtype=dtype)
    zero = []
    for start in range(0, len(order), CHECK_CHUNK):
        rows = order[start:start + CHECK_CHUNK]
        unit, zeros = _unit_rows(x[rows])
        zero.extend(rows[zeros].tolist())
        out[start:start + len(rows)] = unit
    if zero:
        raise EvaluationError(f"{name} row {min(zero)} is all zeros: a cosine needs a direction")
    return out


def sample_identities(labels, n_identities: int | None = 1000,
                      images_per_identity: int | None = 20, seed: int = 0) -> np.ndarray:
    """Sorted row indices of a reproducible subsample: ``n_identities`` identities drawn without
    replacement (None: all), and of each ``images_per_identity`` images drawn without replacement
    (None: all; an identity with fewer keeps all of its >= 2). The AdaptDiff protocol is
    1,000 x 20. Every identity needs >= 2 images (else :class:`EvaluationError` naming it)."""
    ids, codes, counts = check_labels(labels)
    if n_identities is not None and not 2 <= n_identities <= len(ids):
        raise EvaluationError(f"n_identities={n_identities}: need between 2 and the {len(ids)} "
                              "identities available")
    if images_per_identity is not None and images_per_identity < 2:
        raise EvaluationError(f"images_per_identity={images_per_identity} must be >= 2")
    rng = np.random.default_rng(seed)
    chosen = (np.arange(len(ids)) if n_identities is None
              else np.sort(rng.choice(len(ids), int(n_identities), replace=False)))
    order = np.argsort(codes, kind="stable")
    bounds = np.r_[0, np.cumsum(counts)]
    rows = []
    for k in chosen:
        own = order[bounds[k]:bounds[k + 1]]
        take = len(own) if images_per_identity is None else min(len(own), images_per_identity)
        rows.append(rng.choice(own, take, replace=False))
    return np.sort(np.concatenate(rows)).astype(np.int64)


# --------------------------------------------------------------------------- scoring


def _block_codes(bounds: np.ndarray, b0: int, b1: int) -> np.ndarray:
    return np.repeat(np.arange(b1 - b0), np.diff(bounds[b0:b1 + 1]))


def genuine_scores(x: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """All within-identity pairs i < j of identity-sorted unit rows ``x`` (identity k owns rows
    bounds[k]:bounds[k+1]), identity by identity. Identities of equal size m are scored together
    as one (k, m, m) batch of Gram matrices, ``SAMPLE_CHUNK`` rows per batch at most."""
    sizes = np.diff(bounds)
    offsets = np.r_[0, np.cumsum(sizes * (sizes - 1) // 2)]
    out = np.empty(offsets[-1], dtype=np.float64)
    for m in np.unique(sizes):
        iu, ju = np.triu_indices(m, 1)
        members = np.flatnonzero(sizes == m)
        for part in np.array_split(members, -(-len(members) * m // SAMPLE_CHUNK)):
            rows = bounds[part][:, None] + np.arange(m)  # (k, m) row indices
            grams = np.matmul(x[rows], x[rows].transpose(0, 2, 1))
            out[offsets[part][:, None] + np.arange(iu.size)] = grams[:, iu, ju]
    return out


def _stream_impostors(x: np.ndarray, bounds: np.ndarray, block: int, bins: int) -> ScoreHistogram:
    """Every cross-identity pair once: block rows r0:r1 against rows r0: (the block's own
    cross-identity upper triangle, then all later identities). Holds one (r1-r0) x (N-r0) score
    matrix at a time."""
    hist = ScoreHistogram.empty(bins)
    for b0 in range(0, len(bounds) - 1, block):
        b1 = min(b0 + block, len(bounds) - 1)
        r0, r1 = bounds[b0], bounds[b1]
        s = x[r0:r1] @ x[r0:].T
        c = _block_codes(bounds, b0, b1)
        hist.add(s[:, :r1 - r0][np.triu(c[:, None] != c[None, :], 1)])
        hist.add(s[:, r1 - r0:])
        del s
    return hist


def sample_impostor_scores(x: np.ndarray, codes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Scores of ``k`` cross-identity pairs drawn uniformly with replacement: ordered row pairs
    (a, b) uniform over all N^2, rejected when same-identity (each unordered cross pair is then
    equally likely), scored ``SAMPLE_CHUNK`` pairs at a time in order of a."""
    rng, n = np.random.default_rng(seed), len(x)
    p_cross = 1.0 - float(((np.bincount(codes) / n) ** 2).sum())
    a_parts, b_parts, need = [], [], k
    while need:
        a, b = rng.integers(0, n, (2, int(need / p_cross * 1.05) + 16))
        ok = np.flatnonzero(codes[a] != codes[b])[:need]
        a_parts.append(a[ok])
        b_parts.append(b[ok])
        need -= ok.size
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    by_a = np.argsort(a, kind="stable")  # gathering x[a] in row order is ~2x faster
    a, b = a[by_a], b[by_a]
    out = np.empty(k, dtype=np.float64)
    for start in range(0, k, SAMPLE_CHUNK):
        sl = slice(start, start + SAMPLE_CHUNK)
        out[sl] = np.einsum("ij,ij->i", x[a[sl]], x[b[sl]])
    return out


def _check_options(impostor, block_identities, bins, dtype) -> int | None:
    if not (isinstance(block_identities, int | np.integer) and block_identities >= 1):
        raise EvaluationError(f"block_identities={block_identities!r} must be a positive integer")
    if not (isinstance(bins, int | np.integer) and bins >= 2):
        raise EvaluationError(f"bins={bins!r} must be an integer >= 2")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise EvaluationError(f"dtype={dtype!r} must be float32 or float64")
    if isinstance(impostor, str) and impostor == "all":
        return None
    if isinstance(impostor, int | np.integer) and not isinstance(impostor, bool) and impostor > 0:
        return int(impostor)
    raise EvaluationError(f"impostor={impostor!r} must be 'all' or a positive number of pairs")


def separability(embeddings, labels, impostor: str | int = "all", *, block_identities: int = 8,
                 bins: int = HIST_BINS, seed: int = 0, dtype=np.float32) -> SeparabilityResult:
    """Identity separability of ``embeddings`` (N, D) labelled by ``labels`` (N,): all genuine
    pairs exactly, impostor pairs ``"all"`` (streamed) or a uniform sample of ``impostor`` pairs
    (``seed``) -- see the module docstring. Rows are normalised; products in ``dtype`` (float32:
    score rounding ~1e-7, far below the bin width), sums in float64.

    Memory bound of the streamed path: one block of scores at a time, at most
    rows_per_block x N of them, ~20 bytes each (the float32 product, its float64 copy, the intp
    bin indices; 24 with ``dtype=float64``) -- for 1000 x 20 with ``block_identities=8``: 160 x 20,000 x 20 B ~ 64 MB --
    plus the float32 embeddings (N x D x 4 B, one identity-sorted unit copy), the genuine scores
    and two int64 histograms (512 KiB each). The sampled path holds 2 x ``SAMPLE_CHUNK``
    gathered rows and k scores (plus k row pairs)."""
    k = _check_options(impostor, block_identities, bins, dtype)
    ids, codes, counts = check_labels(labels, len(_check_matrix(embeddings, "embeddings")))
    order = np.argsort(codes, kind="stable")
    x = check_embeddings(embeddings, dtype=dtype, order=order)
    codes = codes[order]
    bounds = np.r_[0, np.cumsum(counts)]
    genuine = genuine_scores(x, bounds)
    if k is None:
        result = separability_from_histograms(
            ScoreHistogram.from_scores(genuine, bins),
            _stream_impostors(x, bounds, int(block_identities), int(bins)), genuine)
    else:
        result = separability_from_scores(genuine, sample_impostor_scores(x, codes, k, seed), bins,
                                          mode="sampled")
    return replace(result, n_identities=len(ids))


__all__ = [
    "BIN_WIDTH", "FMR100", "FMR1000", "HIST_BINS", "EvaluationError", "ScoreHistogram",
    "SeparabilityResult", "check_embeddings", "check_labels", "d_prime", "eer_from_counts",
    "eer_threshold", "error_rates", "fdr", "fnmr_at_fmr", "genuine_scores", "sample_identities",
    "sample_impostor_scores", "separability", "separability_from_histograms", "separability_from_scores",
    "unit_rows", "validate_embeddings",
]
