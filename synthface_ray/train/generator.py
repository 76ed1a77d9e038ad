"""Generator training: the config, the per-worker session (setup, step, checkpoint, export).

The Ray edge (``train_loop_per_worker`` and the ``TorchTrainer`` wiring) is in
:mod:`synthface_ray.train.generator_job`; this module imports neither Ray nor DeepSpeed at import
time, and :class:`GeneratorSession` runs in a plain process too (the checkpoint tests use it so).

One optimizer step = ``optim.grad_accum`` micro-batches of ``optim.micro_batch`` images per
worker. Randomness (noise levels, noise, empty-context mask, ScoreAug) comes from one
``torch.Generator`` per rank whose state is checkpointed with the weights, the optimizer, the LR
schedule and the EMA, so a resumed run continues the same random stream.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from synthface_ray import storage
from synthface_ray.config import ConfigError, check_range, to_dict
from synthface_ray.data.identities import read_identities
from synthface_ray.data.transforms import pixels_to_model
from synthface_ray.models.generator import GeneratorConfig, IdentityGenerator
from synthface_ray.models.objectives import ObjectiveConfig
from synthface_ray.models.scoreaug import OMEGA_DIM, ScoreAugConfig
from synthface_ray.storage import StorageConfig
from synthface_ray.train import checkpoint
from synthface_ray.train.deepspeed import DeepSpeedConfig, ds_config
from synthface_ray.train.ema import EMA
from synthface_ray.train.preview import PreviewConfig
from synthface_ray.train.sections import (
    ExportSection,
    FeedSection,
    JobConfig,
    RunSection,
    ScalingSection,
    absolute,
)

EMA_FILE = "ema.pt"
EXPORT_MARKER = "condition/metadata.json"


# config ---------------------------------------------------------------------------------------
@dataclass
class DataSection(FeedSection):
    """``path``: faces dataset (local or s3://). ``label_embeddings``: ``.npy`` of shape
    (num_identities, embedding_dim), row ``label`` = that identity's FR embedding, or an identities
    table (``.parquet``; ``synthface embed`` writes the class centres of a faces set) whose
    ``identity_id`` is the label; required when ``generator.condition`` is ``embedding``.
    ``context_fr_model``: an exported FR backbone (``train-fr``'s export, local or s3://); when set,
    each training image is conditioned on its *own* unit embedding under it (IDiff-Face Sec. 3.2,
    Arc2Face: the contexts are the FR features of the training images) instead of its label's row of
    ``label_embeddings``, which then only gives the contexts of the sample previews. The contexts
    vary within a person and cover more of the embedding space than one point per person, which is
    what drawing *new* people from new embeddings needs. ``resolution``: images are resized to it (default
    ``generator.sample_size``; in latent space give the VAE's input size). The feed options
    (``shuffle_buffer``, ``strict``, ``cache``, ``cache_max_gb``) are :class:`FeedSection`'s."""

    path: str = "runs/toyfaces"
    resolution: int | None = None
    label_embeddings: str | None = None
    context_fr_model: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path:
            raise ConfigError("data.path is empty: give the faces dataset (local path or s3://...)")
        if self.resolution is not None:
            check_range("data.resolution", self.resolution, 1)


@dataclass
class OptimSection:
    """AdamW (client optimizer: DeepSpeed compiles nothing) with linear LR warmup."""

    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    micro_batch: int = 32
    grad_accum: int = 1
    max_steps: int = 1000
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        check_range("optim.lr", self.lr, 0.0)
        check_range("optim.weight_decay", self.weight_decay, 0.0)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim.betas={list(self.betas)} must be two numbers in [0, 1)")
        check_range("optim.micro_batch", self.micro_batch, 1)
        check_range("optim.grad_accum", self.grad_accum, 1)
        check_range("optim.max_steps", self.max_steps, 1)
        check_range("optim.warmup_steps", self.warmup_steps, 0)


@dataclass
class EMASection:
    decay: float = 0.999
    warmup: bool = True  # decay capped by (1 + n) / (10 + n) early on

    def __post_init__(self) -> None:
        check_range("ema.decay", self.decay, 0.0, 1.0)


@dataclass
class TrainGeneratorConfig(JobConfig):
    data: DataSection = field(default_factory=DataSection)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    scoreaug: ScoreAugConfig = field(default_factory=ScoreAugConfig)
    optim: OptimSection = field(default_factory=OptimSection)
    ema: EMASection = field(default_factory=EMASection)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    run: RunSection = field(default_factory=lambda: RunSection(name="generator"))
    preview: PreviewConfig = field(default_factory=PreviewConfig)
    export: ExportSection = field(default_factory=ExportSection)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        aug, width = self.scoreaug.enabled, self.generator.scoreaug_dim
        if aug and width != OMEGA_DIM:
            raise ConfigError(
                f"scoreaug is enabled but generator.scoreaug_dim={width}: set "
                f"generator.scoreaug_dim={OMEGA_DIM} (the omega width) so the network sees omega"
            )
        if self.generator.condition == "embedding" and not self.data.label_embeddings:
            raise ConfigError(
                "generator.condition=embedding needs data.label_embeddings: a .npy file of shape "
                "(num_identities, embedding_dim) with one FR embedding per training label"
            )
        if self.data.context_fr_model and self.generator.condition != "embedding":
            raise ConfigError(
                f"data.context_fr_model is set but generator.condition={self.generator.condition!r}: "
                "per-image FR contexts need generator.condition=embedding (or drop data.context_fr_model)"
            )

    def image_resolution(self) -> int:
        """The size images are decoded to: ``data.resolution`` or the generator's pixel size."""
        if self.data.resolution is not None:
            return self.data.resolution
        if self.generator.vae_path is not None:
            raise ConfigError(
                "generator.vae_path is set but data.resolution is not: give the image size the VAE "
                "encodes (e.g. 8 x generator.sample_size for a Stable Diffusion VAE)"
            )
        return self.generator.sample_size

    def with_absolute_paths(self) -> TrainGeneratorConfig:
        """A copy whose local paths are absolute: workers run in another working directory."""
        import dataclasses

        return self._with_absolute_run_paths(
            data=dataclasses.replace(self.data, path=absolute(self.data.path),
                                     label_embeddings=absolute(self.data.label_embeddings),
                                     context_fr_model=absolute(self.data.context_fr_model)),
            generator=dataclasses.replace(self.generator, vae_path=absolute(self.generator.vae_path)),
        )


# session: one worker's model, engine, EMA and RNG ----------------------------------------------
def load_label_embeddings(uri: str, cfg: StorageConfig | None = None) -> torch.Tensor:
    """The (num_identities, D) float32 table of identity embeddings: a ``.npy`` file (row = label)
    or an identities table (``.parquet``, e.g. ``synthface embed``'s class centres: row
    ``identity_id`` = that label; labels it lacks get NaN rows, which the pre-flight check names)."""
    import io

    import numpy as np

    loc = storage.resolve(uri, cfg)
    if not storage.exists(loc):
        raise FileNotFoundError(f"data.label_embeddings: {loc.uri} does not exist")
    if loc.uri.endswith(".parquet"):
        return torch.from_numpy(_identities_by_label(loc.uri, cfg))
    table = np.load(io.BytesIO(storage.read_bytes(loc)), allow_pickle=False)
    if table.ndim != 2 or not np.issubdtype(table.dtype, np.floating):
        raise ValueError(
            f"data.label_embeddings: {loc.uri} holds a {table.dtype} array of shape {table.shape};"
            " expected floats of shape (num_identities, embedding_dim)"
        )
    return torch.from_numpy(table.astype(np.float32))


def _identities_by_label(uri: str, cfg: StorageConfig | None):
    """An identities table's embeddings placed at row ``identity_id`` (NaN where an id is absent),
    read and checked by :func:`synthface_ray.data.identities.read_identities`."""
    import numpy as np

    ids, emb = read_identities(uri, cfg)
    if len(ids) == 0 or ids.min() < 0:
        raise ValueError(f"data.label_embeddings: {uri} must list each identity_id (= training label, >= 0) "
                         "once; make it with `synthface embed --model FR --data FACES --out IDS.parquet`")
    dense = np.full((int(ids.max()) + 1, emb.shape[1]), np.nan, np.float32)
    dense[ids] = emb
    return dense


def load_context_embedder(cfg: TrainGeneratorConfig, device: torch.device | str = "cpu"):
    """The FR backbone of ``data.context_fr_model`` (an export folder, local or s3://), in eval mode."""
    from synthface_ray.models.recognition.embedder import Embedder  # lazy: the FR model stack

    return Embedder.from_storage(cfg.data.context_fr_model, cfg.storage, "data.context_fr_model", device)


@torch.no_grad()
def image_contexts(embedder, images: torch.Tensor) -> torch.Tensor:
    """Unit FR embeddings (B, D), float32, of model-range images (B, 3, S, S) in [-1, 1]: the
    per-image contexts c = f(x0) / ||f(x0)|| of IDiff-Face (Sec. 3.2). Images are resized
    (bicubic, antialiased) to the FR model's input size when it differs from the generator's."""
    from torch.nn import functional as F

    size = embedder.config.input_size
    x = images.float()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)
    return F.normalize(embedder.model(x).float(), dim=1)


def _warmup_lambda(warmup: int):
    return lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0


class GeneratorSession:
    """Everything one worker needs to train: model, DeepSpeed engine, EMA, objective, RNG.

    The process group must already exist (Ray Train, or ``torch.distributed`` in tests).
    """

    def __init__(self, cfg: TrainGeneratorConfig, rank: int, world: int, device: torch.device,
                 precision: str) -> None:
        import deepspeed

        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        self.objective = cfg.objective.build()
        torch.manual_seed(cfg.run.seed)  # same initial weights on every rank
        model = IdentityGenerator(cfg.generator).to(device)
        self.ema = EMA(model, cfg.ema.decay, cfg.ema.warmup)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas,
                                weight_decay=cfg.optim.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_lambda(cfg.optim.warmup_steps))
        ds = ds_config(cfg.deepspeed, cfg.optim.micro_batch, cfg.optim.grad_accum, world, precision)
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, optimizer=opt, lr_scheduler=sched, config=ds,
            dist_init_required=False,
        )
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
        self.rng = torch.Generator(device=device).manual_seed(cfg.run.seed * 1_000_003 + rank)
        torch.manual_seed(cfg.run.seed * 1_000_003 + rank)  # context dropout uses the global RNG
        self.vae = _load_vae(cfg.generator.vae_path, device)
        self.cond_table = (load_label_embeddings(cfg.data.label_embeddings, cfg.storage).to(device)
                           if cfg.generator.condition == "embedding" else None)
        self.context_embedder = load_context_embedder(cfg, device) if cfg.data.context_fr_model else None
        self.step = 0

    @property
    def model(self) -> IdentityGenerator:
        return self.engine.module

    def _inputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """(x0, conditioning keywords) for one micro-batch of image/label/source."""
        x0 = pixels_to_model(batch["image"].to(self.device, non_blocking=True))  # Ray Data: uint8
        label = batch["label"].to(self.device).long()
        if self.context_embedder is not None:  # IDiff-Face: each image's own FR embedding
            cond = image_contexts(self.context_embedder, x0)
        else:
            cond = label if self.cond_table is None else self.cond_table[label]
        if self.vae is not None:
            with torch.no_grad():
                latent = self.vae.encode(x0.to(self.vae.dtype)).latent_dist.sample(generator=self.rng)
                x0 = latent * self.vae.config.scaling_factor
        kwargs: dict[str, Any] = {
            "cond": cond,
            "drop_mask": self.model.sample_drop_mask(len(label), self.rng),
        }
        if self.cfg.generator.num_sources:
            kwargs["source"] = batch["source"].to(self.device).long()
        return x0.to(self.dtype), kwargs

    def micro_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss of one micro-batch (forward only)."""
        x0, kwargs = self._inputs(batch)
        augment = self.cfg.scoreaug if self.cfg.scoreaug.enabled else None
        return self.objective.training_loss(self.engine, x0, kwargs, self.rng, augment)

    def train_step(self, micro_batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """One optimizer step over ``grad_accum`` micro-batches; returns the mean loss (tensor)."""
        if len(micro_batches) != self.cfg.optim.grad_accum:
            raise ValueError(f"expected {self.cfg.optim.grad_accum} micro-batches, got {len(micro_batches)}")
        total = torch.zeros((), device=self.device)
        for batch in micro_batches:
            loss, _ = self.micro_loss(batch)
            self.engine.backward(loss)
            self.engine.step()
            total += loss.detach().float()
        self._update_ema()
        self.step += 1
        return total / len(micro_batches)

    def _update_ema(self) -> None:
        if self.cfg.deepspeed.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.model.parameters())):
                self.ema.update(self.model)
        else:
            self.ema.update(self.model)

    # checkpoint -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write this rank's share of a checkpoint into ``directory`` (all ranks must call)."""
        state = {"step": self.step, "world_size": self.world, "seed": self.cfg.run.seed}
        checkpoint.save(directory, self.engine, self.rank, self.rng, state)
        if self.rank == 0:
            torch.save(self.ema.state_dict(), Path(directory) / EMA_FILE)

    def load(self, directory: str | Path) -> None:
        """Restore weights, optimizer, LR schedule, EMA, step and this rank's RNG streams."""
        reseed = self.cfg.run.seed * 1_000_003 + self.rank
        state = checkpoint.load(directory, self.engine, self.rank, self.rng, reseed)
        # copied into the EMA's own tensors, which already live on this device
        ema = torch.load(Path(directory) / EMA_FILE, map_location="cpu", weights_only=True)
        self.ema.load_state_dict(ema)
        self.step = int(state["step"])

    # export ---------------------------------------------------------------------------------
    def ema_generator(self, device: torch.device | str = "cpu") -> IdentityGenerator:
        """A fresh fp32 generator holding the EMA weights, in eval mode."""
        model = IdentityGenerator(self.cfg.generator)
        self.ema.copy_to(model)
        return model.to(device).eval()

    def export(self, destination: storage.Location) -> storage.Location:
        """Write the EMA generator as a self-contained folder (diffusers ``unet/`` + ``condition/``
        with the objective, schedule and training config in ``metadata.json``)."""
        metadata = export_metadata(self.cfg, self.step)
        with tempfile.TemporaryDirectory(prefix="synthface-export-") as tmp:
            self.ema_generator().save_pretrained(tmp, extra_metadata=metadata)
            if self.vae is not None:
                self.vae.save_pretrained(os.path.join(tmp, "vae"), safe_serialization=True)
            storage.publish_dir(tmp, destination, marker=EXPORT_MARKER)
        return destination


def export_metadata(cfg: TrainGeneratorConfig, step: int) -> dict[str, Any]:
    """What a sampler needs besides the weights: objective + schedule, and the training config."""
    return {
        "format": "synthface-generator/1",
        "objective": {"name": cfg.objective.name, **cfg.objective.settings()},
        "weights": "ema",
        "ema_decay": cfg.ema.decay,
        "step": step,
        "latent": cfg.generator.vae_path is not None,
        "training_config": to_dict(cfg),  # secrets redacted
    }


def _load_vae(path: str | None, device: torch.device):
    """The frozen ``AutoencoderKL`` for latent-space training, or None for pixel space."""
    if path is None:
        return None
    from diffusers import AutoencoderKL

    if not os.path.isdir(path):
        raise FileNotFoundError(f"generator.vae_path: {path} is not a folder (a diffusers AutoencoderKL)")
    vae = AutoencoderKL.from_pretrained(path).to(device).eval()
    vae.requires_grad_(False)
    return vae


__all__ = [
    "DataSection", "EMASection", "ExportSection", "GeneratorSession", "OptimSection",
    "RunSection", "ScalingSection", "TrainGeneratorConfig", "export_metadata", "image_contexts",
    "load_context_embedder", "load_label_embeddings",
]
