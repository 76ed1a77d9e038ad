"""FR training: the config and the per-worker session (setup, step, checkpoint, export).

Backbone (IResNet) and margin head train together as one module under a DeepSpeed engine, with
the seeds' FR optimiser (SGD, momentum 0.9, weight decay 5e-4, step LR) or AdamW. The Ray edge is
:mod:`synthface_ray.train.fr_job`; like
:class:`~synthface_ray.train.generator.GeneratorSession`, :class:`FRSession` runs in any process
with a ``torch.distributed`` group (tests use world size 1).

Labels: each data source's identities are numbered densely into one class space (source 0's
first, then source 1's, ...), so real and synthetic sets with overlapping label ids stay distinct
classes; the export's ``classes.parquet`` maps every class back to its source and label.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from synthface_ray import storage
from synthface_ray.config import ConfigError, check_choice, check_range
from synthface_ray.data.augment import AugmentConfig, augment
from synthface_ray.data.transforms import pixels_to_model
from synthface_ray.models.recognition.embedder import CONFIG as BACKBONE_CONFIG
from synthface_ray.models.recognition.embedder import save_backbone
from synthface_ray.models.recognition.interop import write_interop
from synthface_ray.models.recognition.iresnet import BackboneConfig, build_backbone
from synthface_ray.models.recognition.margins import MarginConfig, MarginHead, build_margin
from synthface_ray.storage import StorageConfig
from synthface_ray.train import checkpoint
from synthface_ray.train.deepspeed import DeepSpeedConfig, ds_config
from synthface_ray.train.sections import (
    ExportSection,
    FeedSection,
    JobConfig,
    RunSection,
    ScalingSection,
    absolute,
)

CENTERS_FILE, CLASSES_FILE = "centers.pt", "classes.parquet"


@dataclass
class SourceSection:
    """One faces dataset (local or s3://) and its share of every batch (weights are normalised)."""

    path: str = ""
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("data.sources[].path is empty: give a faces dataset (local or s3://)")
        if not self.weight > 0:
            raise ConfigError(f"data.sources[].weight={self.weight} for {self.path} must be > 0 "
                              "(remove the source to leave it out)")


SAME_IDENTITY_ACTIONS = ("warn", "merge", "error")


@dataclass
class SameIdentitySection:
    """One person under two classes (e.g. a synthetic identity copying a real one), checked
    before training (:mod:`synthface_ray.train.same_identity`): ``fr_model``, an exported FR
    backbone, judges (null = no check); the class centre of up to ``images_per_identity`` images
    of each training identity; a class of a later source whose centre has cosine > ``threshold``
    to an earlier source's class is that person. ``action``: ``warn`` (print them, train as
    numbered), ``merge`` (train each as its match's class) or ``error`` (refuse to train)."""

    fr_model: str | None = None
    threshold: float = 0.8
    action: str = "warn"
    images_per_identity: int = 8

    def __post_init__(self) -> None:
        check_choice("data.same_identity.action", self.action, SAME_IDENTITY_ACTIONS)
        check_range("data.same_identity.images_per_identity", self.images_per_identity, 1)
        if not -1.0 < self.threshold < 1.0:
            raise ConfigError(f"data.same_identity.threshold={self.threshold} must be a cosine in the "
                              "open interval (-1, 1), e.g. 0.8")


@dataclass
class FRDataSection(FeedSection):
    """``path``: one faces dataset; or ``sources``: several (e.g. real + synthetic), each with a
    sampling ``weight``: every micro-batch takes ``round(weight x micro_batch)`` rows from each
    (largest remainder). ``same_identity``: check (and merge) one person in two sources. Feed
    options as :class:`FeedSection`."""

    path: str | None = None
    sources: list[SourceSection] = field(default_factory=list)
    same_identity: SameIdentitySection = field(default_factory=SameIdentitySection)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.path and self.sources:
            raise ConfigError("give data.path (one dataset) or data.sources (several), not both")

    def source_list(self) -> list[SourceSection]:
        if not self.path and not self.sources:
            raise ConfigError("no training data: set data.path (--data) or data.sources")
        return [SourceSection(self.path)] if self.path else list(self.sources)


@dataclass
class HoldoutSection:
    """``identities`` of source ``source`` never seen in training: after training, verification
    (``folds``-fold accuracy, EER, TAR@FAR) on ``genuine`` + ``impostor`` pairs of their images.
    Chosen at random with ``run.seed``; 0 = no held-out split."""

    identities: int = 0
    source: int = 0
    genuine: int = 3000
    impostor: int = 3000
    folds: int = 10

    def __post_init__(self) -> None:
        check_range("holdout.identities", self.identities, 0)
        if self.identities == 1:
            raise ConfigError("holdout.identities=1: verification needs at least 2 held-out "
                              "identities (or 0 for no held-out split)")
        check_range("holdout.source", self.source, 0)
        check_range("holdout.genuine", self.genuine, 1)
        check_range("holdout.impostor", self.impostor, 1)
        check_range("holdout.folds", self.folds, 2)


@dataclass
class FROptimSection:
    """``sgd`` (momentum 0.9, weight decay 5e-4, LR x ``gamma`` at each of ``milestones``) or
    ``adamw``; ``micro_batch`` images per worker per micro-batch, ``grad_accum`` micro-batches
    per step."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    micro_batch: int = 128
    grad_accum: int = 1
    max_steps: int = 1000

    def __post_init__(self) -> None:
        self.milestones = tuple(self.milestones)
        check_choice("optim.name", self.name, FR_OPTIMIZERS)
        check_range("optim.lr", self.lr, 0.0)
        check_range("optim.momentum", self.momentum, 0.0, 1.0)
        check_range("optim.weight_decay", self.weight_decay, 0.0)
        check_range("optim.gamma", self.gamma, 0.0, 1.0)
        check_range("optim.micro_batch", self.micro_batch, 1)
        check_range("optim.grad_accum", self.grad_accum, 1)
        check_range("optim.max_steps", self.max_steps, 1)


@dataclass
class FRExportSection(ExportSection):
    """``onnx``: also write ``model.onnx`` (checked against torch with onnxruntime; needs the
    ``synthface-ray[onnx]`` extra, else a warning): 3-10 s for the ToyFaces backbones, about a
    minute for iresnet50 at 112 px on 2 CPUs. ``backbone.insightface.pth`` is always written.
    ``synthface export --format onnx --from FR_EXPORT`` adds it later."""

    onnx: bool = True


@dataclass
class TrainFRConfig(JobConfig):
    """``num_classes``: null = the number of training identities in the data (checked if set)."""

    data: FRDataSection = field(default_factory=FRDataSection)
    holdout: HoldoutSection = field(default_factory=HoldoutSection)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    margin: MarginConfig = field(default_factory=MarginConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: FROptimSection = field(default_factory=FROptimSection)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    run: RunSection = field(default_factory=lambda: RunSection(name="fr"))
    export: FRExportSection = field(default_factory=FRExportSection)
    storage: StorageConfig = field(default_factory=StorageConfig)
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if self.num_classes is not None:
            check_range("num_classes", self.num_classes, 2)
        n = len(self.data.sources) or 1
        if self.holdout.identities and self.holdout.source >= n:
            raise ConfigError(f"holdout.source={self.holdout.source} but there are {n} data "
                              f"source(s): give an index in 0..{n - 1}")

    def with_absolute_paths(self) -> TrainFRConfig:
        """A copy whose local paths are absolute: workers run in another working directory."""
        same = dataclasses.replace(self.data.same_identity, fr_model=absolute(self.data.same_identity.fr_model))
        data = dataclasses.replace(
            self.data, path=absolute(self.data.path), same_identity=same,
            sources=[dataclasses.replace(x, path=absolute(x.path)) for x in self.data.sources])
        return self._with_absolute_run_paths(data=data)


def _sgd(params, o: FROptimSection) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def _adamw(params, o: FROptimSection) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


#: optimiser name -> factory (params, optim section)
FR_OPTIMIZERS = {"sgd": _sgd, "adamw": _adamw}


class FRModel(nn.Module):
    """Backbone + margin head: ``forward(images, labels) -> loss`` (one module for DeepSpeed)."""

    def __init__(self, cfg: TrainFRConfig, num_classes: int) -> None:
        super().__init__()
        self.backbone = build_backbone(cfg.backbone)
        self.head = MarginHead(num_classes, cfg.backbone.embedding_dim, build_margin(cfg.margin))

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images), labels)


def initial_backbone(cfg: TrainFRConfig) -> nn.Module:
    """The backbone every FR run with ``cfg.run.seed`` starts from (:class:`FRSession` seeds
    torch the same way and :class:`FRModel` builds its backbone first): the untrained floor of
    ``synthface benchmark`` (its ``random_init`` arm), in eval mode."""
    torch.manual_seed(cfg.run.seed)
    return build_backbone(cfg.backbone).eval()


class FRSession:
    """One worker's FR model, DeepSpeed engine, step-LR schedule and augmentation RNG.

    ``num_classes`` defaults to ``cfg.num_classes`` (the Ray job passes the count it found in
    the data)."""

    def __init__(self, cfg: TrainFRConfig, rank: int, world: int, device: torch.device,
                 precision: str, num_classes: int | None = None) -> None:
        import deepspeed

        num_classes = num_classes or cfg.num_classes
        if num_classes is None:
            raise ValueError("FRSession needs num_classes (cfg.num_classes is null)")
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        self.num_classes = num_classes
        torch.manual_seed(cfg.run.seed)  # same initial weights on every rank
        model = FRModel(cfg, num_classes).to(device)
        o = cfg.optim
        opt = FR_OPTIMIZERS[o.name]([p for p in model.parameters() if p.requires_grad], o)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(o.milestones), o.gamma)
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, optimizer=opt, lr_scheduler=sched,
            config=ds_config(cfg.deepspeed, o.micro_batch, o.grad_accum, world, precision),
            dist_init_required=False,
        )
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
        self.rng = torch.Generator(device=device).manual_seed(self._seed())
        self.step = 0

    def _seed(self) -> int:
        return self.cfg.run.seed * 1_000_003 + self.rank

    def train_step(self, micro_batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """One optimizer (and LR) step over ``grad_accum`` micro-batches of uint8 images and
        class labels: augment, forward, backward. Returns the mean loss (detached)."""
        if len(micro_batches) != self.cfg.optim.grad_accum:
            raise ValueError(f"expected {self.cfg.optim.grad_accum} micro-batches, got {len(micro_batches)}")
        total = torch.zeros((), device=self.device)
        for batch in micro_batches:
            x = pixels_to_model(batch["image"].to(self.device, non_blocking=True))
            x = augment(x, self.cfg.augment, self.rng).to(self.dtype)
            loss = self.engine(x, batch["label"].to(self.device).long())
            self.engine.backward(loss)
            self.engine.step()
            total += loss.detach().float()
        self.step += 1
        return total / len(micro_batches)

    def save(self, directory: str | Path) -> None:
        """Write this rank's share of a checkpoint into ``directory`` (all ranks must call)."""
        state = {"step": self.step, "world_size": self.world, "seed": self.cfg.run.seed,
                 "num_classes": self.num_classes}
        checkpoint.save(directory, self.engine, self.rank, self.rng, state)

    def load(self, directory: str | Path) -> None:
        """Restore weights, optimizer, LR schedule, step and this rank's RNG streams."""
        state = checkpoint.load(directory, self.engine, self.rank, self.rng, self._seed())
        if state.get("num_classes", self.num_classes) != self.num_classes:
            raise ValueError(
                f"the checkpoint in {directory} has {state['num_classes']} classes but this run has "
                f"{self.num_classes}: the data changed; use a new run.name to start afresh")
        self.step = int(state["step"])

    def trained(self) -> tuple[nn.Module, torch.Tensor]:
        """A fresh fp32 copy of the trained backbone (eval mode) and the unit class centres
        (gathered under ZeRO-3)."""
        module: FRModel = self.engine.module
        backbone = build_backbone(self.cfg.backbone)
        with _gathered(module, self.cfg.deepspeed.zero_stage):
            backbone.load_state_dict({k: v.float() for k, v in module.backbone.state_dict().items()})
            centers = module.head.centers().cpu()
        return backbone.eval(), centers

    def export(self, destination: storage.Location, classes=None) -> storage.Location:
        """Backbone weights + config (loadable by :class:`~synthface_ray.models.recognition.
        embedder.Embedder`), the unit class centres as ``centers.pt``, when given the ``classes``
        table (class -> source, label) as ``classes.parquet``, and the backbone for insightface
        tooling (:func:`~synthface_ray.models.recognition.interop.write_interop`:
        ``backbone.insightface.pth``, ``model.onnx`` with ``export.onnx`` when the onnx extra is
        installed, ``interop.json``); published atomically."""
        import tempfile

        import pyarrow.parquet as pq

        backbone, centers = self.trained()
        with tempfile.TemporaryDirectory(prefix="synthface-fr-export-") as tmp:
            save_backbone(backbone, self.cfg.backbone, tmp)
            onnx = write_interop(tmp, backbone, self.cfg.backbone, onnx=None if self.cfg.export.onnx else False)["onnx"]
            if onnx and "check" in onnx:
                print(f"ONNX backbone checked with onnxruntime: max abs diff "
                      f"{onnx['check']['max_abs_diff']:.2g} vs torch", flush=True)
            torch.save(centers, Path(tmp) / CENTERS_FILE)
            if classes is not None:
                pq.write_table(classes, Path(tmp) / CLASSES_FILE)
            storage.publish_dir(tmp, destination, marker=BACKBONE_CONFIG)
        return destination


def _gathered(module: nn.Module, zero_stage: int):
    """Context in which ZeRO-3 partitioned parameters are whole (a no-op below stage 3)."""
    import contextlib

    if zero_stage != 3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(module.parameters()))


__all__ = [
    "FRDataSection", "FRModel", "FROptimSection", "FRSession", "FR_OPTIMIZERS", "HoldoutSection",
    "SourceSection", "TrainFRConfig", "initial_backbone",
]
