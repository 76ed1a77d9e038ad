"""Face verification metrics over similarity scores of pairs (higher score = more alike).

- ROC, TAR at a given FAR, and the equal error rate (EER) from the scores of genuine (same
  identity) and impostor pairs;
- 10-fold verification accuracy by the LFW protocol (Huang et al. 2007, "unrestricted" view 2;
  insightface ``verification.py``): pairs are split into 10 consecutive folds, the threshold that
  maximises accuracy on 9 folds is applied to the 10th, and the 10 test accuracies are averaged;
- genuine/impostor pairs drawn from the identities of any labelled set.

Pure numpy; no model, no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _check(scores: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, issame = np.asarray(scores, np.float64).ravel(), np.asarray(issame, bool).ravel()
    if scores.shape != issame.shape:
        raise ValueError(f"scores ({scores.size}) and issame ({issame.size}) differ in length")
    if issame.all() or not issame.any():
        raise ValueError("need both genuine (issame=True) and impostor (issame=False) pairs")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    return scores, issame


def roc(scores, issame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(far, tar, thresholds)``: accepting ``score >= thresholds[i]`` gives false-accept rate
    ``far[i]`` and true-accept rate ``tar[i]``; thresholds decrease, far and tar increase."""
    scores, issame = _check(scores, issame)
    order = np.argsort(-scores, kind="stable")
    s, same = scores[order], issame[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each distinct score
    tar = np.cumsum(same)[last] / same.sum()
    far = np.cumsum(~same)[last] / (~same).sum()
    return np.r_[0.0, far], np.r_[0.0, tar], np.r_[np.inf, s[last]]


def tar_at_far(scores, issame, far: float) -> float:
    """The highest TAR whose FAR does not exceed ``far``."""
    fars, tars, _ = roc(scores, issame)
    return float(tars[fars <= far].max())


def eer(scores, issame) -> float:
    """Equal error rate: where the false-accept and false-reject rates cross (linear
    interpolation between the two ROC points around the crossing)."""
    fars, tars, _ = roc(scores, issame)
    frr = 1.0 - tars
    i = int(np.flatnonzero(fars >= frr)[0])  # far rises, frr falls: first point past the crossing
    if i == 0:
        return 0.0
    d0, d1 = frr[i - 1] - fars[i - 1], frr[i] - fars[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fars[i - 1] + t * (fars[i] - fars[i - 1]))


def best_threshold(scores: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """``(threshold, accuracy)`` maximising accuracy of ``score >= threshold`` on these pairs."""
    order = np.argsort(-scores, kind="stable")
    s, same = scores[order], issame[order]
    correct = (~same).sum() + np.cumsum(np.where(same, 1, -1))  # accept the first k pairs
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    k = int(last[np.argmax(correct[last])])
    reject_all = (~same).sum()
    if reject_all >= correct[k]:
        return float(s[0]) + 1e-6, reject_all / s.size
    thr = s[k] if k == s.size - 1 else (s[k] + s[k + 1]) / 2  # midway to the next score
    return float(thr), float(correct[k] / s.size)


@dataclass
class VerificationResult:
    accuracy: float
    accuracy_std: float
    eer: float
    tar_at_far_1e3: float
    tar_at_far_1e4: float
    pairs: int
    folds: int = 10

    def summary(self) -> str:
        return (f"accuracy {self.accuracy:.4f} +- {self.accuracy_std:.4f} ({self.folds}-fold), EER "
                f"{self.eer:.4f}, TAR@FAR=1e-3 {self.tar_at_far_1e3:.4f}, TAR@FAR=1e-4 "
                f"{self.tar_at_far_1e4:.4f}, {self.pairs} pairs")


def kfold_accuracy(scores, issame, folds: int = 10) -> tuple[float, float]:
    """LFW protocol: mean and std of the test-fold accuracies with thresholds chosen on the
    other ``folds - 1`` consecutive folds."""
    scores, issame = _check(scores, issame)
    if scores.size < folds:
        raise ValueError(f"{scores.size} pairs cannot be split into {folds} folds")
    parts = np.array_split(np.arange(scores.size), folds)
    accs = []
    for test in parts:
        train = np.setdiff1d(np.arange(scores.size), test)
        thr, _ = best_threshold(scores[train], issame[train])
        accs.append(float(((scores[test] >= thr) == issame[test]).mean()))
    return float(np.mean(accs)), float(np.std(accs))


def verify(scores, issame, folds: int = 10) -> VerificationResult:
    """All verification figures for one set of scored pairs."""
    acc, std = kfold_accuracy(scores, issame, folds)
    return VerificationResult(acc, std, eer(scores, issame), tar_at_far(scores, issame, 1e-3),
                              tar_at_far(scores, issame, 1e-4), int(np.size(scores)), folds)


#: the FARs whose TAR is reported (VerificationResult.tar_at_far_1e3 / _1e4)
REPORTED_FARS = (1e-3, 1e-4)


def far_resolution_warnings(impostor_pairs: int, fars=REPORTED_FARS) -> list[str]:
    """A warning per FAR that ``impostor_pairs`` cannot resolve: below 10 / FAR impostor pairs,
    fewer than 10 impostors lie above the threshold, so TAR at that FAR rests on a handful of
    scores (at 1 / FAR, on none)."""
    return [f"{impostor_pairs} impostor pairs cannot resolve FAR={far:g} (fewer than "
            f"{int(round(10 / far))}): TAR@FAR={far:g} rests on {impostor_pairs * far:.1f} impostor "
            f"score(s) above the threshold; raise the impostor pairs to >= {int(round(10 / far))} to read it"
            for far in fars if impostor_pairs < 10 / far]


def make_pairs(labels, genuine: int, impostor: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(pairs (N, 2) of row indices, issame (N,))``: ``genuine`` same-identity and ``impostor``
    different-identity pairs drawn uniformly (identities first, then rows), interleaved in
    shuffled order so consecutive folds mix both kinds."""
    labels = np.asarray(labels)
    ids, counts = np.unique(labels, return_counts=True)
    if len(ids) < 2:
        raise ValueError(f"the held-out split has {len(ids)} identity; verification needs at least 2")
    multi = ids[counts >= 2]
    if genuine and not len(multi):
        raise ValueError("no identity has 2 or more images: no genuine pairs can be built")
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")  # each identity's rows, ascending: O(N log N), not O(N K)
    starts = np.searchsorted(labels[order], ids)
    rows = dict(zip(ids.tolist(), np.split(order, starts[1:]), strict=True))
    gen = [rng.choice(rows[i], 2, replace=False) for i in rng.choice(multi, genuine)]
    imp = []
    for _ in range(impostor):
        a, b = rng.choice(ids, 2, replace=False)
        imp.append((rng.choice(rows[a]), rng.choice(rows[b])))
    pairs = np.array(gen + imp, dtype=np.int64).reshape(-1, 2)
    issame = np.r_[np.ones(genuine, bool), np.zeros(impostor, bool)]
    order = rng.permutation(len(pairs))
    return pairs[order], issame[order]


def cosine_scores(embeddings: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair of (not necessarily normalised) embeddings."""
    pairs = np.asarray(pairs)
    # only the rows the pairs use, in float64 (not a float64 copy of every embedding)
    e = np.asarray(embeddings)[pairs.reshape(-1)].astype(np.float64).reshape(len(pairs), 2, -1)
    e = e / np.linalg.norm(e, axis=2, keepdims=True).clip(1e-12)
    return (e[:, 0] * e[:, 1]).sum(axis=1)


__all__ = [
    "REPORTED_FARS", "VerificationResult", "far_resolution_warnings", "best_threshold", "cosine_scores", "eer", "kfold_accuracy", "make_pairs",
    "roc", "tar_at_far", "verify",
]
