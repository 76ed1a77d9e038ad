"""Identity sources: unit norm, determinism, and what each samples from."""

from __future__ import annotations

import numpy as np
import torch

from synthface_ray.mining.sources import pca_gaussian, random_unit, uncond_fr_embeddings


def test_random_unit_vectors_are_unit_deterministic_and_isotropic():
    x = random_unit(4000, 32, seed=3)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, rtol=1e-5)
    assert (random_unit(4000, 32, seed=3) == x).all() and not (random_unit(4000, 32, seed=4) == x).all()
    assert np.abs(x.mean(axis=0)).max() < 4 / np.sqrt(4000 * 32)  # no preferred direction


def test_pca_gaussian_stays_in_the_real_span_and_matches_its_spread():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((16, 3)))[0].T  # a 3-d subspace of R^16
    real = rng.standard_normal((500, 3)) * [3.0, 1.0, 0.3] @ basis + 5 * basis[0]
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    out = pca_gaussian(real, 2000, seed=1)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, rtol=1e-5)
    inside = out @ basis.T @ basis  # projection on the real span
    np.testing.assert_allclose(inside, out, atol=1e-5)
    assert np.dot(out.mean(0), real.mean(0)) / np.linalg.norm(out.mean(0)) / np.linalg.norm(real.mean(0)) > 0.99


def test_uncond_fr_embeddings_embed_empty_context_samples(tmp_path):
    from synthface_ray.models.generator import GeneratorConfig, IdentityGenerator
    from synthface_ray.models.recognition.embedder import Embedder, save_backbone
    from synthface_ray.models.recognition.iresnet import BackboneConfig, build_backbone
    from synthface_ray.sampling.exported import load_generator

    torch.manual_seed(0)
    gen = IdentityGenerator(GeneratorConfig(sample_size=16, block_out_channels=(8, 16),
                                            cross_attention_levels=(False, True), attention_head_dim=8,
                                            norm_num_groups=4, context_dim=16, num_identities=4)).eval()
    gen.save_pretrained(tmp_path / "gen", extra_metadata={"objective": {"name": "edm", "sigma_data": 0.5,
                                                                        "P_mean": -1.2, "P_std": 1.2}})
    cfg = BackboneConfig(input_size=32, width=4, embedding_dim=8)
    save_backbone(build_backbone(cfg), cfg, tmp_path / "fr")
    out = uncond_fr_embeddings(load_generator(tmp_path / "gen"), Embedder.from_pretrained(tmp_path / "fr", "cpu"),
                               5, seed=2, sampler={"steps": 2}, batch=2)
    assert out.shape == (5, 8)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, rtol=1e-5)
    assert len({tuple(np.round(r, 5)) for r in out}) == 5  # different seeds, different images
