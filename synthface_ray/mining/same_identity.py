"""The same person in two training sources, judged by class centres under an FR model.

FR training numbers every source's identities as their own classes. When a synthetic identity is
a real one in disguise (a class-conditioned generator's copy of real person k, an embedding that
leaked), real + synthetic training holds one person as two classes and the margin loss pushes
that person's images apart. The uniqueness and leakage filters (:mod:`.uniqueness`) guard the
identities before generation; this is the check on the data itself, just before training: a class
of a later source whose centre has cosine > ``tau`` to a class centre of an earlier source is the
same person as its nearest such class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthface_ray.mining.index import check_embeddings, check_same_dim, inner_product_index
from synthface_ray.mining.uniqueness import check_threshold


@dataclass(frozen=True)
class SourceCentres:
    """One source's identities: ``labels`` (K,) and their unit class ``centres`` (K, D)."""

    labels: np.ndarray
    centres: np.ndarray


@dataclass(frozen=True)
class Match:
    """Class ``label`` of source ``source`` is the same person as ``match_label`` of the earlier
    source ``match_source`` (centre cosine ``cosine`` > tau)."""

    source: int
    label: int
    match_source: int
    match_label: int
    cosine: float


def match_earlier_sources(sources: list[SourceCentres], tau: float,
                          use_gpu: str = "auto") -> list[Match]:
    """For every class of source j >= 1, its nearest class centre among sources 0..j-1 (exact
    faiss inner-product search); a :class:`Match` when that cosine is > ``tau``. Each later
    class matches at most one earlier class (its nearest); an earlier class may receive several.
    Matches are ordered by source, then by the later source's label order.

    Centres are checked and normalised like :func:`~.uniqueness.unique_filter`'s inputs; sources
    of different dimensions raise :class:`~.index.MiningError`."""
    tau = check_threshold(tau, "tau")
    cents = [check_embeddings(s.centres, f"sources[{i}].centres") for i, s in enumerate(sources)]
    for i, (s, c) in enumerate(zip(sources, cents, strict=True)):
        if len(np.asarray(s.labels)) != len(c):
            raise ValueError(f"sources[{i}] has {len(s.labels)} labels but {len(c)} centres")
        if i:
            check_same_dim(cents[0], c, ("sources[0].centres", f"sources[{i}].centres"))
    matches: list[Match] = []
    for j in range(1, len(sources)):
        earlier = [i for i in range(j) if len(cents[i])]
        if not earlier or not len(cents[j]):
            continue
        index = inner_product_index(cents[j].shape[1], use_gpu)
        index.add(np.ascontiguousarray(np.concatenate([cents[i] for i in earlier])))
        owner = np.concatenate([np.full(len(cents[i]), i) for i in earlier])
        rows = np.concatenate([np.arange(len(cents[i])) for i in earlier])
        top, ids = index.search(cents[j], 1)
        for k in np.flatnonzero(top[:, 0] > tau):
            hit = int(ids[k, 0])
            matches.append(Match(j, int(sources[j].labels[k]), int(owner[hit]),
                                 int(sources[owner[hit]].labels[rows[hit]]), float(top[k, 0])))
    return matches


__all__ = ["Match", "SourceCentres", "match_earlier_sources"]
