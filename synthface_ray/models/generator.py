"""The identity-conditioned diffusion generator: a diffusers ``UNet2DConditionModel`` plus the
pieces that turn an identity into cross-attention context.

- Identity context (ScoreMix, arXiv 2506.10226): a *learnable* class table (frozen FR centres
  as conditions made training diverge), or a projection of a unit FR embedding (IDiff-Face style),
  both shaped as ``context_tokens`` tokens of ``context_dim`` for cross-attention.
- Empty context ``c_e`` (UIFace, ICLR 2025): a learnable parameter that replaces the identity
  context with probability ``p_uncond`` (0.2) in training; it is the unconditional branch of CFG
  and of UIFace's two-stage sampler (eq. 4).
- Source label ``y`` (CASD): 0 = real, 1..k = synthetic source, through an embedding; sampling
  pins it to 0.
- Augmentation parameters ``omega`` (ScoreAug, arXiv 2508.07926): a linear projection added to
  the time embedding, zero-initialised so it starts as a no-op.

The source and omega embeddings are summed into one vector and handed to the UNet as
``class_labels`` with ``class_embed_type="identity"``, which diffusers adds to the time
embedding unchanged (``emb = emb + class_emb``). Pure torch + diffusers: no Ray, no DeepSpeed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from synthface_ray import storage
from synthface_ray.config import ConfigError, check_choice, check_range, from_dict, to_dict
from synthface_ray.models.weights import FIX_GENERATOR, load_safetensors

CONDITION_KINDS = ("class", "embedding")
UNET_DIR, CONDITION_DIR = "unet", "condition"
CONDITION_WEIGHTS = "condition.safetensors"
CONFIG_FILE, METADATA_FILE = "generator_config.json", "metadata.json"
# the diffusers side of an export (written when the metadata names a registered objective)
SCHEDULER_DIR, MODEL_INDEX = "scheduler", "model_index.json"
PIPELINE_FILE, CONDITION_MODULE = "synthface_pipeline.py", "synthface_condition.py"
_P = "generator."  # key prefix in error messages


@dataclass
class GeneratorConfig:
    """Architecture and conditioning of the generator; defaults are a tiny CPU model for 32x32
    ToyFaces (about 1M parameters, cross-attention only at the lowest resolution).

    ``condition``: ``class`` (learnable table of ``num_identities`` rows) or ``embedding`` (a
    ``embedding_dim``-wide unit FR embedding projected to tokens). ``p_uncond``: probability of the
    empty context in training (UIFace). ``context_dropout``: IDiff-Face contextual partial dropout
    on the identity context in training (0 or 0.25 typical). ``num_sources``: CASD source labels
    0..num_sources (0 = real; 0 disables). ``scoreaug_dim``: width of the ScoreAug omega vector
    (0 disables). ``vae_path``: train in a VAE's latent space; the VAE is loaded by the training
    and sampling code, and ``in_channels``/``sample_size`` must then be the latent's.
    ``norm_num_groups`` must divide every entry of ``block_out_channels``.
    """

    sample_size: int = 32
    in_channels: int = 3
    block_out_channels: tuple[int, ...] = (16, 32, 64)
    layers_per_block: int = 1
    cross_attention_levels: tuple[bool, ...] = (False, False, True)
    attention_head_dim: int = 8
    norm_num_groups: int = 8
    context_dim: int = 64
    context_tokens: int = 2
    condition: str = "class"
    num_identities: int = 64
    embedding_dim: int = 512
    embedding_layernorm: bool = True
    p_uncond: float = 0.2
    context_dropout: float = 0.0
    num_sources: int = 0
    scoreaug_dim: int = 0
    vae_path: str | None = None

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(self.block_out_channels)
        self.cross_attention_levels = tuple(self.cross_attention_levels)
        _check_architecture(self)
        _check_conditioning(self)

    @property
    def time_embed_dim(self) -> int:
        """Width of the UNet time embedding (diffusers' positional default: 4 x first channels)."""
        return self.block_out_channels[0] * 4


def _check_architecture(cfg: GeneratorConfig) -> None:
    """Validate the UNet shape keys, naming the key and how to fix it."""
    check_range(_P + "in_channels", cfg.in_channels, 1)
    check_range(_P + "layers_per_block", cfg.layers_per_block, 1)
    check_range(_P + "norm_num_groups", cfg.norm_num_groups, 1)
    check_range(_P + "attention_head_dim", cfg.attention_head_dim, 1)
    levels = len(cfg.block_out_channels)
    if levels == 0:
        raise ConfigError(
            f"{_P}block_out_channels is empty: give one width per level, e.g. [16, 32, 64]"
        )
    if len(cfg.cross_attention_levels) != levels:
        raise ConfigError(
            f"{_P}cross_attention_levels has {len(cfg.cross_attention_levels)} entries but "
            f"{_P}block_out_channels has {levels}: give one true/false per level"
        )
    if not any(cfg.cross_attention_levels):
        raise ConfigError(
            f"{_P}cross_attention_levels={list(cfg.cross_attention_levels)}: the identity enters "
            "only through cross-attention; set at least one level (e.g. the last) to true"
        )
    for i, (ch, attn) in enumerate(zip(cfg.block_out_channels, cfg.cross_attention_levels)):
        check_range(f"{_P}block_out_channels[{i}]", ch, 1)
        if ch % cfg.norm_num_groups:
            raise ConfigError(
                f"{_P}norm_num_groups={cfg.norm_num_groups} does not divide "
                f"{_P}block_out_channels[{i}]={ch}: choose a common divisor of all channel widths"
            )
        if attn and ch % cfg.attention_head_dim:
            raise ConfigError(
                f"{_P}attention_head_dim={cfg.attention_head_dim} does not divide "
                f"{_P}block_out_channels[{i}]={ch} at a cross-attention level: choose a divisor"
            )
    factor = 2 ** (levels - 1)
    check_range(_P + "sample_size", cfg.sample_size, 1)
    if cfg.sample_size % factor:
        raise ConfigError(
            f"{_P}sample_size={cfg.sample_size} must be divisible by {factor} "
            f"(2^(levels-1) for {levels} levels): change the size or the number of levels"
        )


def _check_conditioning(cfg: GeneratorConfig) -> None:
    """Validate the conditioning keys, naming the key and how to fix it."""
    check_choice(_P + "condition", cfg.condition, CONDITION_KINDS)
    check_range(_P + "context_dim", cfg.context_dim, 1)
    min_tokens = 2 if cfg.condition == "embedding" else 1
    check_range(_P + "context_tokens", cfg.context_tokens, min_tokens)
    check_range(_P + "num_identities", cfg.num_identities, 1)
    check_range(_P + "embedding_dim", cfg.embedding_dim, 1)
    check_range(_P + "p_uncond", cfg.p_uncond, 0.0, 1.0)
    check_range(_P + "context_dropout", cfg.context_dropout, 0.0, 1.0)
    if cfg.context_dropout >= 1.0:
        raise ConfigError(
            f"{_P}context_dropout={cfg.context_dropout!r} would drop the whole context: "
            "allowed values are in [0, 1) (0.25 is IDiff-Face's choice)"
        )
    check_range(_P + "num_sources", cfg.num_sources, 0)
    check_range(_P + "scoreaug_dim", cfg.scoreaug_dim, 0)
    if cfg.vae_path is not None and (not isinstance(cfg.vae_path, str) or not cfg.vae_path):
        raise ConfigError(
            f"{_P}vae_path={cfg.vae_path!r} must be a non-empty path string, or null for pixel space"
        )


# identity context -----------------------------------------------------------------------------
class ConditionEncoder(nn.Module):
    """Identity -> cross-attention context of shape (B, context_tokens, context_dim).

    ``class``: a learnable ``nn.Embedding`` row per identity, reshaped to tokens (ScoreMix keeps the
    condition learnable). ``embedding``: ``Linear(embedding_dim -> tokens * dim)`` (optionally
    followed by ``LayerNorm`` over each token) applied to a unit FR embedding (IDiff-Face).
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.kind = config.condition
        self.tokens, self.dim = config.context_tokens, config.context_dim
        width = self.tokens * self.dim
        if self.kind == "class":
            self.table = nn.Embedding(config.num_identities, width)
        else:
            self.proj = nn.Linear(config.embedding_dim, width)
            self.norm = nn.LayerNorm(self.dim) if config.embedding_layernorm else nn.Identity()

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """Encode class ids (B,) int or embeddings (B, embedding_dim) float into (B, tokens, dim)."""
        if self.kind == "class":
            flat = self.table(self._check_ids(cond))
            return flat.view(-1, self.tokens, self.dim)
        self._check_embedding(cond)
        flat = self.proj(cond.to(self.proj.weight.dtype))
        return self.norm(flat.view(-1, self.tokens, self.dim))

    def _check_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Class ids must be a 1-D integer tensor in [0, num_identities)."""
        if ids.dim() != 1 or ids.is_floating_point():
            raise ValueError(
                f"class condition must be a 1-D integer tensor of identity ids, got shape "
                f"{tuple(ids.shape)} dtype {ids.dtype}"
            )
        n = self.table.num_embeddings
        bad = ids[(ids < 0) | (ids >= n)]
        if bad.numel():
            raise ValueError(
                f"class id {int(bad[0])} is out of range: identity ids must be in [0, {n}) "
                f"(generator.num_identities={n})"
            )
        return ids

    def _check_embedding(self, emb: torch.Tensor) -> None:
        """Embeddings must be (B, embedding_dim) floats."""
        width = self.proj.in_features
        if emb.dim() != 2 or emb.shape[1] != width or not emb.is_floating_point():
            raise ValueError(
                f"embedding condition must be a float tensor of shape (B, {width}) "
                f"(generator.embedding_dim={width}), got shape {tuple(emb.shape)} dtype {emb.dtype}"
            )


def build_unet(config: GeneratorConfig) -> nn.Module:
    """A diffusers ``UNet2DConditionModel`` from the config.

    Down blocks are ``CrossAttnDownBlock2D`` where ``cross_attention_levels`` is true, else
    ``DownBlock2D``; up blocks mirror them; the mid block has cross-attention iff the lowest level
    has. diffusers' ``attention_head_dim`` argument is really the number of heads (diffusers issue
    2011), so it is given ``channels // attention_head_dim`` per level. With a source label or
    omega, ``class_embed_type="identity"``: the ``class_labels`` vector is added to the time
    embedding as is.
    """
    from diffusers import UNet2DConditionModel

    levels = config.cross_attention_levels
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in levels)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(levels))
    heads = tuple(max(1, ch // config.attention_head_dim) for ch in config.block_out_channels)
    extra = config.num_sources > 0 or config.scoreaug_dim > 0
    return UNet2DConditionModel(
        sample_size=config.sample_size,
        in_channels=config.in_channels,
        out_channels=config.in_channels,
        down_block_types=down,
        up_block_types=up,
        mid_block_type="UNetMidBlock2DCrossAttn" if levels[-1] else "UNetMidBlock2D",
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        norm_num_groups=config.norm_num_groups,
        cross_attention_dim=config.context_dim,
        attention_head_dim=heads,
        class_embed_type="identity" if extra else None,
    )


# the generator --------------------------------------------------------------------------------
class IdentityGenerator(nn.Module):
    """UNet + identity encoder + learnable empty context (+ CASD source and ScoreAug omega).

    ``forward`` returns the raw UNet output (same shape as ``x``); what it means (epsilon, EDM
    F_theta, ...) is up to the objective/preconditioning that wraps it.
    """

    def __init__(self, config: GeneratorConfig, unet: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.unet = unet if unet is not None else build_unet(config)
        self.encoder = ConditionEncoder(config)
        # UIFace: learnable empty context c_e, small init like a token embedding
        self.empty_context = nn.Parameter(
            torch.randn(config.context_tokens, config.context_dim) * 0.02
        )
        d = config.time_embed_dim
        self.source_embedding = (
            nn.Embedding(config.num_sources + 1, d) if config.num_sources else None
        )
        self.omega_proj = _zero_linear(config.scoreaug_dim, d) if config.scoreaug_dim else None

    # conditioning ---------------------------------------------------------------------------
    def context(self, cond: torch.Tensor, drop_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-attention context (B, tokens, dim) for ``cond``; rows where ``drop_mask`` is True
        get the learnable empty context c_e exactly (UIFace). In training mode the identity rows
        get contextual partial dropout (IDiff-Face) when ``context_dropout > 0``.
        """
        ctx = self.encoder(cond)
        if self.training and self.config.context_dropout > 0:
            ctx = F.dropout(ctx, p=self.config.context_dropout, training=True)
        if drop_mask is None:
            return ctx
        drop_mask = drop_mask.to(device=ctx.device, dtype=torch.bool)
        if drop_mask.shape != (ctx.shape[0],):
            raise ValueError(
                f"drop_mask must have shape ({ctx.shape[0]},), got {tuple(drop_mask.shape)}"
            )
        empty = self.empty_context.to(ctx.dtype).expand_as(ctx)
        return torch.where(drop_mask[:, None, None], empty, ctx)

    def empty(self, batch: int) -> torch.Tensor:
        """The empty context c_e repeated for ``batch`` rows: (batch, tokens, dim)."""
        return self.empty_context.unsqueeze(0).expand(batch, -1, -1)

    def sample_drop_mask(
        self, batch: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Bool (batch,) mask, True with probability ``p_uncond``: rows trained on c_e (UIFace)."""
        device = generator.device if generator is not None else self.empty_context.device
        return torch.rand(batch, generator=generator, device=device) < self.config.p_uncond

    def extra_embedding(
        self,
        batch: int,
        source: torch.Tensor | None,
        omega: torch.Tensor | None,
        like: torch.Tensor,
    ) -> torch.Tensor | None:
        """Source-label embedding (CASD) + omega projection (ScoreAug): (batch, time_embed_dim),
        added to the UNet time embedding; None when neither is configured.
        """
        src, om = self._check_source(batch, source, like), self._check_omega(batch, omega)
        if self.source_embedding is None and self.omega_proj is None:
            return None
        out = torch.zeros(batch, self.config.time_embed_dim, device=like.device, dtype=like.dtype)
        if self.source_embedding is not None:
            out = out + self.source_embedding(src).to(like.dtype)
        if self.omega_proj is not None:
            if om is None:  # no augmentation: omega = 0
                om = torch.zeros(batch, self.config.scoreaug_dim, device=like.device)
            out = out + self.omega_proj(om.to(self.omega_proj.weight.dtype)).to(like.dtype)
        return out

    def _check_source(
        self, batch: int, source: torch.Tensor | None, like: torch.Tensor
    ) -> torch.Tensor:
        """Source labels (B,) in [0, num_sources]; None means real (0)."""
        if source is None:
            return torch.zeros(batch, dtype=torch.long, device=like.device)
        source = torch.as_tensor(source, device=like.device)
        if source.dim() == 0:
            source = source.expand(batch)
        k = self.config.num_sources
        if source.shape != (batch,) or source.is_floating_point():
            raise ValueError(
                f"source must be an integer tensor of shape ({batch},), got {tuple(source.shape)} {source.dtype}"
            )
        bad = source[(source < 0) | (source > k)]
        if bad.numel():
            hint = (
                "set generator.num_sources>0 to train with source labels" if k == 0 else "0 = real"
            )
            raise ValueError(
                f"source label {int(bad[0])} is out of range: labels must be in [0, {k}] "
                f"(generator.num_sources={k}; {hint})"
            )
        return source.long()

    def _check_omega(self, batch: int, omega: torch.Tensor | None) -> torch.Tensor | None:
        """ScoreAug omega (B, scoreaug_dim); only allowed when ``scoreaug_dim > 0``."""
        if omega is None:
            return None
        width = self.config.scoreaug_dim
        if width == 0:
            raise ValueError(
                "omega was given but generator.scoreaug_dim=0: set scoreaug_dim to the omega width to use ScoreAug"
            )
        if omega.shape != (batch, width):
            raise ValueError(
                f"omega must have shape ({batch}, {width}) (generator.scoreaug_dim={width}), got {tuple(omega.shape)}"
            )
        return omega

    # network --------------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        t_or_cnoise: torch.Tensor | float | int,
        context: torch.Tensor | None = None,
        source: torch.Tensor | None = None,
        omega: torch.Tensor | None = None,
        *,
        cond: torch.Tensor | None = None,
        drop_mask: torch.Tensor | None = None,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """Raw UNet output for noisy ``x`` (B, C, H, W) at timestep / EDM c_noise ``t_or_cnoise``
        (scalar or (B,)), cross-attending to ``context`` (B, tokens, dim). ``source`` (CASD, None =
        real) and ``omega`` (ScoreAug, None = no augmentation) enter through the time embedding.

        Instead of ``context`` the raw condition ``cond`` (and the empty-context ``drop_mask``) may
        be given; the context is then computed inside this call, which is what DeepSpeed ZeRO-3
        needs (parameters are gathered by hooks around ``forward`` only).

        ``attention_kwargs`` go to the UNet's attention processors for this forward only (diffusers'
        ``cross_attention_kwargs``; the sampler passes UIFace's per-forward injection inputs this way).
        This is the one call convention of the generator: training and sampling both use it.
        """
        if context is None:
            if cond is None:
                raise ValueError("give either context (B, tokens, dim) or cond (ids or embeddings)")
            context = self.context(cond, drop_mask)
        batch = x.shape[0]
        t = torch.as_tensor(t_or_cnoise, device=x.device)
        if t.dim() == 0:
            t = t.expand(batch)
        extra = self.extra_embedding(batch, source, omega, like=x)
        out = self.unet(x, t, encoder_hidden_states=context.to(x.dtype), class_labels=extra,
                        cross_attention_kwargs=attention_kwargs)
        return out.sample

    # persistence ----------------------------------------------------------------------------
    def save_pretrained(
        self, folder: str | Path, extra_metadata: dict[str, Any] | None = None
    ) -> Path:
        """Write a self-contained folder: ``unet/`` (diffusers ``save_pretrained``) and
        ``condition/`` (``condition.safetensors`` with encoder, empty context and extra
        embeddings; ``generator_config.json``; ``metadata.json`` when ``extra_metadata`` is given,
        e.g. the objective/schedule and training config added by the training code).

        When the metadata names a registered objective, the folder is also a diffusers pipeline
        (:func:`write_diffusers_files`): ``scheduler/``, ``model_index.json`` and the pipeline code.
        """
        from safetensors.torch import save_file

        folder = Path(folder)
        self.unet.save_pretrained(folder / UNET_DIR, safe_serialization=True)
        cond_dir = folder / CONDITION_DIR
        cond_dir.mkdir(parents=True, exist_ok=True)
        state = {
            k: v.detach().contiguous().cpu()
            for k, v in self.state_dict().items()
            if not k.startswith("unet.")
        }
        save_file(state, str(cond_dir / CONDITION_WEIGHTS))
        _write_json(cond_dir / CONFIG_FILE, to_dict(self.config, redact=False))
        if extra_metadata is not None:
            _write_json(cond_dir / METADATA_FILE, extra_metadata)
            objective = extra_metadata.get("objective")
            if isinstance(objective, dict) and _registered(objective.get("name")):
                write_diffusers_files(folder, objective, latent=self.config.vae_path is not None)
        return folder

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> IdentityGenerator:
        """Load a folder written by :meth:`save_pretrained` (no Ray, no DeepSpeed), in eval mode."""
        from diffusers import UNet2DConditionModel

        folder = Path(folder)
        config = load_generator_config(folder)
        if not (folder / UNET_DIR / "config.json").is_file():
            raise FileNotFoundError(f"{folder} has no {UNET_DIR}/config.json: the diffusers UNet of the export "
                                    f"({UNET_DIR}/) is missing or incomplete: {FIX_GENERATOR}")
        try:
            unet = UNet2DConditionModel.from_pretrained(folder / UNET_DIR, low_cpu_mem_usage=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{folder / UNET_DIR} is not a readable UNet ({str(exc).strip().rstrip('.')}): "
                             f"{FIX_GENERATOR}") from None
        model = cls(config, unet=unet)
        state = load_safetensors(folder / CONDITION_DIR / CONDITION_WEIGHTS, FIX_GENERATOR)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("unet.")]
        if missing or unexpected:
            raise ValueError(
                f"{folder / CONDITION_DIR / CONDITION_WEIGHTS} does not match {CONFIG_FILE}: "
                f"missing {missing}, unexpected {unexpected}"
            )
        return model.to(device=device, dtype=dtype).eval()


def load_generator_config(folder: str | Path) -> GeneratorConfig:
    """The :class:`GeneratorConfig` saved in ``folder/condition/generator_config.json``."""
    path = Path(folder) / CONDITION_DIR / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: is {folder} a folder written by IdentityGenerator.save_pretrained?"
        )
    return from_dict(GeneratorConfig, json.loads(path.read_text(encoding="utf-8")), _P)


def load_metadata(folder: str | Path) -> dict[str, Any] | None:
    """The ``extra_metadata`` saved beside the weights, or None."""
    path = Path(folder) / CONDITION_DIR / METADATA_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _registered(name: Any) -> bool:
    from synthface_ray.models.objectives import OBJECTIVES  # lazy: imports diffusers

    return isinstance(name, str) and name in OBJECTIVES


def diffusers_scheduler(objective: dict[str, Any]):
    """The diffusers scheduler that reproduces the project's default sampler (DDIM eta 0 = Euler
    on the VE ODE, the parameterisation's default spacing) for an export's ``objective`` metadata
    (``{"name": ..., **settings}``):

    * ``edm``: ``EDMEulerScheduler`` with the objective's ``sigma_data``, its sampling range
      ``sigma_min``/``sigma_max`` (0.002/80), the Karras schedule with rho 7 and a final sigma of
      0; diffusers' ``prediction_type="epsilon"`` is EDM's ``F_theta`` (``c_out = sigma
      sigma_data / sqrt(sigma^2 + sigma_data^2)``, EDM Table 1).
    * ``ddpm_eps``: ``EulerDiscreteScheduler`` (epsilon, the objective's linear betas, trailing
      timesteps, final sigma 0): Euler in sigma space, which is DDIM with eta 0 on the same
      timesteps (k-diffusion's ``DiscreteEpsDDPMDenoiser``).

    Raises ``ValueError`` naming the objective when it has no diffusers counterpart."""
    from synthface_ray.models.objectives import (  # lazy: imports diffusers
        EDM,
        DDPMEps,
        make_objective,
    )

    settings = dict(objective)
    name = settings.pop("name", None)
    if not _registered(name):
        raise ValueError(f"objective {name!r} is not a registered objective, so the export gets no diffusers "
                         "scheduler: expected the objective metadata of synthface train-generator")
    model = make_objective(name, **settings)
    if isinstance(model, EDM):
        from diffusers import EDMEulerScheduler

        lo, hi = model.sigma_range()
        return EDMEulerScheduler(sigma_min=lo, sigma_max=hi, sigma_data=model.sigma_data, sigma_schedule="karras",
                                 num_train_timesteps=1000, prediction_type="epsilon", rho=7.0,
                                 final_sigmas_type="zero")
    if isinstance(model, DDPMEps):
        from diffusers import EulerDiscreteScheduler

        cfg = model.scheduler.config
        return EulerDiscreteScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_start=cfg.beta_start,
                                      beta_end=cfg.beta_end, beta_schedule=cfg.beta_schedule,
                                      prediction_type="epsilon", timestep_spacing="trailing",
                                      final_sigmas_type="zero")
    raise ValueError(f"objective {name!r} has no diffusers scheduler here: diffusers' Euler schedulers express EDM "
                     "preconditioning and DDPM epsilon prediction only")


def write_diffusers_files(folder: str | Path, objective: dict[str, Any], latent: bool | None = None) -> Path:
    """Make an export folder a diffusers pipeline: ``scheduler/scheduler_config.json``
    (:func:`diffusers_scheduler`), ``model_index.json`` and the pipeline code
    (``synthface_pipeline.py``, ``condition/synthface_condition.py``: copies of
    :mod:`synthface_ray.models.diffusers_pipeline`). ``latent``: the model samples VAE latents,
    and the pipeline loads ``vae/`` (written by the training code); None reads it from the saved
    config (``vae_path``). Also upgrades an older export in place:
    ``write_diffusers_files(folder, load_metadata(folder)["objective"])``."""
    import diffusers

    from synthface_ray.models import diffusers_pipeline as template  # lazy: imports diffusers

    folder = Path(folder)
    if not (folder / UNET_DIR).is_dir() or not (folder / CONDITION_DIR).is_dir():
        raise FileNotFoundError(f"{folder} has no {UNET_DIR}/ and {CONDITION_DIR}/: not a generator export")
    scheduler = diffusers_scheduler(objective)
    if latent is None:
        latent = load_generator_config(folder).vae_path is not None
    scheduler.save_pretrained(folder / SCHEDULER_DIR)
    source = Path(template.__file__).read_text(encoding="utf-8")
    for path in (folder / PIPELINE_FILE, folder / CONDITION_DIR / CONDITION_MODULE):
        storage.atomic_write_text(storage.resolve(path), source)
    index = {
        "_class_name": [PIPELINE_FILE.removesuffix(".py"), template.SynthFacePipeline.__name__],
        "_diffusers_version": diffusers.__version__,
        "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", type(scheduler).__name__],
        "condition": [CONDITION_MODULE.removesuffix(".py"), template.IdentityCondition.__name__],
        "vae": ["diffusers", "AutoencoderKL"] if latent else [None, None],
    }
    _write_json(folder / MODEL_INDEX, index)
    return folder


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _zero_linear(n_in: int, n_out: int) -> nn.Linear:
    """A Linear layer with zero weight and bias: a no-op at init (ScoreAug omega projection)."""
    layer = nn.Linear(n_in, n_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


__all__ = [
    "ConditionEncoder",
    "GeneratorConfig",
    "IdentityGenerator",
    "build_unet",
    "count_parameters",
    "diffusers_scheduler",
    "load_generator_config",
    "load_metadata",
    "write_diffusers_files",
]
