"""FR training inside one process, without Ray Train: the same :class:`FRSession` (backbone,
margin head, optimizer, LR schedule, augmentation, DeepSpeed engine) at world size 1, fed from
pixels already in memory. For small jobs that run inside another Ray task, e.g. a
``synthface tune`` trial training an FR model on the images it just generated (no nested
cluster scheduling, no per-job worker start-up). Larger jobs use ``synthface train-fr``.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

from synthface_ray.train import deepspeed as ds
from synthface_ray.train.deepspeed import resolve_precision
from synthface_ray.train.recognition import FRSession, TrainFRConfig


def ensure_process_group(backend: str = "gloo") -> None:
    """A world-size-1 ``torch.distributed`` group in this process (a file store in a temporary
    folder: no port to collide with other trials on the node), plus DeepSpeed's view of it."""
    import torch.distributed as dist

    if not dist.is_initialized():
        for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}.items():
            os.environ.setdefault(key, value)
        store = os.path.join(tempfile.mkdtemp(prefix="synthface-pg-"), "store")
        dist.init_process_group(backend, init_method=f"file://{store}", rank=0, world_size=1)
    ds.init_distributed(ds.DeepSpeedConfig(), backend)


def class_ids(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels renumbered densely 0..C-1 (in sorted label order) and C."""
    unique, inverse = np.unique(np.asarray(labels), return_inverse=True)
    return inverse.astype(np.int64), len(unique)


def train_in_memory(cfg: TrainFRConfig, pixels: np.ndarray, labels: np.ndarray,
                    device: torch.device | str = "cpu") -> tuple[torch.nn.Module, float]:
    """Train ``cfg`` for ``optim.max_steps`` on uint8 NHWC ``pixels`` (at the backbone's input
    size) and their labels, micro-batches drawn without replacement epoch by epoch with
    ``run.seed``. Returns ``(trained backbone in eval mode, mean loss of the last 10 steps)``."""
    size = cfg.backbone.input_size
    if pixels.ndim != 4 or pixels.shape[1:3] != (size, size):
        raise ValueError(f"pixels must be (N, {size}, {size}, 3) uint8, got {pixels.shape}")
    targets, num_classes = class_ids(labels)
    if num_classes < 2:
        raise ValueError(f"FR training needs 2 or more identities, got {num_classes}")
    device = torch.device(device)
    ensure_process_group("nccl" if device.type == "cuda" else "gloo")
    session = FRSession(cfg, 0, 1, device, resolve_precision(cfg.deepspeed.precision, device),
                        num_classes=num_classes)
    rng, order, at = np.random.default_rng(cfg.run.seed), np.zeros(0, np.int64), 0
    images, classes = torch.from_numpy(np.ascontiguousarray(pixels)), torch.from_numpy(targets)
    batch, losses = min(cfg.optim.micro_batch, len(targets)), []
    while session.step < cfg.optim.max_steps:
        group = []
        for _ in range(cfg.optim.grad_accum):
            if at + batch > len(order):
                order, at = rng.permutation(len(targets)), 0
            rows = torch.from_numpy(order[at:at + batch])
            at += batch
            group.append({"image": images[rows], "label": classes[rows]})
        losses.append(float(session.train_step(group)))
    backbone, _ = session.trained()
    return backbone, float(np.mean(losses[-10:]))


__all__ = ["class_ids", "ensure_process_group", "train_in_memory"]
