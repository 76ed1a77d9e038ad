"""Training augmentation for face recognition in plain torch (no torchvision on CPU machines).

Every op maps a float batch ``(B, 3, H, W)`` in [-1, 1] to the same shape and range, draws its
parameters per sample from an explicit ``torch.Generator`` (same seed, same batch), and is a
function in a registry, so RandAugment (Cubuk et al. 2020: N ops drawn uniformly per sample, one
global magnitude M of 30) composes them without an if/elif chain. Geometric ops resample with
``affine_grid``/``grid_sample`` (bilinear, border padding); photometric ops act on [0, 1] values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from synthface_ray.config import check_range

Op = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (images, per-sample level in [-1, 1])


@dataclass
class AugmentConfig:
    """``flip``: probability of a horizontal flip. ``crop_scale``: random-resized-crop keeps an
    area fraction in ``[crop_scale, 1]`` (1 disables) with aspect ratio in [3/4, 4/3].
    ``color``: brightness/contrast/saturation jitter strength (0 disables). ``randaugment_n``
    ops per image at magnitude ``randaugment_m`` (0..30; n = 0 disables)."""

    flip: float = 0.5
    crop_scale: float = 1.0
    color: float = 0.0
    randaugment_n: int = 0
    randaugment_m: int = 9

    def __post_init__(self) -> None:
        check_range("augment.flip", self.flip, 0.0, 1.0)
        check_range("augment.crop_scale", self.crop_scale, 0.05, 1.0)
        check_range("augment.color", self.color, 0.0, 1.0)
        check_range("augment.randaugment_n", self.randaugment_n, 0, len(RANDAUGMENT_OPS))
        check_range("augment.randaugment_m", self.randaugment_m, 0, 30)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` with per-sample 2x3 affine matrices in normalised coordinates."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _eye(b: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(2, 3, device=like.device, dtype=like.dtype).repeat(b, 1, 1)


def hflip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror the rows where ``mask`` is True (exact, no resampling)."""
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def random_resized_crop(x: torch.Tensor, scale: torch.Tensor, log_ratio: torch.Tensor,
                        centre: torch.Tensor) -> torch.Tensor:
    """Crop area fraction ``scale`` with aspect ``exp(log_ratio)`` around ``centre`` (in [-1, 1]
    units of the free margin), resized back to the input size (Szegedy et al. 2015)."""
    ratio = log_ratio.exp()
    w = (scale * ratio).sqrt().clamp(max=1.0)
    h = (scale / ratio).sqrt().clamp(max=1.0)
    theta = torch.zeros(len(x), 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = w, h
    theta[:, 0, 2], theta[:, 1, 2] = centre[:, 0] * (1 - w), centre[:, 1] * (1 - h)
    return _affine(x, theta)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) / 2


def _back(u: torch.Tensor) -> torch.Tensor:
    return u.clamp(0, 1) * 2 - 1


def _gray(u: torch.Tensor) -> torch.Tensor:
    w = torch.tensor([0.299, 0.587, 0.114], device=u.device, dtype=u.dtype)[None, :, None, None]
    return (u * w).sum(1, keepdim=True)


def brightness(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Scale intensities by ``1 + level``."""
    return _back(_unit(x) * (1 + level)[:, None, None, None])


def contrast(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean grey by ``1 + level``."""
    u = _unit(x)
    mean = _gray(u).mean(dim=(1, 2, 3), keepdim=True)
    return _back(mean + (u - mean) * (1 + level)[:, None, None, None])


def saturation(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Blend with the per-pixel grey by ``1 + level``."""
    u = _unit(x)
    g = _gray(u)
    return _back(g + (u - g) * (1 + level)[:, None, None, None])


def rotate(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Rotate by ``30 * level`` degrees."""
    a = level * math.radians(30)
    theta = _eye(len(x), x)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
    return _affine(x, theta)


def _affine_term(row: int, col: int, scale: float, doc: str) -> Op:
    """An op that sets one entry of the affine matrix to ``scale * level``."""
    def op(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        theta = _eye(len(x), x)
        theta[:, row, col] = scale * level
        return _affine(x, theta)

    op.__doc__ = doc
    return op


shear_x = _affine_term(0, 1, 0.3, "Shear along x by up to 0.3.")
shear_y = _affine_term(1, 0, 0.3, "Shear along y by up to 0.3.")
translate_x = _affine_term(0, 2, 0.45, "Shift by up to 22.5% of the width (0.45 normalised).")
translate_y = _affine_term(1, 2, 0.45, "Shift by up to 22.5% of the height (0.45 normalised).")


def solarize(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Invert values above ``1 - |level|`` (in [0, 1])."""
    u = _unit(x)
    thr = (1 - level.abs())[:, None, None, None]
    return _back(torch.where(u >= thr, 1 - u, u))


def posterize(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Keep ``8 - 4 |level|`` bits per channel."""
    bits = (8 - 4 * level.abs()).round()[:, None, None, None]
    q = 2 ** (8 - bits)
    u = torch.floor(_unit(x) * 255 / q) * q / 255
    return _back(u)


#: RandAugment ops: (images, level in [-1, 1] per sample) -> images
RANDAUGMENT_OPS: dict[str, Op] = {
    "brightness": brightness, "contrast": contrast, "saturation": saturation, "rotate": rotate,
    "shear_x": shear_x, "shear_y": shear_y, "translate_x": translate_x, "translate_y": translate_y,
    "solarize": solarize, "posterize": posterize,
}


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


def randaugment(x: torch.Tensor, n: int, m: int, g: torch.Generator | None = None) -> torch.Tensor:
    """Apply ``n`` ops drawn per sample from :data:`RANDAUGMENT_OPS` at magnitude ``m / 30``
    with a random sign (each row only gets its own ops: others pass through unchanged)."""
    names = list(RANDAUGMENT_OPS)
    b = len(x)
    for _ in range(n):
        choice = torch.randint(len(names), (b,), generator=g, device=x.device)
        sign = torch.where(torch.rand(b, generator=g, device=x.device) < 0.5, -1.0, 1.0)
        level = (sign * m / 30).to(x.dtype)
        out = x.clone()
        for i, name in enumerate(names):
            rows = choice == i
            if rows.any():
                out[rows] = RANDAUGMENT_OPS[name](x[rows], level[rows])
        x = out
    return x


def augment(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator | None = None) -> torch.Tensor:
    """Flip, random resized crop, colour jitter, then RandAugment, as configured."""
    b, dev = len(x), x.device
    if cfg.flip > 0:
        x = hflip(x, torch.rand(b, generator=g, device=dev) < cfg.flip)
    if cfg.crop_scale < 1:
        scale = _uniform(b, cfg.crop_scale, 1.0, g, dev)
        log_ratio = _uniform(b, math.log(3 / 4), math.log(4 / 3), g, dev)
        centre = _uniform(2 * b, -1.0, 1.0, g, dev).view(b, 2)
        x = random_resized_crop(x, scale, log_ratio, centre)
    if cfg.color > 0:
        for op in (brightness, contrast, saturation):
            x = op(x, _uniform(b, -cfg.color, cfg.color, g, dev).to(x.dtype))
    if cfg.randaugment_n:
        x = randaugment(x, cfg.randaugment_n, cfg.randaugment_m, g)
    return x


__all__ = ["RANDAUGMENT_OPS", "AugmentConfig", "augment", "hflip", "randaugment", "random_resized_crop"]
