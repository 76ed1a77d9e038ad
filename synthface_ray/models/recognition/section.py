"""The ``model`` config section of everything that embeds faces with an exported FR backbone
(embed, verify, evaluate, identities, tune's evaluation): plain config, torch imported on load."""

from __future__ import annotations

from dataclasses import dataclass

from synthface_ray.config import ConfigError, check_range


@dataclass
class ModelSection:
    """An exported FR backbone folder (``backbone.safetensors`` + ``backbone_config.json``)."""

    path: str = ""
    device: str = "auto"
    batch_size: int = 256

    def __post_init__(self) -> None:
        check_range("model.batch_size", self.batch_size, 1)

    def load(self):
        from synthface_ray.models.recognition.embedder import Embedder  # lazy: imports torch

        if not self.path:
            raise ConfigError("model.path is not set: give an exported FR backbone folder (--model)")
        return Embedder.from_pretrained(self.path, self.device)


__all__ = ["ModelSection"]
