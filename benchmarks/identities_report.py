"""Are a generated set's identities consistent, and are they new? FR figures beside the real ones.

    python benchmarks/identities_report.py --generated runs/demo/generated/demo \
        --real runs/demo/toyfaces --fr runs/demo/train/fr/export [--leakage 0.6]

With the FR export that scored the generation (its ``fr_cosine``) and the real training faces:

* **consistency**: mean ``fr_cosine`` of the generated rows (plain rows and ScoreMix mixes apart);
  identification: each generated image of a plain row is assigned to the nearest class centre of
  the generated set, top-1 = its own identity; the same for the real set (leave-one-out centres),
  the reference.
* **novelty**: each generated identity's class centre against every real training identity's:
  the distribution of its highest cosine (percentiles), the share below ``--leakage`` (the issue's
  goal: >= 90%), and, for scale, the same statistic between real identities (each against the
  nearest *other* real identity).

A class-conditioned generator's identities are its training people by construction, so novelty
is low there; an embedding-conditioned one sampled with new embeddings is what this measures.
"""

from __future__ import annotations

import argparse

import numpy as np

from synthface_ray.data.faces import read_faces
from synthface_ray.evaluate.downstream import embed_set
from synthface_ray.models.recognition.embedder import Embedder


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)


def centres(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, unit class centres)``."""
    ids = np.unique(labels)
    return ids, _unit(np.stack([emb[labels == i].mean(0) for i in ids]))


def top1(emb: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out nearest-centre identification rate (an image never votes for its own centre)."""
    ids, index = np.unique(labels, return_inverse=True)
    sums = np.stack([emb[labels == i].sum(0) for i in ids])
    counts = np.bincount(index).astype(np.float64)
    scores = emb @ sums.T  # (N, K): un-normalised centre sums
    own = scores[np.arange(len(emb)), index] - 1.0  # minus the image itself (unit norm)
    own_norm = np.linalg.norm(sums[index] - emb, axis=1).clip(min=1e-12)
    cos = scores / np.linalg.norm(sums, axis=1).clip(min=1e-12)
    cos[np.arange(len(emb)), index] = np.where(counts[index] > 1, own / own_norm, -np.inf)
    return float((cos.argmax(1) == index).mean())


def nearest_other(a: np.ndarray, b: np.ndarray, same: bool) -> np.ndarray:
    """Each row of ``a``'s highest cosine to a row of ``b`` (its own row excluded when ``same``)."""
    sims = a @ b.T
    if same:
        np.fill_diagonal(sims, -np.inf)
    return sims.max(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generated", required=True)
    p.add_argument("--real", required=True, help="the real training faces (the identities a new one must differ from)")
    p.add_argument("--fr", required=True, help="FR export (the one that scored the generation)")
    p.add_argument("--leakage", type=float, default=0.6, help="cosine threshold between class centres")
    a = p.parse_args()
    fr = Embedder.from_pretrained(a.fr)
    g_emb, g_lab, _ = embed_set(fr, a.generated, None)
    r_emb, r_lab, _ = embed_set(fr, a.real, None)
    meta = read_faces(a.generated, columns=["fr_cosine", "mix_ids", "identity_id"])
    cos = meta.column("fr_cosine").to_numpy(zero_copy_only=False)
    mix = np.array([len(m) > 1 for m in meta.column("mix_ids").to_pylist()])
    mix_ids = np.unique(meta.column("identity_id").to_numpy()[mix])
    plain = ~np.isin(g_lab, mix_ids)  # embed_set's rows: labels are identity ids
    plain_ids = np.unique(g_lab[plain])
    print(f"generated: {len(g_lab)} images, {len(np.unique(g_lab))} identities ({mix.sum()} mix rows); "
          f"real: {len(r_lab)} images, {len(np.unique(r_lab))} identities")
    print(f"consistency: mean fr_cosine {np.nanmean(cos[~mix]):.3f} (plain rows), "
          f"{np.nanmean(cos[mix]) if mix.any() else float('nan'):.3f} (mixes)")
    print(f"identification top-1 (leave-one-out nearest class centre): generated {top1(g_emb[plain], g_lab[plain]):.3f} "
          f"({len(plain_ids)} identities), real {top1(r_emb, r_lab):.3f} ({len(np.unique(r_lab))} identities)")
    _, gc = centres(g_emb, g_lab)
    _, rc = centres(r_emb, r_lab)
    to_real = nearest_other(gc, rc, same=False)
    real_real = nearest_other(rc, rc, same=True)
    pct = [10, 25, 50, 75, 90]
    print(f"novelty: generated centre -> nearest real centre cosine, percentiles {pct}: "
          f"{np.percentile(to_real, pct).round(3).tolist()}; below {a.leakage}: {(to_real < a.leakage).mean():.1%}")
    print(f"         real centre -> nearest other real centre (scale):            "
          f"{np.percentile(real_real, pct).round(3).tolist()}; below {a.leakage}: {(real_real < a.leakage).mean():.1%}")


if __name__ == "__main__":
    main()
