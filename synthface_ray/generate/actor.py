"""Thin Ray Data callables around :mod:`synthface_ray.generate.batch`: load once in
``__init__``, map one shard (a ``pyarrow.Table``) in ``__call__``, count on the dashboard.

Dashboard metrics (``ray.util.metrics``, tag ``run``): ``synthface_images_generated`` (counter,
also tagged ``actor``), ``synthface_images_per_second`` (gauge per actor: the last shard's
rate), ``synthface_generation_failures`` (counter, tagged ``stage``), ``synthface_generator_actors``
(gauge per actor: 1 while it works; Ray drops a gauge series ~20 s after its last update, so
the gauges exist only while shards are being generated), ``synthface_shards_committed`` (counter).
Prometheus names: ``ray_`` prefix, ``_total`` suffix for counters (clusters/grafana).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from synthface_ray.generate import batch as gb
from synthface_ray.generate import shards

FAULT_WAIT_S = 120.0


@dataclass
class ActorSettings:
    """What a generator or scoring actor needs (small and picklable; the identities table is an
    object-store reference shared by every actor of a node)."""

    run: str
    generator: str
    fr: str | None
    sampler: Any  # the job's SamplerConfig, resolved once when the config loaded
    identities_ref: list | None
    micro_batch: int
    device: str
    precision: str
    torch_threads: int
    fault: dict | None = None
    gate: object | None = None  # an enabled generate.gate.GateSection: the actor samples through it


def _identities(settings: ActorSettings):
    import ray

    return ray.get(settings.identities_ref[0]) if settings.identities_ref else None


def _metric(kind: str, name: str, doc: str, tags: tuple[str, ...]):
    from ray.util import metrics

    return getattr(metrics, kind)(name, description=doc, tag_keys=tags)


def _setup_torch(settings: ActorSettings):
    import torch

    from synthface_ray.models.device import pick_device, pick_dtype  # lazy: Ray worker code

    torch.set_num_threads(settings.torch_threads)
    device = pick_device(settings.device)
    return device, pick_dtype(device, settings.precision)


class GeneratorActor:
    """Loads the generator once; samples every row of a shard with the composite sampler.

    With ``commit`` (the keyword arguments of :func:`encode_and_commit`) the actor is the whole
    pipeline for its shards (``pool.stages: fused``): it also scores them (when ``settings.fr``)
    and encodes and commits them, returning receipts instead of images."""

    def __init__(self, settings: ActorSettings, commit: dict | None = None) -> None:
        from synthface_ray.sampling.exported import load_generator  # lazy: Ray worker code

        self.settings = settings
        self.device, self.dtype = _setup_torch(settings)
        self.gen = load_generator(settings.generator, self.device)
        self.gen.model.to(dtype=self.dtype)
        self.sampler = settings.sampler
        self.identities = _identities(settings)
        self.actor = uuid.uuid4().hex[:8]
        tags = {"run": settings.run, "actor": self.actor}
        self.images = _metric("Counter", "synthface_images_generated", "images generated", ("run", "actor"))
        self.rate = _metric("Gauge", "synthface_images_per_second", "images/s of a generator actor",
                            ("run", "actor"))
        self.failures = _metric("Counter", "synthface_generation_failures", "failed shards", ("run", "stage"))
        self.alive = _metric("Gauge", "synthface_generator_actors", "generator actors alive", ("run", "actor"))
        self.tags = tags
        self.alive.set(1, tags=tags)
        self.done = 0
        self.commit = commit
        self.scorer = FRScorer(settings, commit["size"]) if commit and settings.fr and not settings.gate else None
        self.gate_embedder = _embedder(settings, self.device) if settings.gate else None

    def __call__(self, table: pa.Table) -> pa.Table:
        start = time.perf_counter()
        self.alive.set(1, tags=self.tags)  # re-set per shard: Ray drops a gauge ~20 s after its last set
        try:
            _maybe_fail(self.settings.fault, self.done)
            out = self._sample(table)
        except Exception:
            self.failures.inc(1, tags={"run": self.settings.run, "stage": "generate"})
            raise
        seconds = time.perf_counter() - start
        self.images.inc(table.num_rows, tags=self.tags)
        self.rate.set(table.num_rows / max(seconds, 1e-9), tags=self.tags)
        self.done += 1
        n = out.num_rows
        out = (out.append_column("actor", pa.array([self.actor] * n, pa.string()))
               .append_column("gen_seconds", pa.array([seconds] * n, pa.float64())))
        if self.commit is None:
            return out
        return encode_and_commit(self.scorer(out) if self.scorer else out, **self.commit)


    def _sample(self, table: pa.Table) -> pa.Table:
        """The shard's rows sampled (through the consistency gate when one is configured)."""
        kw = {"micro_batch": self.settings.micro_batch, "device": self.device, "dtype": self.dtype}
        if self.gate_embedder is None:
            return gb.sample_batch(self.gen, table, self.sampler, self.identities, **kw)
        from synthface_ray.generate.gate import sample_gated  # lazy: Ray worker code

        return sample_gated(self.gen, table, self.sampler, self.identities, self.gate_embedder,
                            self.settings.gate, size=self.gen.shape[-1], **kw)


def _embedder(settings: ActorSettings, device):
    """The FR backbone that scores (and gates) generated images, on ``device``."""
    from synthface_ray.models.recognition.embedder import Embedder  # lazy: Ray worker code

    return Embedder.from_pretrained(settings.fr, device)


def _maybe_fail(fault: dict | None, done: int) -> None:
    """Test-only fault injection (``fault`` section), on receiving a shard after ``after_shards``
    done: raise, or SIGKILL this process. It first waits (up to ``FAULT_WAIT_S``) until
    ``after_shards`` shards are committed under ``fault["out"]`` (the output's Location), since a
    failure fails the whole Ray Data execution at once and the tests check a partial output."""
    if not fault or fault.get("after_shards") is None or done < fault["after_shards"]:
        return
    marker = fault.get("marker")
    if marker:
        if os.path.exists(marker):
            return
        with open(marker, "w", encoding="utf-8") as fh:
            fh.write(str(os.getpid()))
    _wait_for_commits(fault.get("out"), fault["after_shards"])
    if fault.get("mode") == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"injected failure after {done} shard(s) (fault.after_shards, for tests)")


def _wait_for_commits(out, count: int) -> None:
    deadline = time.monotonic() + FAULT_WAIT_S
    while out is not None and len(shards.committed(out)) < count and time.monotonic() < deadline:
        time.sleep(0.2)


class FRScorer:
    """Loads the FR backbone once; adds ``fr_cosine`` to every row of a shard."""

    def __init__(self, settings: ActorSettings, size: int) -> None:
        device, _ = _setup_torch(settings)
        self.embedder = _embedder(settings, device)
        self.identities = _identities(settings)
        self.size = size
        self.run = settings.run
        self.failures = _metric("Counter", "synthface_generation_failures", "failed shards", ("run", "stage"))

    def __call__(self, table: pa.Table) -> pa.Table:
        try:
            return gb.score_batch(self.embedder, table, self.identities, self.size)
        except Exception:
            self.failures.inc(1, tags={"run": self.run, "stage": "score"})
            raise


def encode_and_commit(table: pa.Table, *, out_uri: str, storage_cfg: dict, size: int, fmt: str,
                      quality: int, sampler_json: str, model_id: str, expected: dict[int, int],
                      run: str, drop_failed: bool = False) -> pa.Table:
    """Encode a block's images and commit each of its shards; returns one receipt row per shard.

    A block must hold whole shards (the pipeline keeps one shard per block); a partial shard is
    refused rather than written. With ``drop_failed`` the rows the consistency gate rejected
    are left out of the shard (after that check: the shard was generated whole)."""
    import numpy as np

    from synthface_ray import storage  # lazy: Ray worker code
    from synthface_ray.config import from_dict  # lazy: Ray worker code
    from synthface_ray.generate.gate import drop_failed as passed_only  # lazy: Ray worker code
    from synthface_ray.storage import StorageConfig  # lazy: Ray worker code

    loc = storage.resolve(out_uri, from_dict(StorageConfig, storage_cfg))
    receipts = []
    for part in shards.split_shards(table):
        shard = int(part.column(shards.SHARD)[0].as_py())
        if part.num_rows != expected[shard]:
            raise RuntimeError(f"shard {shard} reached the writer with {part.num_rows} of "
                               f"{expected[shard]} rows; refusing to write a partial shard")
        actor = part.column("actor")[0].as_py()
        gen_seconds = float(np.asarray(part.column("gen_seconds"))[0])
        if drop_failed:
            part = passed_only(part)
        rows = gb.faces_rows(part, size=size, fmt=fmt, quality=quality, sampler_json=sampler_json,
                             model_id=model_id)
        rec = shards.commit_shard(loc, shard, rows, actor=actor,
                                  gen_seconds=gen_seconds)
        receipts.append(rec)
    _metric("Counter", "synthface_shards_committed", "shards committed", ("run",)).inc(
        len(receipts), tags={"run": run})
    return pa.Table.from_pylist(receipts)


__all__ = ["ActorSettings", "FRScorer", "GeneratorActor", "encode_and_commit"]
