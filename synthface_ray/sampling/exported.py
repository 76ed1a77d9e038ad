"""The exported generator (``train-generator``'s export folder) as a composite-sampler model:
the network (the generator itself: it speaks the one call convention of
:mod:`synthface_ray.models.parameterization`), its parameterisation, and its identity contexts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from synthface_ray.models.generator import IdentityGenerator, load_metadata
from synthface_ray.models.parameterization import Parameterization


@dataclass
class LoadedGenerator:
    """The generator ``model`` (also ``net``, what :func:`~synthface_ray.sampling.composite.sample`
    calls), its ``param``, the ``unet`` (for attention injection), the image ``shape`` and the
    objective ``metadata``."""

    model: nn.Module
    param: Parameterization
    metadata: dict

    @property
    def net(self) -> nn.Module:
        """The network the sampler calls: the generator itself (no adapter)."""
        return self.model

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
    from synthface_ray.models.objectives import make_objective  # lazy: imports diffusers

    meta = load_metadata(folder)
    if not meta or "objective" not in meta:
        raise FileNotFoundError(f"{folder} has no condition/metadata.json with the objective: is it "
                                "a complete export of synthface train-generator?")
    settings = dict(meta["objective"])
    objective = make_objective(settings.pop("name"), **settings)
    model = IdentityGenerator.from_pretrained(folder, device=device)
    return LoadedGenerator(model, objective.parameterization(), meta)


__all__ = ["LoadedGenerator", "load_generator"]
