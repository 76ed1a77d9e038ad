"""How close are the identities of training sources to each other's? The numbers behind
``data.same_identity.threshold`` (train-fr) in docs/BENCHMARKS.md.

    .venv/bin/python benchmarks/same_identity_scan.py JUDGE_FR_EXPORT REAL [LATER ...] [--images 8]

For every source the class centres of up to ``--images`` images per identity under the judge (the
same code as train-fr's pre-flight check). Prints, for the first source, each identity's nearest
*other* identity of that source (different real people: what a threshold must stay above), and
for every later source each identity's nearest identity of the earlier sources, the counts
above several thresholds, and, where a later identity's label is also a label of the first
source (a class-conditioned generator's copy of that person; mixes have labels of their own),
how often that same label is its nearest.
"""

from __future__ import annotations

import argparse

import numpy as np

from synthface_ray.data import faces, schema
from synthface_ray.mining.index import topk_others
from synthface_ray.mining.same_identity import SourceCentres, match_earlier_sources
from synthface_ray.models.recognition.embedder import Embedder
from synthface_ray.train.same_identity import source_centres

THRESHOLDS = (0.6, 0.7, 0.8, 0.9, 0.95)


def _quantiles(x: np.ndarray) -> str:
    q = np.quantile(x, [0.0, 0.1, 0.5, 0.9, 1.0])
    return "min {:.3f}  p10 {:.3f}  median {:.3f}  p90 {:.3f}  max {:.3f}".format(*q)


def _above(x: np.ndarray) -> str:
    return "  ".join(f">{t}: {int((x > t).sum())}" for t in THRESHOLDS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("judge")
    ap.add_argument("sources", nargs="+")
    ap.add_argument("--images", type=int, default=8, help="images per identity (default 8)")
    args = ap.parse_args()
    embedder = Embedder.from_pretrained(args.judge)
    cents = []
    for path in args.sources:
        labels = np.unique(faces.read_faces(path, columns=[schema.LABEL]).column(schema.LABEL).to_numpy())
        cents.append(source_centres(path, None, embedder, labels, args.images))
    first = cents[0]
    near, _ = topk_others(first.centres, 1)
    print(f"{args.sources[0]}: {len(first.labels)} identities; nearest other identity of the same "
          f"source: {_quantiles(near[:, 0])}\n  {_above(near[:, 0])}")
    for j in range(1, len(cents)):
        every = match_earlier_sources(cents[: j + 1], -0.999)
        every = [m for m in every if m.source == j]
        cos = np.array([m.cosine for m in every])
        print(f"{args.sources[j]}: {len(cos)} identities; nearest identity of an earlier source: "
              f"{_quantiles(cos)}\n  {_above(cos)}")
        copies = [m for m in every if m.label in set(first.labels.tolist())]
        if copies:
            hit = np.mean([m.match_source == 0 and m.match_label == m.label for m in copies])
            ccos = np.array([m.cosine for m in copies])
            own = _own_cosine(cents[0], cents[j], [m.label for m in copies])
            print(f"  {len(copies)} share a label with {args.sources[0]} (copies of that person): nearest is "
                  f"that person for {hit:.3f}; cosine to that person: {_quantiles(own)}; to nearest: "
                  f"{_quantiles(ccos)}")
            print(f"  the rest ({len(cos) - len(copies)}, e.g. mixes / new people): "
                  f"{_quantiles(np.array([m.cosine for m in every if m not in copies]))}"
                  if len(cos) > len(copies) else "  (no other identities)")


def _own_cosine(real: SourceCentres, later: SourceCentres, labels: list[int]) -> np.ndarray:
    r = {int(lab): c for lab, c in zip(real.labels, real.centres, strict=True)}
    g = {int(lab): c for lab, c in zip(later.labels, later.centres, strict=True)}
    return np.array([float(r[lab] @ g[lab]) for lab in labels])


if __name__ == "__main__":
    main()
