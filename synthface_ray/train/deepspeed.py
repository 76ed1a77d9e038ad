"""DeepSpeed engine configuration shared by the generator and FR training loops.

Only the pieces that do not depend on a model: a typed config section, the JSON config
DeepSpeed takes, precision resolution per device, and the distributed init with the platform
traps handled (see shared/PLATFORM_NOTES.md):

* ``deepspeed.init_distributed`` compiles a C++ shared-memory comm op on CPU the first time it
  runs in a process (~60 s, in every fresh Ray worker). Plain gloo is no slower at our sizes, so
  :func:`disable_shm_comm_build` swaps the builder for a no-op unless ``shm_comm`` is asked for.
* An optimizer declared in the DeepSpeed config compiles ``fused_adam``; the loops pass a client
  ``torch.optim.AdamW`` instead, which needs ``zero_allow_untested_optimizer``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

import torch

from synthface_ray.config import ConfigError, check_choice, check_range
from synthface_ray.models.device import PRECISION_CHOICES as PRECISIONS
from synthface_ray.models.device import pick_dtype


@dataclass
class DeepSpeedConfig:
    """The ``deepspeed`` section of a training config."""

    zero_stage: int = 2  # 0 (plain DDP) .. 3 (parameters partitioned too)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on capable GPUs, else fp32
    gradient_clipping: float = 1.0
    offload_optimizer: bool = False  # ZeRO-Offload of optimizer state to CPU (stages 1-3)
    shm_comm: bool = False  # CPU only: build DeepSpeed's shared-memory comm op (~60 s per process)

    def __post_init__(self) -> None:
        check_range("deepspeed.zero_stage", self.zero_stage, 0, 3)
        check_choice("deepspeed.precision", self.precision, PRECISIONS)
        check_range("deepspeed.gradient_clipping", self.gradient_clipping, 0.0)
        if self.offload_optimizer and self.zero_stage == 0:
            raise ConfigError("deepspeed.offload_optimizer needs deepspeed.zero_stage >= 1")


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision to run, by :func:`synthface_ray.models.device.pick_dtype` (``auto``: bf16 on
    GPUs that support it, else fp32; fp16 refused on CPU, as DeepSpeed refuses it there)."""
    try:
        dtype = pick_dtype(device, precision)
    except ValueError as exc:
        raise ConfigError(f"deepspeed.{exc} (fp16 needs a CUDA device)") from None
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def ds_config(cfg: DeepSpeedConfig, micro_batch_per_gpu: int, grad_accum: int, world_size: int,
              precision: str) -> dict[str, Any]:
    """The DeepSpeed JSON config for one engine (client optimizer, no fused ops to compile)."""
    zero: dict[str, Any] = {"stage": cfg.zero_stage}
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    if cfg.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    out: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch_per_gpu,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch_per_gpu * grad_accum * world_size,
        "gradient_clipping": cfg.gradient_clipping,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,  # our loops report metrics themselves
        "wall_clock_breakdown": False,
    }
    if precision == "bf16":
        out["bf16"] = {"enabled": True}
    elif precision == "fp16":
        out["fp16"] = {"enabled": True, "initial_scale_power": 16}
    return out


def disable_shm_comm_build() -> None:
    """Make DeepSpeed's CPU comm backend skip compiling its shared-memory op (falls back to gloo).

    ``importlib`` is needed: ``import deepspeed.comm.torch as m`` binds the real ``torch``.
    """
    module = importlib.import_module("deepspeed.comm.torch")
    module.build_shm_op = lambda: None


def init_distributed(cfg: DeepSpeedConfig, backend: str) -> None:
    """``deepspeed.init_distributed`` on an already-initialised (e.g. Ray Train) process group."""
    import deepspeed

    if not cfg.shm_comm:
        disable_shm_comm_build()
    deepspeed.init_distributed(dist_backend=backend)
