"""The trial protocol (pure: no Ray): a fixed evaluation set under common random numbers,
generated rung by rung with the candidate settings and scored with the evaluation suite.

Every trial of a sweep draws its identities from the same pool in the same ``protocol.seed``-ed
order and gives the k-th image of identity i the seed ``row_seeds(seed, i * 2**16 + k)``, so two
trials differ only by their settings (and, with ``plan.tau``, by which identities survive the
uniqueness filter). Rung r adds the identities ``rungs[r-1]:rungs[r]`` of that order (plus their
ScoreMix mixes) and re-scores everything generated so far.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from synthface_ray.data.identities import read_identities
from synthface_ray.evaluate.downstream import verify_backbone
from synthface_ray.evaluate.report import EvaluationInputs, compute_metrics, first_per_label
from synthface_ray.generate import batch as gb
from synthface_ray.mining import plan as mp
from synthface_ray.mining.negatives import negatives
from synthface_ray.mining.pairs import select_pairs
from synthface_ray.mining.uniqueness import unique_filter
from synthface_ray.models.device import pick_device, pick_dtype
from synthface_ray.models.recognition.embedder import Embedder
from synthface_ray.sampling.exported import load_generator
from synthface_ray.train.local import train_in_memory
from synthface_ray.tune.config import METRICS, PlanKnobs, ProtocolSection

IMAGE_KEY = 2**16  # images per identity addressable by the per-row seed key


@dataclass
class Pool:
    """Identity ids and their unit FR-space embeddings, in evaluation order."""

    ids: np.ndarray
    emb: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows) -> Pool:
        return Pool(self.ids[rows], self.emb[rows])


def read_pool(job) -> Pool:
    """The identities table of a generate job (``input.identities``)."""
    ids, emb = read_identities(job.input.identities, job.storage)
    return Pool(np.asarray(ids, np.int64), np.asarray(emb, np.float32))


def trial_pool(pool: Pool, knobs: PlanKnobs, seed: int) -> Pool:
    """The pool in the sweep's fixed order (a ``seed``-ed permutation, the same in every trial),
    then greedily filtered at ``knobs.tau`` in that order (DCFace uniqueness) when set."""
    ordered = pool.take(np.random.default_rng(seed).permutation(len(pool)))
    if knobs.tau is None:
        return ordered
    keep, _ = unique_filter(ordered.emb, knobs.tau, use_gpu="auto")
    return ordered.take(np.flatnonzero(keep))


def negatives_of(pool: Pool, strategy: str, seed: int) -> dict[int, int]:
    """Identity id -> its NegFaceDiff negative among the trial's pool (``null``: none)."""
    if strategy == "null" or len(pool) < 2:
        return {}
    rows = negatives(pool.emb, strategy, 1, seed, use_gpu="auto")[:, 0]
    return {int(i): int(pool.ids[j]) for i, j in zip(pool.ids, rows, strict=True) if j >= 0}


def crn_seeds(seed: int, identity_ids: np.ndarray, image_index: np.ndarray) -> np.ndarray:
    """Per-row seeds keyed by (identity, image index), not by row position: the same image of
    the same identity gets the same noise in every trial (common random numbers)."""
    key = np.asarray(identity_ids, np.int64).astype(np.uint64) * np.uint64(IMAGE_KEY)
    return mp.row_seeds(seed, key + np.asarray(image_index, np.uint64))


def _mixes(block: Pool, knobs: PlanKnobs, protocol: ProtocolSection, first_id: int) -> list:
    """ScoreMix mixes of a block: ``mix_fraction`` of its identities paired far apart in FR
    space, weights (lambda, 1 - lambda) (ScoreMix eq. 3), ids from ``first_id`` on."""
    n_pairs = int(len(block) * protocol.mix_fraction) // 2 if protocol.images_per_mix else 0
    if n_pairs == 0:
        return []
    pairs = select_pairs(block.emb, n_pairs, "dist", use_gpu="auto")
    lam = float(knobs.mix_lambda)
    return [(first_id + k, [int(block.ids[a]), int(block.ids[b])], [lam, 1.0 - lam])
            for k, (a, b) in enumerate(pairs)]


def block_plan(block: Pool, mixes: list, negative_of: dict[int, int], protocol: ProtocolSection,
               first_row: int) -> pa.Table:
    """Plan rows of one rung's new identities and mixes: row ids from ``first_row`` on, seeds
    from :func:`crn_seeds`."""
    table = mp.plan_rows(block.ids, protocol.images_per_identity, negative_of, mixes,
                         protocol.images_per_mix, protocol.seed)
    index = np.concatenate([np.tile(np.arange(protocol.images_per_identity), len(block)),
                            np.tile(np.arange(protocol.images_per_mix), len(mixes))])
    seeds = crn_seeds(protocol.seed, table.column(mp.IDENTITY_ID).to_numpy(), index)
    rows = np.arange(first_row, first_row + table.num_rows, dtype=np.int64)
    table = table.set_column(table.schema.get_field_index(mp.ROW_ID), mp.ROW_ID, pa.array(rows))
    return table.set_column(table.schema.get_field_index(mp.SEED), mp.SEED, pa.array(seeds))


def rung_plans(pool: Pool, knobs: PlanKnobs, protocol: ProtocolSection) -> list[pa.Table]:
    """One plan per rung (its new rows only); concatenated, they are the trial's whole plan.
    A pool smaller than a rung (after ``tau``) gives that rung no new rows."""
    negative_of = negatives_of(pool, knobs.negative, protocol.seed)
    next_mix = int(pool.ids.max()) + 1 if len(pool) else 0
    plans, start, first_row = [], 0, 0
    for size in protocol.rungs():
        block = pool.take(np.arange(start, min(size, len(pool))))
        mixes = _mixes(block, knobs, protocol, next_mix) if len(block) >= 2 else []
        plans.append(block_plan(block, mixes, negative_of, protocol, first_row))
        next_mix += len(mixes)
        first_row += plans[-1].num_rows
        start = max(start, min(size, len(pool)))
    return plans


@dataclass
class Models:
    """What a trial loads once: the generator, the FR model and the identity pool."""

    gen: Any
    embedder: Any
    pool: Pool
    identities: gb.IdentityTable
    device: Any
    dtype: Any
    micro_batch: int

    @classmethod
    def load(cls, job, threads: int) -> Models:
        import torch

        torch.set_num_threads(threads)
        device = pick_device(job.pool.device)
        gen = load_generator(job.model.generator, device)
        dtype = pick_dtype(device, job.pool.precision)
        gen.model.to(dtype=dtype)
        pool = read_pool(job)
        return cls(gen, Embedder.from_pretrained(job.model.fr, device), pool,
                   gb.IdentityTable.build(pool.ids, pool.emb), device, dtype, job.pool.micro_batch)


@dataclass
class Collected:
    """Everything generated so far in row order: embeddings, labels, ``fr_cosine`` and the
    first ``cap`` images of each identity (as ``synthface evaluate`` keeps them)."""

    cap: int
    identities: int | None = None  # pixels of the first this many identities only (None: all)
    keep_all: bool = False  # also keep every image (a downstream FR model trains on them)
    parts: dict[str, list] = field(default_factory=lambda: {k: [] for k in ("emb", "labels", "cos", "pix", "pix_labels")})
    taken: dict[int, int] = field(default_factory=dict)
    every: list[np.ndarray] = field(default_factory=list)

    def add(self, labels: np.ndarray, emb: np.ndarray, cos: np.ndarray, pixels: np.ndarray) -> None:
        keep = first_per_label(labels, self.taken, self.cap, self.identities)
        for key, value in (("emb", emb), ("labels", labels), ("cos", cos), ("pix", pixels[keep]),
                           ("pix_labels", labels[keep])):
            self.parts[key].append(value)
        if self.keep_all:
            self.every.append(pixels)

    def training_set(self) -> tuple[np.ndarray, np.ndarray]:
        """Every image generated so far and its label (``keep_all`` only)."""
        if not self.keep_all:
            raise ValueError("Collected(keep_all=False) keeps a sample of the images only")
        return np.concatenate(self.every), np.concatenate(self.parts["labels"])

    @property
    def images(self) -> int:
        return sum(len(x) for x in self.parts["labels"])

    def inputs(self):
        cat = {k: np.concatenate(v) for k, v in self.parts.items()}
        return EvaluationInputs(cat["emb"], cat["labels"], cat["pix"], cat["pix_labels"], cat["cos"])


def generate_block(models: Models, plan: pa.Table, sampler) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample a rung's rows and score them: ``(embeddings, fr_cosine, pixels at FR size)``."""
    out = gb.sample_batch(models.gen, plan, sampler, models.identities, micro_batch=models.micro_batch,
                          device=models.device, dtype=models.dtype)
    pixels = gb.resize_pixels(gb.pixel_array(out, models.gen.shape[-1]), models.embedder.config.input_size)
    emb = models.embedder(pixels)
    cos = (emb * gb.reference_embeddings(out, models.identities)).sum(1).astype(np.float32)
    return emb, cos, pixels


@dataclass
class Downstream:
    """The downstream objective of a trial (``tune.config.DownstreamSection``, resolved): the FR
    recipe, the real test set and its pairs."""

    train: Any  # synthface_ray.train.recognition.TrainFRConfig
    test: str
    pairs: Any  # synthface_ray.evaluate.downstream.PairProtocol
    every_rung: bool
    storage: Any

    def measure(self, pixels: np.ndarray, labels: np.ndarray, device) -> dict[str, Any]:
        """Train the recipe on the generated ``pixels`` (resized to its input size) and verify
        it on the real test set."""
        pixels = gb.resize_pixels(pixels, self.train.backbone.input_size)
        backbone, loss = train_in_memory(self.train, pixels, labels, device)
        result = verify_backbone(backbone, self.train.backbone, self.test, self.storage, self.pairs, str(device))
        return {**result, "train_loss": loss, "train_images": int(len(labels))}


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The suite's nested metrics as the flat names of :data:`METRICS` (those present)."""
    out = {}
    for name, path in METRICS.items():
        node: Any = metrics
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, (int, float)) and not isinstance(node, bool):
            out[name] = float(node)
    return out


def run_trial(models: Models, sampler, knobs: PlanKnobs, protocol: ProtocolSection, evaluation,
              report: Callable[[dict[str, Any]], None], downstream: Downstream | None = None) -> None:
    """Every rung of one trial: generate its new rows, score all rows so far, ``report`` the
    metrics plus ``rung``, ``identities`` and ``images``; with ``downstream``, also the accuracy
    of an FR model trained on everything generated so far, at every rung with
    ``downstream.every_rung``, else at the last rung only (earlier rungs then report nothing)."""
    pool = trial_pool(models.pool, knobs, protocol.seed)
    collected = Collected(evaluation.diversity.pixel_max_per_class, evaluation.diversity.pixel_identities,
                          keep_all=downstream is not None)
    plans = rung_plans(pool, knobs, protocol)
    for rung, plan in enumerate(plans, 1):
        if plan.num_rows:
            emb, cos, pixels = generate_block(models, plan, sampler)
            collected.add(plan.column(mp.IDENTITY_ID).to_numpy(), emb, cos, pixels)
        if not collected.images:
            raise ValueError(f"the trial's pool has {len(pool)} identities after plan.tau="
                             f"{knobs.tau}: nothing to evaluate")
        if downstream is not None and not downstream.every_rung and rung < len(plans):
            continue  # the objective exists at the last rung only: report nothing before it
        inputs = collected.inputs()
        nested = compute_metrics(inputs, evaluation)[0]
        if downstream is not None:
            nested["downstream"] = downstream.measure(*collected.training_set(), models.device)
        report({**flat_metrics(nested), "rung": rung, "identities": len(np.unique(inputs.labels)),
                "images": collected.images})


__all__ = ["Collected", "Downstream", "Models", "Pool", "block_plan", "crn_seeds", "flat_metrics", "generate_block",
           "negatives_of", "read_pool", "rung_plans", "run_trial", "trial_pool"]
