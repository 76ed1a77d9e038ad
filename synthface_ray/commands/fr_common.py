"""Pieces shared by the FR commands (embed, verify, evaluate): embedding a faces set."""

from __future__ import annotations

import numpy as np

from synthface_ray.evaluate.downstream import embed_set
from synthface_ray.progress import progress_bar
from synthface_ray.storage import StorageConfig


def embed_faces(embedder, uri: str, cfg: StorageConfig, batch_size: int,
                allow_incomplete: bool = False, key: str = "input.allow_incomplete") -> tuple[np.ndarray, np.ndarray]:
    """``(embeddings (N, D), labels (N,))`` of every decodable image of a faces dataset, resized
    to the backbone's input size, with a progress bar; corrupt images are skipped (counted and
    printed); an incomplete dataset is refused unless ``allow_incomplete`` (the setting ``key``)."""
    with progress_bar(None, "embed") as bar:
        emb, labels, report = embed_set(embedder, uri, cfg, batch_size, on_batch=bar.update,
                                          allow_incomplete=allow_incomplete, key=key)
    if report.skipped:
        print(report.summary())
    return emb, labels
