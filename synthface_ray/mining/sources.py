"""Where identity embeddings come from (each returns unit-norm float32 rows):

* class centres of a labelled faces set under an FR model (``synthface embed`` computes them),
* random unit vectors: a normalised Gaussian (IDiff-Face, NegFaceDiff),
* FR embeddings of images generated with the empty context (two-stage contexts: IDiff-Face,
  UIFace, DCFace),
* a Gaussian in a PCA space fitted on real class centres (Vec2Face).
"""

from __future__ import annotations

import numpy as np
import torch


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` directions uniform on the sphere: ``z / ||z||`` with ``z ~ N(0, I_dim)``."""
    return _unit(np.random.default_rng(seed).standard_normal((n, dim)))


def pca_gaussian(real: np.ndarray, n: int, seed: int = 0, components: int | None = None) -> np.ndarray:
    """Vec2Face-style sampling: fit PCA on the real centres (mean ``mu``, principal axes ``V``,
    per-axis std ``s``), draw ``z ~ N(0, diag(s^2))`` on the first ``components`` axes, map back
    ``mu + z V`` and normalise."""
    real = np.asarray(real, np.float64)
    if real.shape[0] < 2:
        raise ValueError("pca_gaussian needs at least 2 real class centres to fit a PCA")
    mu = real.mean(axis=0)
    _, s, vt = np.linalg.svd(real - mu, full_matrices=False)
    k = vt.shape[0] if components is None else min(components, vt.shape[0])
    std = s[:k] / np.sqrt(real.shape[0] - 1)
    z = np.random.default_rng(seed).standard_normal((n, k)) * std
    return _unit(mu + z @ vt[:k])


@torch.no_grad()
def uncond_fr_embeddings(gen, embedder, n: int, seed: int = 0, sampler: dict | None = None,
                         batch: int = 64) -> np.ndarray:
    """FR embeddings of ``n`` images sampled with the empty context only (one per seed
    ``seed .. seed + n - 1``), in batches: identities the generator invents on its own."""
    from synthface_ray.sampling.composite import Conditions, sample  # lazy: imports diffusers

    out = []
    for start in range(0, n, batch):
        rows = min(batch, n - start)
        cond = Conditions(contexts=gen.empty[None], empty=gen.empty,
                          mix_ids=torch.zeros(rows, 1, dtype=torch.long),
                          mix_weights=torch.ones(rows, 1), seeds=torch.arange(rows) + seed + start)
        images = sample(gen.net, gen.param, cond, sampler or {}, gen.shape).images.clamp(-1, 1)
        size = embedder.config.input_size
        if images.shape[-1] != size:
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear",
                                                     antialias=True, align_corners=False)
        out.append(embedder(images))
    return _unit(np.concatenate(out))


__all__ = ["pca_gaussian", "random_unit", "uncond_fr_embeddings"]
