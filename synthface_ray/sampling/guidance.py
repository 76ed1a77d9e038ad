"""Guidance as a wrapped denoiser evaluated in one batched forward (k-diffusion/EDM2 style)."""

from __future__ import annotations

from collections.abc import Callable

import torch

ContextDenoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def classifier_free(denoise: ContextDenoiser, context: torch.Tensor, empty: torch.Tensor,
                    scale: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """CFG: ``D = (1 + w) D(x; c) - w D(x; c_e)`` (UIFace eq. 4, second stage; Ho & Salimans 2022),
    both branches in one forward; the bare conditional denoiser when ``w == 0``."""
    if scale == 0:
        return lambda x, sigma: denoise(x, sigma, context)

    def guided(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        both = denoise(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([context, empty]))
        cond, uncond = both.chunk(2)
        return (1 + scale) * cond - scale * uncond

    return guided


def clip_denoised(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], lo: float = -1.0,
                  hi: float = 1.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``clamp(D(x; sigma), lo, hi)``: keep the x0 estimate in the data range (DDPM's
    ``clip_sample``, Ho et al. 2020 implementation) for pixel-space models."""
    return lambda x, sigma: denoise(x, sigma).clamp(lo, hi)


__all__ = ["classifier_free", "clip_denoised"]
