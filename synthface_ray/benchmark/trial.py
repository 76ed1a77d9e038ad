"""One benchmark trial (an arm at a seed): draw the arm's budget subsets, train the FR model with
``synthface train-fr``'s Ray Train job (or take the untrained backbone for ``random_init``),
verify it on every real test set, and write ``result.json`` last. A trial whose ``result.json``
holds the same fingerprint is reused as it is; an interrupted one resumes from its FR checkpoint.

The Ray Tune edge that runs trials is :mod:`synthface_ray.benchmark.runner`; this module starts
no Tune and is called from a trial's process (or any process, in tests).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from synthface_ray import config, storage
from synthface_ray.benchmark.config import RANDOM_INIT, Config
from synthface_ray.benchmark.sources import budget_rows, write_subset
from synthface_ray.data import faces, schema
from synthface_ray.evaluate.downstream import PairProtocol, verify_backbone

RESULT = "result.json"
FR_RUN = "fr"  # the train-fr run folder inside a trial folder


@dataclass
class TrialSpec:
    """What every trial needs (small, picklable): the benchmark config (local paths absolute),
    the base ``train-fr`` config as a dict (the YAML plus ``train.set``), the benchmark folder
    and each dataset's signature (its manifest's digest: a regenerated set is new data)."""

    cfg: Config
    train: dict[str, Any]
    folder: str
    signatures: dict[str, str]

    def location(self) -> storage.Location:
        return storage.resolve(self.folder, self.cfg.storage)


def dataset_signature(path: str, store) -> str:
    """The digest of a dataset's manifest (or of a single file's size and name): what changes
    when the data is written again."""
    loc = storage.resolve(path, store)
    manifest = loc.join(faces.MANIFEST)
    if storage.exists(manifest):
        return hashlib.blake2b(storage.read_bytes(manifest), digest_size=8).hexdigest()
    info = loc.fs.get_file_info(loc.path)
    return hashlib.blake2b(f"{loc.uri}:{info.size}".encode(), digest_size=8).hexdigest()


def train_dict(spec: TrialSpec, arm: str) -> dict[str, Any]:
    """The arm's train-fr config as a dict: the base with the arm's own ``train`` keys."""
    section = spec.cfg.arm(arm)
    return config.apply_dotted(spec.train, section.train if section else {}, f"arm {arm} train key")


def train_config(spec: TrialSpec, arm: str, seed: int, sources: list[tuple[str, float]], folder: str):
    """The :class:`TrainFRConfig` of a trial: the arm's config with the benchmark's data
    sources, seed, run folder, storage settings and no held-out split (the test sets are the
    verification)."""
    from synthface_ray.train.recognition import TrainFRConfig  # lazy: imports torch

    forced = {"data.path": None, "data.sources": [{"path": p, "weight": w} for p, w in sources],
              "holdout.identities": 0, "holdout.source": 0, "run.seed": seed,
              "run.storage_path": folder, "run.name": FR_RUN, "export.path": None, "export.onnx": False,
              "num_classes": None,
              "storage": config.to_dict(spec.cfg.storage, redact=False)}
    data = config.apply_dotted(train_dict(spec, arm), forced)
    try:
        return config.from_dict(TrainFRConfig, data)
    except config.ConfigError as exc:
        raise config.ConfigError(f"arm {arm}: the train-fr config ({spec.cfg.train.config}): {exc}") from None


def fingerprint(spec: TrialSpec, arm: str, seed: int) -> dict[str, Any]:
    """What makes two trials the same: arm (sources, budgets, data signatures), the resolved
    train config, the seed, and the test sets with their pair protocol."""
    section = spec.cfg.arm(arm)
    sources = [{**asdict(s), "signature": spec.signatures[s.path]} for s in (section.sources if section else [])]
    test = config.to_dict(spec.cfg.test)
    test["signatures"] = [spec.signatures[s.path] for s in spec.cfg.test.sets]
    train = train_dict(spec, arm)
    if section is None:  # random_init trains nothing: only the backbone and the seed matter
        train = {"backbone": train.get("backbone", {})}
    return json.loads(json.dumps({"arm": arm, "seed": seed, "sources": sources, "train": train,
                                  "test": test}, sort_keys=True, default=str))


def trial_folder(spec: TrialSpec, arm: str, seed: int) -> storage.Location:
    """``trials/<arm>/seed<seed>-<fingerprint digest>``: a changed arm gets a new folder."""
    digest = hashlib.blake2b(json.dumps(fingerprint(spec, arm, seed), sort_keys=True).encode(),
                             digest_size=5).hexdigest()
    return spec.location().join("trials", arm, f"seed{seed}-{digest}")


def read_result(spec: TrialSpec, arm: str, seed: int) -> dict[str, Any] | None:
    """The trial's finished result, if its folder holds one for this fingerprint."""
    loc = trial_folder(spec, arm, seed).join(RESULT)
    if not storage.exists(loc):
        return None
    result = storage.read_json(loc)
    return result if result.get("fingerprint") == fingerprint(spec, arm, seed) else None


# the trial ------------------------------------------------------------------------------------
def prepare_sources(spec: TrialSpec, arm: str, seed: int, folder: storage.Location) -> list[dict[str, Any]]:
    """Each source of the arm as trained: the dataset itself, or its budget subset drawn with
    ``seed`` and written under ``folder/data/source<i>`` (reused when complete)."""
    out, store = [], spec.cfg.storage
    for i, src in enumerate(spec.cfg.arm(arm).sources):
        labels, path = _labels(src.path, store), src.path
        rows = budget_rows(labels, src.images, src.identities, seed)
        if src.budgeted:
            dest = folder.join("data", f"source{i}")
            if not storage.exists(dest.join(faces.MANIFEST)):
                write_subset(src.path, store, rows, dest, seed=seed,
                             budget={"images": src.images, "identities": src.identities})
            path = dest.uri
        out.append({"path": path, "weight": src.weight, "images": int(len(rows)),
                    "identities": int(len(np.unique(labels[rows])))})
    return out


def _labels(path: str, store) -> np.ndarray:
    table = faces.open_faces(path, store).to_table(columns=[schema.LABEL])
    return table.column(schema.LABEL).to_numpy()


def _train(spec: TrialSpec, arm: str, seed: int, folder: storage.Location):
    """Train the arm's FR model (resuming a checkpoint in the trial folder); returns
    ``(trained backbone module, its config, train facts)``."""
    from synthface_ray.models.recognition.embedder import Embedder  # lazy: imports torch
    from synthface_ray.train import fr_job  # lazy: imports torch

    sources = prepare_sources(spec, arm, seed, folder)
    cfg = train_config(spec, arm, seed, [(s["path"], s["weight"]) for s in sources], folder.uri)
    result = fr_job.fit(cfg)
    with storage.local_copy(cfg.export_dir()) as local:
        backbone = Embedder.from_pretrained(local, "cpu").model
    metrics = result.metrics or {}
    facts = {"steps": int(metrics.get("step", cfg.optim.max_steps)), "loss": metrics.get("loss"),
             "images": sum(s["images"] for s in sources),
             "identities": sum(s["identities"] for s in sources), "sources": sources}
    return backbone, cfg.backbone, facts


def _untrained(spec: TrialSpec, seed: int):
    from synthface_ray.train.recognition import initial_backbone  # lazy: imports torch

    cfg = train_config(spec, RANDOM_INIT, seed, [], spec.folder)
    return initial_backbone(cfg), cfg.backbone, {"steps": 0, "loss": None, "images": 0,
                                                 "identities": 0, "sources": []}


def verify_on_test_sets(backbone, backbone_cfg, spec: TrialSpec) -> dict[str, dict[str, Any]]:
    """Verification of ``backbone`` on every test set (the same seeded pairs in every trial)."""
    t = spec.cfg.test
    pairs = PairProtocol(t.genuine, t.impostor, t.folds, t.seed)
    return {s.name: verify_backbone(backbone, backbone_cfg, s.path, spec.cfg.storage, pairs) for s in t.sets}


def run_trial(spec: TrialSpec, arm: str, seed: int) -> dict[str, Any]:
    """Run (or reuse) one trial; returns its result (also written to ``result.json``)."""
    cached = read_result(spec, arm, seed)
    if cached is not None:
        print(f"benchmark: {arm} seed {seed}: reusing the finished trial in "
              f"{trial_folder(spec, arm, seed).uri}", flush=True)
        return {**cached, "reused": True}
    folder = trial_folder(spec, arm, seed)
    start = time.perf_counter()
    backbone, backbone_cfg, facts = (_untrained(spec, seed) if arm == RANDOM_INIT
                                     else _train(spec, arm, seed, folder))
    metrics = verify_on_test_sets(backbone, backbone_cfg, spec)
    result = {"arm": arm, "seed": seed, "fingerprint": fingerprint(spec, arm, seed), "train": facts,
              "test": metrics, "folder": folder.uri, "wall_s": time.perf_counter() - start}
    storage.atomic_write_json(folder.join(RESULT), result)
    for name, m in metrics.items():
        print(f"benchmark: {arm} seed {seed} on {name}: accuracy {m['accuracy']:.4f}, EER "
              f"{m['eer']:.4f}", flush=True)
    return {**result, "reused": False}


__all__ = ["FR_RUN", "RESULT", "TrialSpec", "dataset_signature", "fingerprint", "prepare_sources", "read_result",
           "run_trial", "train_config", "train_dict", "trial_folder", "verify_on_test_sets"]
