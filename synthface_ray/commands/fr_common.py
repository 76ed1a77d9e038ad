"""Pieces shared by the FR commands (embed, verify): the model section, embedding a faces set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthface_ray.config import ConfigError, check_range
from synthface_ray.storage import StorageConfig


@dataclass
class ModelSection:
    """An exported FR backbone folder (``backbone.safetensors`` + ``backbone_config.json``)."""

    path: str = ""
    device: str = "auto"
    batch_size: int = 256

    def __post_init__(self) -> None:
        check_range("model.batch_size", self.batch_size, 1)

    def load(self):
        from synthface_ray.models.recognition.embedder import Embedder

        if not self.path:
            raise ConfigError("model.path is not set: give an exported FR backbone folder (--model)")
        return Embedder.from_pretrained(self.path, self.device)


def embed_faces(embedder, uri: str, cfg: StorageConfig, batch_size: int,
                allow_incomplete: bool = False, key: str = "input.allow_incomplete") -> tuple[np.ndarray, np.ndarray]:
    """``(embeddings (N, D), labels (N,))`` of every decodable image of a faces dataset, resized
    to the backbone's input size, with a progress bar; corrupt images are skipped (counted and
    printed); an incomplete dataset is refused unless ``allow_incomplete`` (the setting ``key``)."""
    from synthface_ray.evaluate.downstream import embed_set
    from synthface_ray.progress import progress_bar

    with progress_bar(None, "embed") as bar:
        emb, labels, report = embed_set(embedder, uri, cfg, batch_size, on_batch=bar.update,
                                          allow_incomplete=allow_incomplete, key=key)
    if report.skipped:
        print(report.summary())
    return emb, labels
