"""FR training's pre-flight check for one person under two classes (``data.same_identity``).

Before the workers start, the judge FR model (``data.same_identity.fr_model``) embeds up to
``images_per_identity`` images of every training identity of every source; class centres of a
later source closer than ``threshold`` (cosine) to an earlier source's class are the same person
(:func:`synthface_ray.mining.same_identity.match_earlier_sources`). ``warn`` prints them,
``merge`` trains each as its match's class, ``error`` refuses to train. Runs on the driver (the
GPU when it has one); it reads every source once, decoding only the images it embeds.
"""

from __future__ import annotations

import numpy as np

from synthface_ray.config import ConfigError
from synthface_ray.data import faces, schema
from synthface_ray.data.identities import class_centers
from synthface_ray.data.transforms import decode_batch
from synthface_ray.mining.same_identity import Match, SourceCentres, match_earlier_sources

SHOW = 5  # matches printed by name (all are counted)


def _first_rows(labels: np.ndarray, wanted: np.ndarray, taken: dict[int, int], per_identity: int) -> np.ndarray:
    """Mask of the rows (in order) that are a wanted label's first ``per_identity``; updates
    ``taken`` (label -> rows taken so far). Vectorised: each row's rank among its label's rows
    in this batch, plus what earlier batches took."""
    labels = np.asarray(labels, np.int64)
    order = np.argsort(labels, kind="stable")
    uniq, first, counts = np.unique(labels[order], return_index=True, return_counts=True)
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels)) - np.repeat(first, counts)
    before = np.array([taken.get(int(u), 0) for u in uniq], np.int64)
    mask = np.isin(labels, wanted) & (rank + before[np.searchsorted(uniq, labels)] < per_identity)
    for u, n in zip(*np.unique(labels[mask], return_counts=True), strict=True):
        taken[int(u)] = taken.get(int(u), 0) + int(n)
    return mask


def source_centres(path: str, store, embedder, wanted: np.ndarray, per_identity: int,
                   allow_incomplete: bool = False) -> SourceCentres:
    """Class centres of the ``wanted`` labels of one faces source from their first
    ``per_identity`` decodable images (corrupt ones skipped)."""
    taken: dict[int, int] = {}
    embs, labs = [], []
    for batch in faces.open_faces(path, store, allow_incomplete=allow_incomplete, key="data.allow_incomplete").to_batches(columns=[schema.IMAGE, schema.LABEL]):
        mask = _first_rows(batch.column(schema.LABEL).to_numpy(zero_copy_only=False), wanted, taken,
                           per_identity)
        if mask.any():
            decoded = decode_batch(batch.filter(mask), embedder.config.input_size, keep=(schema.LABEL,),
                                   model_range=False)
            embs.append(embedder(decoded["image"]))
            labs.append(decoded[schema.LABEL])
        if len(taken) == len(wanted) and min(taken.values()) >= per_identity:
            break
    if not embs:
        return SourceCentres(np.zeros(0, np.int64), np.zeros((0, embedder.config.embedding_dim), np.float32))
    return SourceCentres(*class_centers(np.concatenate(embs), np.concatenate(labs)))


def judge(section, paths: list[str], train_labels: list[np.ndarray], store,
          allow_incomplete: bool = False) -> list[Match]:
    """The same-person matches between sources (later source -> earlier one) under the judge."""
    from synthface_ray.models.recognition.embedder import Embedder  # lazy: imports torch

    embedder = Embedder.from_storage(section.fr_model, store, "data.same_identity.fr_model")
    print(f"same-identity check: class centres of up to {section.images_per_identity} images per "
          f"identity under {section.fr_model} ...", flush=True)
    cents = [source_centres(p, store, embedder, labels, section.images_per_identity, allow_incomplete)
             for p, labels in zip(paths, train_labels, strict=True)]
    return match_earlier_sources(cents, section.threshold)


def describe(matches: list[Match], paths: list[str], threshold: float) -> str:
    """One paragraph naming how many classes match and the closest few."""
    best = sorted(matches, key=lambda m: -m.cosine)[:SHOW]
    shown = "; ".join(f"{paths[m.source]} label {m.label} ~ {paths[m.match_source]} label "
                      f"{m.match_label} (cosine {m.cosine:.3f})" for m in best)
    more = f" (and {len(matches) - len(best)} more)" if len(matches) > len(best) else ""
    return (f"{len(matches)} identities of later sources are the same person as an earlier "
            f"source's (class centre cosine > {threshold}): {shown}{more}")


def apply(section, matches: list[Match], paths: list[str]) -> list[Match]:
    """Act on the matches: print (``warn``, ``merge``) or refuse (``error``). Returns the
    matches that training merges (none unless ``merge``)."""
    if not matches:
        print("same-identity check: no identity of a later source matches an earlier one", flush=True)
        return []
    text = describe(matches, paths, section.threshold)
    if section.action == "error":
        raise ConfigError(text + ". Remove them from a source, raise data.same_identity.threshold, or "
                          "set data.same_identity.action: merge (train each as one class)")
    verb = "merged into one class each" if section.action == "merge" else \
        "trained as separate classes (data.same_identity.action: merge trains them as one)"
    print(f"WARNING: {text}; {verb}", flush=True)
    return matches if section.action == "merge" else []


__all__ = ["apply", "describe", "judge", "source_centres"]
