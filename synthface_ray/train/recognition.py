"""FR training: the config and the per-worker session (setup, step, checkpoint, export).

Backbone (IResNet) and margin head train together as one module under a DeepSpeed engine, with
the seeds' FR optimiser (SGD, momentum 0.9, weight decay 5e-4, step LR) or AdamW. The Ray Train
edge (``train-fr``) is not written yet; like :class:`~synthface_ray.train.generator.GeneratorSession`
this session runs in any process with a ``torch.distributed`` group (tests use world size 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from synthface_ray.config import check_choice, check_range
from synthface_ray.data.augment import AugmentConfig, augment
from synthface_ray.data.transforms import pixels_to_model
from synthface_ray.models.recognition.embedder import save_backbone
from synthface_ray.models.recognition.iresnet import BackboneConfig, build_backbone
from synthface_ray.models.recognition.margins import MarginConfig, MarginHead, build_margin
from synthface_ray.train.deepspeed import DeepSpeedConfig, ds_config

DS_TAG, STATE_FILE = "deepspeed", "trainer_state.json"


@dataclass
class FROptimSection:
    """``sgd`` (momentum 0.9, weight decay 5e-4, LR x ``gamma`` at each of ``milestones``) or
    ``adamw``; ``micro_batch`` images per worker per step."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    micro_batch: int = 128
    max_steps: int = 1000

    def __post_init__(self) -> None:
        self.milestones = tuple(self.milestones)
        check_choice("optim.name", self.name, FR_OPTIMIZERS)
        check_range("optim.lr", self.lr, 0.0)
        check_range("optim.momentum", self.momentum, 0.0, 1.0)
        check_range("optim.weight_decay", self.weight_decay, 0.0)
        check_range("optim.gamma", self.gamma, 0.0, 1.0)
        check_range("optim.micro_batch", self.micro_batch, 1)
        check_range("optim.max_steps", self.max_steps, 1)


@dataclass
class TrainFRConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    margin: MarginConfig = field(default_factory=MarginConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: FROptimSection = field(default_factory=FROptimSection)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    num_classes: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        check_range("num_classes", self.num_classes, 2)


def _sgd(params, o: FROptimSection) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def _adamw(params, o: FROptimSection) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


#: optimiser name -> factory (params, optim section)
FR_OPTIMIZERS = {"sgd": _sgd, "adamw": _adamw}


class FRModel(nn.Module):
    """Backbone + margin head: ``forward(images, labels) -> loss`` (one module for DeepSpeed)."""

    def __init__(self, cfg: TrainFRConfig) -> None:
        super().__init__()
        self.backbone = build_backbone(cfg.backbone)
        self.head = MarginHead(cfg.num_classes, cfg.backbone.embedding_dim, build_margin(cfg.margin))

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images), labels)


class FRSession:
    """One worker's FR model, DeepSpeed engine, step-LR schedule and augmentation RNG."""

    def __init__(self, cfg: TrainFRConfig, rank: int, world: int, device: torch.device,
                 precision: str) -> None:
        import deepspeed

        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        torch.manual_seed(cfg.seed)
        model = FRModel(cfg).to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = FR_OPTIMIZERS[cfg.optim.name](params, cfg.optim)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.optim.milestones), cfg.optim.gamma)
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, optimizer=opt, lr_scheduler=sched,
            config=ds_config(cfg.deepspeed, cfg.optim.micro_batch, 1, world, precision),
            dist_init_required=False,
        )
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
        self.rng = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + rank)
        self.step = 0

    def train_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Augment, forward, backward, optimiser + LR step; returns the loss (detached)."""
        x = pixels_to_model(batch["image"].to(self.device))
        x = augment(x, self.cfg.augment, self.rng).to(self.dtype)
        loss = self.engine(x, batch["label"].to(self.device).long())
        self.engine.backward(loss)
        self.engine.step()
        self.step += 1
        return loss.detach().float()

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.engine.save_checkpoint(str(directory), tag=DS_TAG)
        torch.save({"rng": self.rng.get_state()}, directory / f"rng_rank{self.rank}.pt")
        if self.rank == 0:
            (directory / STATE_FILE).write_text(json.dumps({"step": self.step}) + "\n", encoding="utf-8")

    def load(self, directory: str | Path) -> None:
        directory = Path(directory)
        path, _ = self.engine.load_checkpoint(str(directory), tag=DS_TAG)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint '{DS_TAG}' in {directory}")
        self.step = int(json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))["step"])
        rng_file = directory / f"rng_rank{self.rank}.pt"
        if rng_file.is_file():
            self.rng.set_state(torch.load(rng_file, weights_only=True)["rng"])

    def export(self, folder: str | Path) -> Path:
        """Backbone weights + config (loadable by :class:`~synthface_ray.models.recognition.
        embedder.Embedder`) and the unit class centres as ``centers.pt``."""
        module: FRModel = self.engine.module
        backbone = build_backbone(self.cfg.backbone)
        backbone.load_state_dict({k: v.float() for k, v in module.backbone.state_dict().items()})
        out = save_backbone(backbone, self.cfg.backbone, folder)
        torch.save(module.head.centers().cpu(), Path(out) / "centers.pt")
        return out


__all__ = ["FRModel", "FROptimSection", "FRSession", "FR_OPTIMIZERS", "TrainFRConfig"]
