"""The exported generator (``train-generator``'s export folder) as a composite-sampler model:
the network in diffusers' call convention, its parameterisation, and its identity contexts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from synthface_ray.models.parameterization import Parameterization


class GeneratorNet(nn.Module):
    """An :class:`~synthface_ray.models.generator.IdentityGenerator` called the diffusers way:
    ``net(sample, timestep, encoder_hidden_states=context, class_labels=source)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, sample, timestep, encoder_hidden_states, class_labels=None):
        return SimpleNamespace(sample=self.model(sample, timestep, context=encoder_hidden_states,
                                                 source=class_labels))


@dataclass
class LoadedGenerator:
    """``net`` for :func:`~synthface_ray.sampling.composite.sample`, its ``param``, the ``unet``
    (for attention injection), the image ``shape`` and the objective ``metadata``."""

    model: nn.Module
    net: GeneratorNet
    param: Parameterization
    metadata: dict

    @property
    def unet(self) -> nn.Module:
        return self.model.unet

    @property
    def shape(self) -> tuple[int, int, int]:
        cfg = self.model.unet.config
        return (cfg.in_channels, cfg.sample_size, cfg.sample_size)

    @torch.no_grad()
    def contexts(self, cond: torch.Tensor) -> torch.Tensor:
        """Identity contexts (K, tokens, dim) of class ids (K,) or FR embeddings (K, D)."""
        return self.model.context(cond.to(self.model.empty_context.device))

    @property
    def empty(self) -> torch.Tensor:
        return self.model.empty_context.detach()

    @property
    def has_sources(self) -> bool:
        return bool(self.model.config.num_sources)


def load_generator(folder: str | Path, device: torch.device | str = "cpu") -> LoadedGenerator:
    """Load an export folder (no Ray, no DeepSpeed); the objective comes from its metadata."""
    from synthface_ray.models.generator import IdentityGenerator, load_metadata
    from synthface_ray.models.objectives import make_objective

    meta = load_metadata(folder)
    if not meta or "objective" not in meta:
        raise FileNotFoundError(f"{folder} has no condition/metadata.json with the objective: is it "
                                "a complete export of synthface train-generator?")
    settings = dict(meta["objective"])
    objective = make_objective(settings.pop("name"), **settings)
    model = IdentityGenerator.from_pretrained(folder, device=device)
    return LoadedGenerator(model, GeneratorNet(model), objective.parameterization(), meta)


__all__ = ["GeneratorNet", "LoadedGenerator", "load_generator"]
