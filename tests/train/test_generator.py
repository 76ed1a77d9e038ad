"""GeneratorSession in one process (gloo, world size 1): checkpoint round trips on ZeRO 0/2/3,
export/reload, the empty-context rate of the real training path, config checks."""

from __future__ import annotations

import pytest
import torch

from synthface_ray import storage
from synthface_ray.config import ConfigError, from_dict
from synthface_ray.models.generator import IdentityGenerator, load_metadata
from synthface_ray.train.generator import GeneratorSession, TrainGeneratorConfig

TINY = {
    "generator": {"num_identities": 8, "block_out_channels": [8, 16], "norm_num_groups": 4,
                  "cross_attention_levels": [False, True], "sample_size": 8, "context_dim": 16,
                  "num_sources": 1},
    "optim": {"micro_batch": 4, "max_steps": 10, "warmup_steps": 3},
    "ema": {"decay": 0.9},
}


def make_cfg(**sections) -> TrainGeneratorConfig:
    data = {k: dict(v) for k, v in TINY.items()}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return from_dict(TrainGeneratorConfig, data)


def batch(seed: int, n: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(n, 3, 8, 8, generator=g) * 2 - 1,
            "label": torch.randint(0, 8, (n,), generator=g),
            "source": torch.randint(0, 2, (n,), generator=g)}


def session(cfg: TrainGeneratorConfig) -> GeneratorSession:
    return GeneratorSession(cfg, rank=0, world=1, device=torch.device("cpu"), precision="fp32")


@pytest.mark.parametrize("stage", [0, 2, 3])
@pytest.mark.parametrize("objective", ["ddpm_eps", "edm"])
def test_checkpoint_restores_the_next_step_exactly(process_group, tmp_path, stage, objective):
    cfg = make_cfg(deepspeed={"zero_stage": stage}, objective={"name": objective})
    a = session(cfg)
    for i in range(3):
        a.train_step([batch(i)])
    a.save(tmp_path)
    # a session built from another seed: everything it ends up with must come from the checkpoint
    b = session(make_cfg(deepspeed={"zero_stage": stage}, objective={"name": objective},
                         run={"seed": 99}))
    b.load(tmp_path)
    assert b.step == 3
    for i in (3, 4):  # two steps: weights, RNG, optimizer moments and LR warmup all restored
        la, lb = a.train_step([batch(i)]), b.train_step([batch(i)])
        assert float(la) == float(lb), (stage, objective, i)
    for name, value in a.ema.shadow.items():
        assert torch.equal(value, b.ema.shadow[name]), name
    assert a.engine.get_lr() == b.engine.get_lr()


def test_loss_goes_down_on_a_fixed_batch(process_group):
    s = session(make_cfg(optim={"lr": 3e-3, "warmup_steps": 0}, generator={"p_uncond": 0.0}))
    fixed = batch(0, 8)
    first = [float(s.train_step([fixed])) for _ in range(5)]
    for _ in range(40):
        s.train_step([fixed])
    last = [float(s.train_step([fixed])) for _ in range(5)]
    assert sum(last) < 0.7 * sum(first), (first, last)


def test_export_reloads_to_identical_outputs(process_group, tmp_path):
    s = session(make_cfg(objective={"name": "edm"}))
    for i in range(2):
        s.train_step([batch(i)])
    dest = s.export(storage.resolve(tmp_path / "export"))
    loaded = IdentityGenerator.from_pretrained(dest.path)
    ema = s.ema_generator()
    x, cond = torch.randn(3, 3, 8, 8), torch.tensor([0, 5, 7])
    with torch.no_grad():
        for src in (0, 1):
            a = ema(x, 0.3, cond=cond, source=torch.full((3,), src))
            b = loaded(x, 0.3, cond=cond, source=torch.full((3,), src))
            assert torch.equal(a, b)
    meta = load_metadata(dest.path)
    assert meta["objective"] == {"name": "edm", "sigma_data": 0.5, "P_mean": -1.2, "P_std": 1.2}
    assert meta["step"] == 2 and meta["weights"] == "ema"
    assert meta["training_config"]["generator"]["num_identities"] == 8
    # the EMA differs from the raw weights after training (the export is not the raw model)
    raw = dict(s.model.named_parameters())
    assert any(not torch.equal(v, raw[k].detach()) for k, v in s.ema.shadow.items())


def test_export_replaces_a_previous_export(process_group, tmp_path):
    s = session(make_cfg())
    dest = storage.resolve(tmp_path / "export")
    s.export(dest)
    (tmp_path / "export" / "stale.txt").write_text("old")
    s.export(dest)
    assert not (tmp_path / "export" / "stale.txt").exists()
    assert (tmp_path / "export").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "export" / "condition" / "condition.safetensors").stat().st_mode & 0o777 == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_empty_context_rate_of_the_training_path(process_group):
    s = session(make_cfg(generator={"p_uncond": 0.2}))
    masks = [s._inputs(batch(i, 64))[1]["drop_mask"] for i in range(100)]
    rate = torch.cat(masks).float().mean().item()
    assert abs(rate - 0.2) < 0.015, rate  # 6400 draws: 3 standard deviations is 0.015


def test_embedding_condition_uses_the_label_table(process_group, tmp_path):
    import numpy as np

    table = np.random.default_rng(0).normal(size=(8, 12)).astype(np.float32)
    np.save(tmp_path / "emb.npy", table)
    cfg = make_cfg(generator={"condition": "embedding", "embedding_dim": 12},
                   data={"label_embeddings": str(tmp_path / "emb.npy")})
    s = session(cfg)
    b = batch(0)
    cond = s._inputs(b)[1]["cond"]
    assert torch.equal(cond, torch.from_numpy(table)[b["label"]])
    assert torch.isfinite(s.train_step([b]))


def test_embedding_condition_reads_an_identities_table_by_identity_id(process_group, tmp_path):
    import numpy as np
    import pyarrow.parquet as pq

    from synthface_ray.data.identities import identities_table
    from synthface_ray.train.generator_job import _check_labels

    table = np.random.default_rng(0).normal(size=(8, 12)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)  # identities tables hold unit embeddings
    order = np.array([5, 0, 7, 2, 1, 6, 3, 4])  # any row order: rows are placed by identity_id
    pq.write_table(identities_table(order, table[order], "class_center"), tmp_path / "ids.parquet")
    cfg = make_cfg(generator={"condition": "embedding", "embedding_dim": 12},
                   data={"label_embeddings": str(tmp_path / "ids.parquet")})
    b = batch(0)
    np.testing.assert_allclose(session(cfg)._inputs(b)[1]["cond"].numpy(), table[b["label"].numpy()], rtol=1e-6)
    _check_labels(cfg, np.arange(8))
    pq.write_table(identities_table(order[:6], table[order[:6]], "class_center"), tmp_path / "ids.parquet")
    with pytest.raises(ConfigError, match=r"no embedding for label\(s\) \[3\].*synthface embed"):
        _check_labels(cfg, np.array([0, 1, 2, 3, 5]))
    import pyarrow as pa

    one = identities_table([1], table[:1], "class_center")
    pq.write_table(pa.concat_tables([one, one]), tmp_path / "ids.parquet")  # a table made elsewhere
    with pytest.raises(ValueError, match=r"identity_id 1 appears 2 times .*every identity must have one row"):
        session(cfg)


def fr_export(tmp_path, embedding_dim: int = 12) -> str:
    """A tiny FR backbone exported as train-fr exports it (random weights, eval-mode statistics)."""
    from synthface_ray.models.recognition.embedder import save_backbone
    from synthface_ray.models.recognition.iresnet import BackboneConfig, build_backbone

    torch.manual_seed(0)
    config = BackboneConfig(input_size=32, width=4, embedding_dim=embedding_dim)
    return str(save_backbone(build_backbone(config), config, tmp_path / "fr"))


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Low-frequency images in [-1, 1] (resampling filters agree on them, unlike on pixel noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=True)


def test_per_image_contexts_are_each_images_own_fr_embedding(process_group, tmp_path):
    """data.context_fr_model (IDiff-Face): the context of an image is its unit embedding under the
    FR model, exactly what the project's embedder gives for those pixels; the label table only
    serves previews."""
    import numpy as np

    from synthface_ray.models.recognition.embedder import Embedder

    np.save(tmp_path / "emb.npy", np.ones((8, 12), np.float32))
    cfg = make_cfg(generator={"condition": "embedding", "embedding_dim": 12, "sample_size": 32},
                   data={"label_embeddings": str(tmp_path / "emb.npy"), "context_fr_model": fr_export(tmp_path)})
    s = session(cfg)
    b = {"image": smooth_images(4, 32), "label": torch.tensor([3, 3, 5, 5]), "source": torch.zeros(4)}
    cond = s._inputs(b)[1]["cond"]
    expected = Embedder.from_pretrained(cfg.data.context_fr_model, "cpu")(b["image"])
    np.testing.assert_allclose(cond.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(cond.norm(dim=1).numpy(), 1.0, atol=1e-5)
    assert not torch.allclose(cond[0], cond[1])  # one person, two images: two contexts
    assert torch.isfinite(s.train_step([b]))


def test_per_image_contexts_resize_to_the_fr_input_like_the_generation_scorer(tmp_path):
    """A generator smaller than the FR input: contexts of the resized images agree with the
    embeddings generate scores images by (PIL bicubic), so training and scoring see one space
    (random FR weights put different smooth images at cosine 0.80-0.99: the bound is tight)."""

    from synthface_ray.data.transforms import from_model_range
    from synthface_ray.generate.batch import image_embeddings
    from synthface_ray.train.generator import image_contexts, load_context_embedder

    cfg = make_cfg(generator={"condition": "embedding", "embedding_dim": 12, "sample_size": 16},
                   data={"label_embeddings": str(tmp_path / "emb.npy"), "context_fr_model": fr_export(tmp_path)})
    embedder = load_context_embedder(cfg)
    images = smooth_images(6, 16, seed=1)
    ours = image_contexts(embedder, images).numpy()
    scored = image_embeddings(embedder, from_model_range(images.numpy()))
    assert ours.shape == (6, 12)
    assert (ours * scored).sum(1).min() > 0.999  # other images of the set: 0.80-0.99


def test_per_image_context_checks(tmp_path):
    import numpy as np

    from synthface_ray.train.generator_job import _check_context_model

    with pytest.raises(ConfigError, match=r"data.context_fr_model is set but generator.condition='class'"):
        make_cfg(data={"context_fr_model": str(tmp_path)})
    np.save(tmp_path / "emb.npy", np.ones((8, 16), np.float32))
    embedding = {"condition": "embedding", "embedding_dim": 16}
    cfg = make_cfg(generator=embedding, data={"label_embeddings": str(tmp_path / "emb.npy"),
                                              "context_fr_model": fr_export(tmp_path, embedding_dim=12)})
    with pytest.raises(ConfigError, match=r"embeds to 12 dimensions but generator.embedding_dim=16: set "
                                          r"generator.embedding_dim=12"):
        _check_context_model(cfg)
    cfg = make_cfg(generator=embedding, data={"label_embeddings": str(tmp_path / "emb.npy"),
                                              "context_fr_model": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match=r"data.context_fr_model=.*nowhere.*exported FR backbone"):
        _check_context_model(cfg)


def test_config_cross_checks():
    with pytest.raises(ConfigError, match="scoreaug_dim=11"):
        make_cfg(scoreaug={"enabled": True})
    with pytest.raises(ConfigError, match="data.label_embeddings"):
        make_cfg(generator={"condition": "embedding"})
    with pytest.raises(ConfigError, match="objective.name"):
        make_cfg(objective={"name": "flow"})
    with pytest.raises(ConfigError, match="deepspeed.zero_stage"):
        make_cfg(deepspeed={"zero_stage": 4})
    with pytest.raises(ConfigError, match="data.resolution"):
        make_cfg(generator={"vae_path": "/some/vae"}).image_resolution()


def test_uint8_pixels_from_the_feed_match_the_model_range(process_group):
    import numpy as np

    from synthface_ray.data.transforms import to_model_range

    s = session(make_cfg())
    pixels = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    b = {"image": torch.from_numpy(pixels), "label": torch.arange(4), "source": torch.zeros(4)}
    x0, _ = s._inputs(b)
    assert torch.allclose(x0, torch.from_numpy(to_model_range(pixels)), atol=1e-6)


def test_local_paths_become_absolute_for_the_workers(tmp_path, monkeypatch):
    import os

    monkeypatch.chdir(tmp_path)
    cfg = make_cfg(data={"path": "toy"}, run={"storage_path": "s3://bucket/runs"},
                   export={"path": "out/export"}).with_absolute_paths()
    assert cfg.data.path == os.path.join(str(tmp_path), "toy")
    assert cfg.export.path == os.path.join(str(tmp_path), "out", "export")
    assert cfg.run.storage_path == "s3://bucket/runs" and cfg.generator.vae_path is None


def test_latent_space_with_a_user_vae(process_group, tmp_path):
    """generator.vae_path: images are encoded by the (frozen) AutoencoderKL; the export carries
    the VAE and the preview decodes back to pixels."""
    from diffusers import AutoencoderKL

    from synthface_ray.train.preview import PreviewConfig, preview_grid

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(8, 16), norm_num_groups=4, sample_size=16)
    vae.save_pretrained(tmp_path / "vae")
    cfg = make_cfg(generator={"vae_path": str(tmp_path / "vae"), "in_channels": 4},
                   data={"resolution": 16})
    s = session(cfg)
    b = {"image": torch.rand(4, 3, 16, 16) * 2 - 1, "label": torch.arange(4),
         "source": torch.zeros(4, dtype=torch.long)}
    x0, _ = s._inputs(b)
    assert x0.shape == (4, 4, 8, 8)  # 16 px -> 8x8x4 latents
    before = {k: v.clone() for k, v in s.vae.state_dict().items()}
    assert torch.isfinite(s.train_step([b]))
    assert all(torch.equal(v, s.vae.state_dict()[k]) for k, v in before.items())  # frozen
    dest = s.export(storage.resolve(tmp_path / "export"))
    assert (tmp_path / "export" / "vae" / "config.json").is_file()
    assert load_metadata(dest.path)["latent"] is True
    grid = preview_grid(s.ema_generator(), s.objective, [0, 1],
                        PreviewConfig(identities=2, images=2, steps=2), vae=s.vae)
    assert grid.size == (2 * 18 + 2, 2 * 18 + 2)  # 16 px tiles with 2 px padding


def test_bf16_engine_with_fp32_ema_restores_exactly(process_group, tmp_path):
    cfg = make_cfg(deepspeed={"zero_stage": 2, "precision": "bf16"})
    a = GeneratorSession(cfg, 0, 1, torch.device("cpu"), "bf16")
    assert next(a.model.parameters()).dtype == torch.bfloat16
    assert all(v.dtype == torch.float32 for v in a.ema.shadow.values())
    for i in range(2):
        assert torch.isfinite(a.train_step([batch(i)]))
    a.save(tmp_path)
    b = GeneratorSession(make_cfg(deepspeed={"zero_stage": 2, "precision": "bf16"}, run={"seed": 3}),
                         0, 1, torch.device("cpu"), "bf16")
    b.load(tmp_path)
    assert float(a.train_step([batch(2)])) == float(b.train_step([batch(2)]))
    assert a.ema_generator().unet.conv_in.weight.dtype == torch.float32


@pytest.mark.parametrize("objective", ["ddpm_eps", "edm"])
def test_preview_is_what_generate_draws(process_group, tmp_path, objective):
    """preview.sampler = a generate job's sampler section: each grid cell is the image the
    composite sampler (generate's code) draws from the export for that identity and seed."""
    from synthface_ray.sampling.composite import Conditions, sample
    from synthface_ray.sampling.exported import load_generator
    from synthface_ray.train.preview import PreviewConfig, sample_images

    s = session(make_cfg(objective={"name": objective}))
    assert torch.isfinite(s.train_step([batch(0)]))
    section = {"recipe": "cfg", "cfg_scale": 1.5, "solver": "ddim", "steps": 3}
    preview = PreviewConfig(identities=2, images=2, seed=7, sampler=section)
    ids = torch.tensor([3, 3, 5, 5])
    got = sample_images(s.ema_generator(), s.objective, ids, preview)
    gen = load_generator(s.export(storage.resolve(tmp_path / "export")).path)
    cond = Conditions.single(gen.contexts(ids), gen.empty, torch.arange(4), [7, 8, 7, 8])
    want = sample(gen.net, gen.param, cond, section, gen.shape).images.clamp(-1, 1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert not torch.allclose(got[0], got[1])  # the columns' seeds differ


def test_preview_sampler_section_is_checked_at_load():
    from synthface_ray.train.preview import PreviewConfig

    with pytest.raises(ConfigError, match=r"^preview\.sampler\.recipe='nope'"):
        PreviewConfig(sampler={"recipe": "nope"})
    with pytest.raises(ConfigError, match=r"^preview\.sampler\.steps"):
        PreviewConfig(sampler={"steps": 0})
    assert PreviewConfig(steps=5, guidance=2.0).sampler_config().cfg_scale == 2.0
