"""Downstream verification: an FR backbone embeds a real faces set of identities it never saw,
and the set's seeded genuine/impostor pairs are scored (10-fold accuracy, EER, TAR@FAR). The
measurement behind ``synthface benchmark`` and the ``downstream_*`` objectives of
``synthface tune``. No Ray."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from synthface_ray.data.loader import iter_training_batches
from synthface_ray.data.transforms import DecodeReport
from synthface_ray.evaluate.verification import cosine_scores, make_pairs, verify
from synthface_ray.storage import StorageConfig


@dataclass(frozen=True)
class PairProtocol:
    """``genuine`` + ``impostor`` pairs drawn with ``seed`` (the same pairs for every model
    verified on the same set), ``folds``-fold accuracy."""

    genuine: int = 3000
    impostor: int = 3000
    folds: int = 10
    seed: int = 0


def embed_set(embedder, path: str, store: StorageConfig | None, batch_size: int = 512,
              on_batch: Callable[[int], None] | None = None, allow_incomplete: bool = False,
              key: str = "input.allow_incomplete"):
    """``(embeddings, labels, decode report)`` of every decodable image of a faces set, resized
    to the backbone's input size (corrupt images skipped and counted in the report);
    ``on_batch(rows)`` after each batch (e.g. a progress bar). An incomplete set is refused
    unless ``allow_incomplete`` (the setting ``key``)."""
    report, embs, labels = DecodeReport(), [], []
    for batch in iter_training_batches(path, batch_size, embedder.config.input_size, cfg=store, report=report,
                                       allow_incomplete=allow_incomplete, key=key):
        embs.append(embedder(batch["image"], batch_size))
        labels.append(batch["label"].numpy())
        if on_batch is not None:
            on_batch(len(labels[-1]))
    if not embs:
        raise ValueError(f"{path} has no decodable images")
    return np.concatenate(embs), np.concatenate(labels), report


def verify_backbone(backbone, backbone_cfg, path: str, store: StorageConfig | None,
                    pairs: PairProtocol, device: str = "auto") -> dict[str, Any]:
    """Verification of an (untrained or trained) backbone module on the faces set at ``path``:
    the :class:`~synthface_ray.evaluate.verification.VerificationResult` fields plus the images
    and identities used and the rows skipped as corrupt."""
    from synthface_ray.models.recognition.embedder import Embedder  # lazy: imports torch

    emb, labels, report = embed_set(Embedder(backbone, backbone_cfg, device), path, store)
    index, issame = make_pairs(labels, pairs.genuine, pairs.impostor, pairs.seed)
    result = verify(cosine_scores(emb, index), issame, pairs.folds)
    return {**asdict(result), "images": int(len(labels)), "identities": int(len(np.unique(labels))),
            "skipped": report.skipped, "skipped_rows": report.summary() if report.skipped else ""}


__all__ = ["PairProtocol", "embed_set", "verify_backbone"]
