"""FR training as a :class:`~synthface_ray.train.job.TrainTask`: pre-flight data checks, the
held-out identity split, per-source Ray Data feeds mixed by sampling weight, and at the end the
export plus verification on the held-out identities. The loop, checkpoints, resume and the
``TorchTrainer`` wiring are :mod:`synthface_ray.train.job`'s.

Mixing: every source is its own Ray Dataset (``train0``, ``train1``, ...), split equally across
workers by Ray Train; each worker draws a fixed ``counts[i]`` rows per micro-batch from source
``i`` (weights rounded by largest remainder), so the mix is exact in every batch, and a small
source simply cycles more epochs than a large one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from synthface_ray import storage
from synthface_ray.config import ConfigError
from synthface_ray.data import faces, schema
from synthface_ray.data.ray_io import read_faces_dataset
from synthface_ray.data.transforms import decode_batch
from synthface_ray.evaluate.verification import cosine_scores, make_pairs, verify
from synthface_ray.mining.same_identity import Match
from synthface_ray.models.recognition.embedder import Embedder
from synthface_ray.train import job, same_identity
from synthface_ray.train.recognition import FRSession, TrainFRConfig

HOLDOUT_REPORT = "heldout_verification.json"


@dataclass
class SourceFacts:
    """One source after the check: its labels, how many rows train, and label -> class id."""

    path: str
    rows: int  # training rows (held-out identities removed)
    identities: int  # training identities
    class_map: np.ndarray  # int64 (max_label + 1,): class id, or -1 (held out / absent)


@dataclass
class FRFacts:
    sources: list[SourceFacts]
    num_classes: int
    counts: list[int]  # rows per micro-batch from each source
    heldout: list[int]  # held-out labels of source ``holdout.source``


# checks before any worker starts --------------------------------------------------------------
def largest_remainder(weights: list[float], total: int) -> list[int]:
    """Integers proportional to ``weights`` that sum to ``total`` (Hamilton's method)."""
    w = np.asarray(weights, np.float64)
    exact = w / w.sum() * total
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return [int(c) for c in counts]


def _label_counts(path: str, cfg: TrainFRConfig) -> tuple[np.ndarray, np.ndarray]:
    """(unique labels, rows per label) of a faces dataset, streaming only its label column."""
    dataset = faces.open_faces(path, cfg.storage, allow_incomplete=cfg.data.allow_incomplete,  # SchemaError names
                               key="data.allow_incomplete")  # missing columns, IncompleteDatasetError an interrupted run
    parts = [b.column(schema.LABEL).to_numpy(zero_copy_only=False)
             for b in dataset.to_batches(columns=[schema.LABEL])]
    labels = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if not len(labels):
        raise ConfigError(f"data source {path} has no rows: nothing to train on")
    if labels.min() < 0:
        raise ConfigError(f"data source {path} has a negative label ({labels.min()}): labels must "
                          "be identity ids >= 0")
    return np.unique(labels, return_counts=True)


def _pick_heldout(cfg: TrainFRConfig, labels: np.ndarray, path: str) -> np.ndarray:
    """``holdout.identities`` labels chosen with ``run.seed`` (sorted)."""
    n = cfg.holdout.identities
    if n == 0:
        return np.zeros(0, np.int64)
    if n > len(labels) - 2:
        raise ConfigError(
            f"holdout.identities={n} but source {path} has {len(labels)} identities: keep at "
            f"least 2 for training (holdout.identities <= {len(labels) - 2})")
    return np.sort(np.random.default_rng(cfg.run.seed).choice(labels, n, replace=False))


def check_data(cfg: TrainFRConfig) -> FRFacts:
    """Schema, labels, held-out split, one person in two sources (``data.same_identity``), class
    count and batch mix against the config.

    Raises ``SchemaError``/``ConfigError`` naming what is wrong and how to fix it."""
    paths = [src.path for src in cfg.data.source_list()]
    trained, rows, sizes, heldout = [], [], [], np.zeros(0, np.int64)
    for i, path in enumerate(paths):
        labels, counts = _label_counts(path, cfg)
        sizes.append(int(labels[-1]) + 1)
        if cfg.holdout.identities and i == cfg.holdout.source:
            heldout = _pick_heldout(cfg, labels, path)
            keep = ~np.isin(labels, heldout)
            labels, counts = labels[keep], counts[keep]
        trained.append(labels)
        rows.append(int(counts.sum()))
    merged = []
    if cfg.data.same_identity.fr_model and len(paths) > 1:
        section = cfg.data.same_identity
        merged = same_identity.apply(section, same_identity.judge(section, paths, trained, cfg.storage,
                                                                      cfg.data.allow_incomplete), paths)
    elif len(paths) > 1:
        print(f"note: the {len(paths)} sources' identities are trained as separate classes, unchecked; "
              "set data.same_identity.fr_model to find (and merge) one person in two sources", flush=True)
    maps, num_classes = number_classes(trained, merged, sizes)
    sources = [SourceFacts(p, r, len(t), m) for p, r, t, m in zip(paths, rows, trained, maps, strict=True)]
    if cfg.num_classes is not None and cfg.num_classes != num_classes:
        raise ConfigError(
            f"label ids out of range: the data has {num_classes} training identities (classes "
            f"0..{num_classes - 1}) but num_classes={cfg.num_classes}; set num_classes: {num_classes} "
            "or null (count them from the data)")
    counts = batch_counts(cfg, sources)
    return FRFacts(sources, num_classes, counts, [int(x) for x in heldout])


def number_classes(trained: list[np.ndarray], merged: list[Match],
                   sizes: list[int]) -> tuple[list[np.ndarray], int]:
    """Label -> class id of every source (int64 arrays of ``sizes[i]`` = its largest label + 1;
    -1 = not trained, e.g. held out) and the class count:
    source 0's labels first, then source 1's, ...; a merged label takes its match's class id
    (resolved in source order, so chains of matches end at the earliest source)."""
    into = {(m.source, m.label): (m.match_source, m.match_label) for m in merged}
    maps, offset = [], 0
    for i, labels in enumerate(trained):
        class_map = np.full(sizes[i], -1, np.int64)
        for lab in labels:
            target = into.get((i, int(lab)))
            if target is None:
                class_map[lab], offset = offset, offset + 1
            else:
                class_map[lab] = maps[target[0]][target[1]]
        maps.append(class_map)
    return maps, offset


def batch_counts(cfg: TrainFRConfig, sources: list[SourceFacts]) -> list[int]:
    """Rows of each source per micro-batch (weights by largest remainder), refusing a source
    that gets none or has fewer training rows than one step takes."""
    weights = [s.weight for s in cfg.data.source_list()]
    counts = largest_remainder(weights, cfg.optim.micro_batch)
    for src, k in zip(sources, counts, strict=True):
        if k == 0:
            raise ConfigError(
                f"data source {src.path} gets 0 rows of a micro-batch of {cfg.optim.micro_batch} "
                "at its weight: raise its weight or optim.micro_batch")
        need = k * cfg.scaling.num_workers
        if src.rows < need:
            raise ConfigError(
                f"data source {src.path} has {src.rows} training rows but one step takes {k} per "
                f"worker x {cfg.scaling.num_workers} workers = {need}: lower optim.micro_batch or "
                "scaling.num_workers")
    return counts


# Ray Data feed --------------------------------------------------------------------------------
def decode_classes(table, resolution: int, strict: bool, class_map: np.ndarray) -> dict[str, np.ndarray]:
    """Ray Data map: drop rows whose label is not a training class (held out), decode the rest
    to uint8 pixels and replace ``label`` by the class id."""
    import pyarrow as pa

    classes = class_map[table.column(schema.LABEL).to_numpy(zero_copy_only=False)]
    keep = classes >= 0
    table = table.filter(pa.array(keep))
    table = table.set_column(table.schema.get_field_index(schema.LABEL), schema.LABEL,
                             pa.array(classes[keep], pa.int64()))
    return job.decode_rows(table, resolution, strict)


def _datasets(cfg: TrainFRConfig, facts: FRFacts) -> dict:
    """``train{i}``: source ``i`` read, block order randomised, decoded to class-labelled uint8
    pixels in CPU tasks (materialised once when the pixels fit ``data.cache_max_gb``)."""
    size = cfg.backbone.input_size
    cache = cfg.data.should_cache(sum(s.rows for s in facts.sources), size)
    out = {}
    for i, src in enumerate(facts.sources):
        ds = read_faces_dataset(src.path, cfg.storage, cfg.data.allow_incomplete, "data.allow_incomplete",
                                num_cpus=job.READ_CPUS)
        ds = ds.randomize_block_order(seed=cfg.run.seed + i).map_batches(
            decode_classes, batch_format="pyarrow", num_cpus=job.READ_CPUS,
            fn_kwargs={"resolution": size, "strict": cfg.data.strict, "class_map": src.class_map},
        )
        ds = job.ordered(ds, cfg)
        out[f"train{i}"] = ds.materialize() if cache else ds
    return out


def _session(cfg: TrainFRConfig, facts: FRFacts, rank: int, world: int, device: torch.device,
             precision: str) -> FRSession:
    return FRSession(cfg, rank, world, device, precision, num_classes=facts.num_classes)


def mix(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One micro-batch from the sources' batches (keys they all have, concatenated)."""
    keys = set.intersection(*(set(p) for p in parts))
    return {k: torch.cat([p[k] for p in parts]) for k in sorted(keys)}


def _batches(cfg: TrainFRConfig, facts: FRFacts) -> Iterator[list[dict[str, torch.Tensor]]]:
    """Endless groups of ``grad_accum`` micro-batches, each ``counts[i]`` rows of source ``i``."""
    import ray.train

    feeds = [job.endless_batches(ray.train.get_dataset_shard(f"train{i}"), k, cfg.data.shuffle_buffer,
                                 job.feed_seed(cfg, i))
             for i, k in enumerate(facts.counts)]

    def micro() -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield mix([next(f) for f in feeds])

    return job.grouped(micro(), cfg.optim.grad_accum)


# rank 0: export and held-out verification -----------------------------------------------------
def classes_table(facts: FRFacts):
    """class id -> (source index, source path, label): the export's ``classes.parquet``."""
    import pyarrow as pa

    cls, src, lab = [], [], []
    for i, s in enumerate(facts.sources):
        labels = np.flatnonzero(s.class_map >= 0)
        cls.append(s.class_map[labels])
        src.append(np.full(len(labels), i))
        lab.append(labels)
    paths = [s.path for s in facts.sources]
    source = np.concatenate(src)
    return pa.table({"class_id": np.concatenate(cls), "source_index": source,
                     "source_path": [paths[i] for i in source], schema.LABEL: np.concatenate(lab)})


def heldout_verification(session: FRSession, facts: FRFacts):
    """Verification of the trained backbone on the held-out identities' images (rank 0)."""
    import pyarrow.compute as pc

    cfg, h = session.cfg, session.cfg.holdout
    path = cfg.data.source_list()[h.source].path
    table = faces.open_faces(path, cfg.storage, allow_incomplete=cfg.data.allow_incomplete, key="data.allow_incomplete").to_table(
        filter=pc.field(schema.LABEL).isin(facts.heldout))
    batch = decode_batch(table, cfg.backbone.input_size, strict=False, model_range=False)
    embedder = Embedder(session.trained()[0], cfg.backbone, session.device)
    pairs, issame = make_pairs(batch[schema.LABEL], h.genuine, h.impostor, cfg.run.seed)
    return verify(cosine_scores(embedder(batch["image"]), pairs), issame, h.folds)


def _finish(session: FRSession, monitor, facts: FRFacts) -> None:
    """Loss curve, export, and the held-out verification report (``heldout_verification.json``
    in the run folder)."""
    from dataclasses import asdict

    cfg = session.cfg
    monitor.curve()
    dest = session.export(cfg.export_dir(), classes_table(facts))
    print(f"exported the FR backbone (step {session.step}) to {dest.uri}", flush=True)
    if not facts.heldout:
        return
    result = heldout_verification(session, facts)
    report = {"step": session.step, "identities": len(facts.heldout),
              "source": cfg.data.source_list()[cfg.holdout.source].path, **asdict(result)}
    storage.atomic_write_text(cfg.run_dir().join(HOLDOUT_REPORT), json.dumps(report, indent=2) + "\n")
    metrics = {k: v for k, v in asdict(result).items() if k not in ("pairs", "folds")}
    monitor.scalars("heldout", metrics, session.step)  # TensorBoard too: heldout/accuracy, heldout/eer...
    print(f"held-out verification ({len(facts.heldout)} identities never trained on): "
          f"{result.summary()}", flush=True)


TASK = job.TrainTask(
    name="fr", config_cls=TrainFRConfig, check=check_data, datasets=_datasets, session=_session,
    batches=_batches, finish=_finish,
)


def fit(cfg: TrainFRConfig, *, fail_at_step: int | None = None):
    """Train the FR model (:func:`synthface_ray.train.job.fit`); returns the Ray Result."""
    return job.fit(TASK, cfg, fail_at_step=fail_at_step)


def read_heldout_report(cfg: TrainFRConfig) -> dict | None:
    """The run's held-out verification report, if it wrote one."""
    loc = cfg.run_dir().join(HOLDOUT_REPORT)
    return storage.read_json(loc) if storage.exists(loc) else None


__all__ = ["FRFacts", "SourceFacts", "TASK", "batch_counts", "check_data", "fit", "largest_remainder", "mix",
           "number_classes"]
