"""Sample grids from fixed conditions: what a person looks at to judge a generator.

Rows are conditions (identities), columns are fixed noise seeds, drawn by the production
sampler (:func:`synthface_ray.sampling.composite.sample`, the code ``synthface generate`` runs),
with the ``sampler`` section of a generate job or a plain conditional one with CFG against the
learnable empty context. Pure torch + PIL; the training loop calls it on rank 0 with the EMA
weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from PIL import Image

from synthface_ray.config import check_choice, check_range
from synthface_ray.data.transforms import to_grid
from synthface_ray.models.generator import IdentityGenerator
from synthface_ray.models.objectives import Objective
from synthface_ray.sampling.composite import Conditions, sample
from synthface_ray.sampling.recipes import SamplerConfig
from synthface_ray.sampling.solvers import SOLVERS


@dataclass
class PreviewConfig:
    """The ``preview`` section: a grid of ``identities`` x ``images`` samples every ``every``
    optimizer steps (0 disables), ``steps`` solver steps, CFG scale ``guidance`` (UIFace uses 1).
    ``clip_denoised`` clamps the denoised estimate to the data range [-1, 1] at every step in pixel
    space (DDPM/DDIM's ``clip_sample``): early in training an eps model's error at high noise is
    amplified by sigma and the unclipped ODE drifts off the image range.

    ``sampler``: a generate job's ``sampler`` section (any recipe), so the grid is drawn exactly as
    ``synthface generate`` draws a plain identity row (mixes and negatives need plan rows: a preview
    row has one identity and no negative). Null: ``conditional`` with ``solver``, ``steps``,
    ``guidance`` as ``cfg_scale``, ``clip_denoised`` and karras noise levels."""

    every: int = 200
    identities: int = 8
    images: int = 4
    steps: int = 18
    solver: str = "heun"
    guidance: float = 1.0
    clip_denoised: bool = True
    seed: int = 1234
    sampler: SamplerConfig | None = None  # a generate job's sampler section, resolved at load

    def __post_init__(self) -> None:
        check_range("preview.every", self.every, 0)
        check_range("preview.identities", self.identities, 1, 64)
        check_range("preview.images", self.images, 1, 64)
        check_range("preview.steps", self.steps, 1, 1000)
        check_choice("preview.solver", self.solver, SOLVERS)
        check_range("preview.guidance", self.guidance, 0.0)
        if isinstance(self.sampler, dict):  # built in code with a section: resolved here, as at load
            self.sampler = SamplerConfig.from_section(self.sampler, "preview.sampler.")

    def sampler_config(self) -> SamplerConfig:
        """The composite sampler's settings for the grid (see the class docstring)."""
        if self.sampler is not None:
            return self.sampler
        return SamplerConfig(solver=self.solver, steps=self.steps, spacing="karras",
                             cfg_scale=self.guidance, clip_denoised=self.clip_denoised)


@torch.no_grad()
def sample_images(model: IdentityGenerator, objective: Objective, cond: torch.Tensor,
                  cfg: PreviewConfig, vae=None) -> torch.Tensor:
    """One sample per row of ``cond`` (class ids or embeddings) by the composite sampler, returned
    in [-1, 1] (B, 3, H, W) on the CPU. Row ``i`` has seed ``cfg.seed + i % cfg.images`` (its
    initial and ancestral noise, as a plan row's seed in generate), so columns line up."""
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    sampler = cfg.sampler_config()
    if vae is not None and sampler.clip_denoised:  # latents are not in [-1, 1]
        sampler = dataclasses.replace(sampler, clip_denoised=False)
    rows = cond.shape[0]
    conditions = Conditions.single(model.context(cond.to(device)), model.empty_context.detach(),
                                   torch.arange(rows), [cfg.seed + i % cfg.images for i in range(rows)])
    gc = model.config
    out = sample(model, objective.parameterization(), conditions, sampler,
                 (gc.in_channels, gc.sample_size, gc.sample_size), device=device, dtype=dtype,
                 unet=model.unet)
    x = out.images
    if vae is not None:
        x = vae.decode(x.to(vae.dtype) / vae.config.scaling_factor).sample
    return x.float().clamp(-1, 1).cpu()


def grid_conditions(cond_table: torch.Tensor | None, labels: list[int], per: int) -> torch.Tensor:
    """Conditions for a grid: each of ``labels`` repeated ``per`` times; embeddings looked up in
    ``cond_table`` (identity embeddings) when the generator is embedding-conditioned."""
    ids = torch.tensor([lab for lab in labels for _ in range(per)], dtype=torch.long)
    return ids if cond_table is None else cond_table[ids]


def preview_grid(model: IdentityGenerator, objective: Objective, labels: list[int],
                 cfg: PreviewConfig, cond_table: torch.Tensor | None = None, vae=None) -> Image.Image:
    """The preview grid: one row per label, ``cfg.images`` seeds per row."""
    cond = grid_conditions(cond_table, labels, cfg.images)
    return to_grid(sample_images(model, objective, cond, cfg, vae), len(labels), cfg.images)


__all__ = ["PreviewConfig", "grid_conditions", "preview_grid", "sample_images"]
