"""``synthface verify``: face verification of an FR backbone on a faces set or an insightface .bin."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field

import numpy as np

from synthface_ray import config, storage
from synthface_ray.commands.common import print_dry_run
from synthface_ray.commands.fr_common import embed_faces
from synthface_ray.config import ConfigError, check_range
from synthface_ray.data.formats.verification_bin import read_verification_bin
from synthface_ray.data.transforms import decode_image
from synthface_ray.evaluate.verification import (
    cosine_scores,
    far_resolution_warnings,
    make_pairs,
    verify,
)
from synthface_ray.models.recognition.section import ModelSection
from synthface_ray.storage import StorageConfig


@dataclass
class InputSection:
    """A faces dataset (``genuine``/``impostor`` pairs drawn from its identities, seeded) or an
    insightface verification ``.bin`` (its own pairs)."""

    path: str = ""
    allow_incomplete: bool = False  # read a dataset without its manifest (an interrupted run), with a warning
    genuine: int = 3000
    impostor: int = 3000
    seed: int = 0
    folds: int = 10

    def __post_init__(self) -> None:
        check_range("input.genuine", self.genuine, 1)
        check_range("input.impostor", self.impostor, 1)
        check_range("input.folds", self.folds, 2)


@dataclass
class OutputSection:
    path: str | None = None  # JSON report (local or s3://); printed either way


@dataclass
class Config:
    model: ModelSection = field(default_factory=ModelSection)
    input: InputSection = field(default_factory=InputSection)
    output: OutputSection = field(default_factory=OutputSection)
    storage: StorageConfig = field(default_factory=StorageConfig)


def _bin_pairs(embedder, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    images, issame = read_verification_bin(cfg.input.path, cfg.storage)
    size = embedder.config.input_size
    pixels = np.stack([decode_image(b, size) for b in images])
    emb = embedder(pixels, cfg.model.batch_size)
    return cosine_scores(emb, np.arange(len(images)).reshape(-1, 2)), issame


def _faces_pairs(embedder, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    emb, labels = embed_faces(embedder, cfg.input.path, cfg.storage, cfg.model.batch_size,
                              cfg.input.allow_incomplete)
    pairs, issame = make_pairs(labels, cfg.input.genuine, cfg.input.impostor, cfg.input.seed)
    return cosine_scores(emb, pairs), issame


def run(cfg: Config, dry_run: bool = False) -> int:
    if not cfg.input.path:
        raise ConfigError("input.path is not set: give a faces dataset or a .bin file (--data)")
    is_bin = cfg.input.path.endswith(".bin")
    if dry_run:
        what = "its pairs" if is_bin else f"{cfg.input.genuine} genuine + {cfg.input.impostor} impostor pairs"
        notes = [] if is_bin else [f"warning: {w}" for w in far_resolution_warnings(cfg.input.impostor)]
        print_dry_run("verify", cfg, [f"embed {cfg.input.path} with {cfg.model.path}, score {what}", *notes])
        return 0
    embedder = cfg.model.load()
    scores, issame = (_bin_pairs if is_bin else _faces_pairs)(embedder, cfg)
    result = verify(scores, issame, cfg.input.folds)
    print(result.summary())
    warnings = far_resolution_warnings(int((~np.asarray(issame, bool)).sum()))
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    if cfg.output.path:
        report = {"input": cfg.input.path, "model": cfg.model.path, **asdict(result), "warnings": warnings,
                  "config": config.to_dict(cfg)}  # its resolved config, secrets redacted
        storage.atomic_write_text(storage.resolve(cfg.output.path, cfg.storage),
                                  json.dumps(report, indent=2) + "\n")
        print(f"report: {cfg.output.path}")
    return 0
