"""Export an FR backbone and embed images with it, on CPU or GPU, without Ray or DeepSpeed.

Folder layout: ``backbone.safetensors`` (weights and BN statistics) and ``backbone_config.json``
(the :class:`~synthface_ray.models.recognition.iresnet.BackboneConfig`). train-fr's export adds
the same backbone for insightface tooling (``backbone.insightface.pth``, ``model.onnx``,
``interop.json``: :mod:`synthface_ray.models.recognition.interop`); this module does not read them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from synthface_ray.config import from_dict, to_dict
from synthface_ray.data.transforms import pixels_to_model
from synthface_ray.models.device import pick_device
from synthface_ray.models.recognition.iresnet import BackboneConfig, build_backbone
from synthface_ray.models.weights import FIX_FR, load_state

WEIGHTS, CONFIG = "backbone.safetensors", "backbone_config.json"


def save_backbone(model: torch.nn.Module, config: BackboneConfig, folder: str | Path) -> Path:
    """Write ``model``'s weights and config to ``folder`` (created)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
              str(folder / WEIGHTS))
    (folder / CONFIG).write_text(json.dumps(to_dict(config), indent=2) + "\n", encoding="utf-8")
    return folder


class Embedder:
    """Image batches -> unit-norm embeddings. The backbone runs in eval mode (BatchNorm uses its
    running statistics), so an image's embedding does not depend on the batch it is in."""

    def __init__(self, model: torch.nn.Module, config: BackboneConfig,
                 device: torch.device | str = "auto") -> None:
        self.config = config
        self.device = pick_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: torch.device | str = "auto") -> Embedder:
        folder = Path(folder)
        if not (folder / CONFIG).is_file():
            raise FileNotFoundError(f"{folder / CONFIG} not found: is {folder} an exported FR backbone? {FIX_FR}")
        try:
            config = from_dict(BackboneConfig, json.loads((folder / CONFIG).read_text(encoding="utf-8")),
                               "backbone.")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{folder / CONFIG} is not JSON ({exc}): {FIX_FR}") from None
        model = build_backbone(config)
        load_state(model, folder / WEIGHTS, FIX_FR)
        return cls(model, config, device)

    @classmethod
    def from_storage(cls, uri: str, store, key: str, device: torch.device | str = "auto") -> Embedder:
        """:meth:`from_pretrained` of an export folder given as a config value (local or s3://,
        ``store``: its :class:`~synthface_ray.storage.StorageConfig`); a missing or wrong folder
        is a ``ConfigError`` naming ``key``, the config key that gave it."""
        from synthface_ray import storage
        from synthface_ray.config import ConfigError

        try:
            with storage.local_copy(storage.resolve(uri, store)) as local:
                return cls.from_pretrained(local, device)
        except FileNotFoundError as err:
            raise ConfigError(f"{key}={uri}: {err}") from None

    @torch.no_grad()
    def __call__(self, images: torch.Tensor | np.ndarray, batch_size: int = 256) -> np.ndarray:
        """``images``: float (B, 3, S, S) in [-1, 1], or uint8 (B, S, S, 3) pixels -> float32
        (B, embedding_dim) with unit L2 norm."""
        if isinstance(images, np.ndarray) and not images.flags.writeable:
            images = images.copy()  # e.g. pixels viewed from Arrow buffers: torch wants writable memory
        x = pixels_to_model(torch.as_tensor(images))
        out = [F.normalize(self.model(chunk.to(self.device, torch.float32)).float(), dim=1).cpu()
               for chunk in x.split(batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.config.embedding_dim), np.float32)


__all__ = ["CONFIG", "WEIGHTS", "Embedder", "save_backbone"]
