"""A diffusers pipeline for synthface-ray generator exports: identities in, face images out.

Every export of ``synthface train-generator`` carries a verbatim copy of this file as
``synthface_pipeline.py`` (the pipeline class named by ``model_index.json``) and as
``condition/synthface_condition.py`` (the identity-condition component), beside ``unet/``,
``scheduler/`` and ``condition/``. The export then samples with diffusers alone, where
synthface-ray is not installed::

    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained("export", trust_remote_code=True)
    seeds = [7, 8, 9]
    out = pipe([0, 1, 2], generator=[torch.Generator().manual_seed(s) for s in seeds])
    out.images  # three PIL images of identities 0, 1 and 2

``trust_remote_code=True`` is diffusers' consent to run the two ``.py`` files of the folder (they
are local; nothing is downloaded). With the shipped scheduler (``EDMEulerScheduler`` for EDM
models, ``EulerDiscreteScheduler`` with trailing spacing for DDPM epsilon models), 50 steps and
``guidance_scale=1`` this is the project's default sampler (``sampler`` section defaults: plain
conditional, DDIM eta 0 = Euler, 50 steps); one ``torch.Generator`` per image seeded with the
row's seed draws the same starting noise as the project's sampler.

This file is the package's single source of truth for the pipeline (the export writer copies it);
it must import only the standard library, torch, diffusers and safetensors, never synthface_ray.
"""

from __future__ import annotations

import json
import math
import os

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

#: the files this component reads, as ``IdentityGenerator.save_pretrained`` writes them
CONDITION_WEIGHTS, GENERATOR_CONFIG = "condition.safetensors", "generator_config.json"


class IdentityCondition(nn.Module):
    """The generator's identity conditioning, rebuilt from ``condition/`` of an export:

    * ``class`` models: a table of ``num_identities`` rows, one per identity id;
    * ``embedding`` models: ``Linear(embedding_dim -> tokens * dim)`` (then ``LayerNorm`` over
      each token when ``embedding_layernorm``) applied to a unit face-recognition embedding;
    * the learnable empty context (the unconditional branch of classifier-free guidance);
    * the vector the UNet takes as ``class_labels`` when the model has CASD source labels or a
      ScoreAug omega projection: ``source_embedding[source] + omega_proj.bias`` (omega = 0,
      no augmentation at sampling).

    Parameter names match ``condition.safetensors``, so the file loads strictly.
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.generator_config = dict(config)
        self.kind = config["condition"]
        self.tokens, self.dim = int(config["context_tokens"]), int(config["context_dim"])
        width = self.tokens * self.dim
        self.encoder = nn.Module()
        if self.kind == "class":
            self.encoder.table = nn.Embedding(int(config["num_identities"]), width)
        elif self.kind == "embedding":
            self.encoder.proj = nn.Linear(int(config["embedding_dim"]), width)
            self.encoder.norm = nn.LayerNorm(self.dim) if config.get("embedding_layernorm", True) else None
        else:
            raise ValueError(f"unknown condition kind {self.kind!r} in {GENERATOR_CONFIG}: expected 'class' or "
                             "'embedding'")
        self.empty_context = nn.Parameter(torch.zeros(self.tokens, self.dim))
        time_dim = 4 * int(config["block_out_channels"][0])  # diffusers' time embedding width
        sources, omega = int(config.get("num_sources", 0)), int(config.get("scoreaug_dim", 0))
        self.source_embedding = nn.Embedding(sources + 1, time_dim) if sources else None
        self.omega_proj = nn.Linear(omega, time_dim) if omega else None

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, torch_dtype: torch.dtype | None = None,
                        **_: object) -> IdentityCondition:
        """Load ``generator_config.json`` and ``condition.safetensors`` from ``folder`` (the
        export's ``condition/``); diffusers calls this when it loads the pipeline."""
        from safetensors.torch import load_file

        config_path = os.path.join(folder, GENERATOR_CONFIG)
        weights_path = os.path.join(folder, CONDITION_WEIGHTS)
        for path in (config_path, weights_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} not found: {folder} is not the condition/ folder of a "
                                        "synthface-ray generator export")
        with open(config_path, encoding="utf-8") as f:
            model = cls(json.load(f))
        model.load_state_dict(load_file(weights_path), strict=True)
        return model.to(dtype=torch_dtype).eval() if torch_dtype is not None else model.eval()

    @property
    def device(self) -> torch.device:  # diffusers reads .device and .dtype of every component
        return self.empty_context.device

    @property
    def dtype(self) -> torch.dtype:
        return self.empty_context.dtype

    @torch.no_grad()
    def contexts(self, identities: torch.Tensor) -> torch.Tensor:
        """Cross-attention contexts (B, tokens, dim) of class ids (B,) or embeddings (B, D)."""
        if self.kind == "class":
            n = self.encoder.table.num_embeddings
            if identities.dim() != 1 or identities.is_floating_point():
                raise ValueError(f"this is a class-conditioned generator: give identity ids, a 1-D integer "
                                 f"list or tensor in [0, {n}), got shape {tuple(identities.shape)} "
                                 f"dtype {identities.dtype}")
            bad = identities[(identities < 0) | (identities >= n)]
            if bad.numel():
                raise ValueError(f"identity id {int(bad[0])} is out of range: ids must be in [0, {n})")
            flat = self.encoder.table(identities.to(self.encoder.table.weight.device))
            return flat.view(-1, self.tokens, self.dim)
        width = self.encoder.proj.in_features
        if identities.dim() != 2 or identities.shape[1] != width or not identities.is_floating_point():
            raise ValueError(f"this is an embedding-conditioned generator: give face-recognition embeddings "
                             f"as a float tensor of shape (B, {width}), got shape {tuple(identities.shape)} "
                             f"dtype {identities.dtype}")
        weight = self.encoder.proj.weight
        flat = self.encoder.proj(identities.to(device=weight.device, dtype=weight.dtype))
        ctx = flat.view(-1, self.tokens, self.dim)
        return self.encoder.norm(ctx) if self.encoder.norm is not None else ctx

    def empty(self, batch: int) -> torch.Tensor:
        """The empty context repeated for ``batch`` rows: (batch, tokens, dim)."""
        return self.empty_context.detach().unsqueeze(0).expand(batch, -1, -1)

    @torch.no_grad()
    def class_labels(self, batch: int, source: int = 0) -> torch.Tensor | None:
        """The UNet's ``class_labels`` (batch, time_dim): the CASD source label's embedding (0 =
        real) plus the ScoreAug omega projection at omega = 0; None when the model has neither."""
        if self.source_embedding is None and source:
            raise ValueError(f"source={source} was given but this generator has no source labels "
                             "(num_sources=0): leave source at 0")
        if self.source_embedding is None and self.omega_proj is None:
            return None
        ref = self.empty_context
        out = torch.zeros(batch, self.omega_proj.out_features if self.omega_proj is not None
                          else self.source_embedding.embedding_dim, device=ref.device, dtype=ref.dtype)
        if self.source_embedding is not None:
            k = self.source_embedding.num_embeddings - 1
            if not 0 <= source <= k:
                raise ValueError(f"source label {source} is out of range: labels are 0 (real) .. {k}")
            out = out + self.source_embedding.weight[source]
        if self.omega_proj is not None:
            out = out + self.omega_proj.bias
        return out


def initial_sigma(scheduler) -> float:
    """The standard deviation of the prior the project's sampler starts from, for a scheduler
    after ``set_timesteps``: EDM schedulers (``x = x_0 + sigma n``) start at ``sigma_max`` itself;
    discrete schedulers in sigma space (Euler, Heun, LMS: ``init_noise_sigma`` above 1) at
    ``sqrt(sigma_max^2 + 1)``; any other (DDIM, DPM-Solver: ``x_T ~ N(0, I)``) at its own
    ``init_noise_sigma``. diffusers' ``init_noise_sigma`` is ``sqrt(sigma_max^2 + 1)`` for
    ``EDMEulerScheduler`` and ``sigma_max`` for trailing/linspace ``EulerDiscreteScheduler``:
    both a relative 1e-4 or less from the prior the models are sampled with here."""
    init = float(scheduler.init_noise_sigma)
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is None or init <= 1.0:
        return init
    top = float(sigmas[0])
    return top if hasattr(scheduler, "precondition_inputs") else math.sqrt(top * top + 1.0)


class SynthFacePipeline(DiffusionPipeline):
    """Identity-conditioned face images from a synthface-ray generator export.

    Components: ``unet`` (diffusers ``UNet2DConditionModel``), ``scheduler`` (any diffusers
    scheduler; the export ships the one matching the project's default sampler), ``condition``
    (:class:`IdentityCondition`) and, for latent-space models, ``vae`` (``AutoencoderKL``).
    """

    model_cpu_offload_seq = "condition->unet->vae"
    _optional_components = ["vae"]

    # condition: not annotated as IdentityCondition, which diffusers loads from a second copy of
    # this file (condition/synthface_condition.py), a class of the same name from another module
    def __init__(self, unet, scheduler, condition: nn.Module, vae=None) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, condition=condition, vae=vae)
        factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        self.image_processor = VaeImageProcessor(vae_scale_factor=factor)

    @torch.no_grad()
    def __call__(self, identities, num_inference_steps: int = 50, guidance_scale: float = 1.0,
                 source: int = 0, generator: torch.Generator | list[torch.Generator] | None = None,
                 latents: torch.Tensor | None = None, output_type: str = "pil",
                 return_dict: bool = True):
        """One image per identity.

        ``identities``: class ids (list or 1-D integer tensor) for class-conditioned models, or
        face-recognition embeddings (float, (B, embedding_dim)) for embedding-conditioned ones.
        ``guidance_scale`` g: ``out = out(c_e) + g (out(c) - out(c_e))`` with the learnable
        empty context c_e; 1 = plain conditional (the project's ``cfg_scale`` w is g - 1).
        ``source``: CASD source label (0 = real) for models trained with source labels.
        ``generator``: one per image (seeded with the project's row seeds) reproduces the
        project's starting noise; ``latents``: that unit-variance noise, (B, C, H, W).
        ``output_type``: ``pil``, ``np``, ``pt`` (images in [0, 1]) or ``latent`` (the sampler's
        raw output: the model's [-1, 1] pixel range, or VAE latents for latent models).
        """
        cond = torch.as_tensor(identities)
        device, dtype = self._execution_device, self.unet.dtype
        context = self.condition.contexts(cond).to(device=device, dtype=dtype)
        batch = context.shape[0]
        labels = self.condition.class_labels(batch, source)
        guided = guidance_scale != 1.0
        if guided:
            context = torch.cat([context, self.condition.empty(batch).to(device=device, dtype=dtype)])
            labels = None if labels is None else torch.cat([labels, labels])
        if labels is not None:
            labels = labels.to(device=device, dtype=dtype)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        size = self.unet.config.sample_size
        shape = (batch, self.unet.config.in_channels, size, size)
        if latents is None:  # drawn on the generators' device (CPU ones: then moved), as the project does
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        x = (latents.to(device=device, dtype=torch.float32) * initial_sigma(self.scheduler)).to(dtype)

        for t in self.progress_bar(self.scheduler.timesteps):
            x_in = self.scheduler.scale_model_input(torch.cat([x, x]) if guided else x, t)
            out = self.unet(x_in, t, encoder_hidden_states=context, class_labels=labels).sample
            if guided:
                out_c, out_e = out.chunk(2)
                out = out_e + guidance_scale * (out_c - out_e)
            x = self.scheduler.step(out, t, x).prev_sample

        if output_type == "latent":
            images = x
        else:
            if self.vae is not None:
                x = self.vae.decode(x.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
            images = self.image_processor.postprocess(x.float(), output_type=output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)


__all__ = ["CONDITION_WEIGHTS", "GENERATOR_CONFIG", "IdentityCondition", "SynthFacePipeline", "initial_sigma"]
