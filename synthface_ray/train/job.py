"""The Ray edge shared by every training job: checks before any worker starts, the
``train_loop_per_worker`` and the ``TorchTrainer`` wiring (Ray Train V2 + DeepSpeed).

A job is a :class:`TrainTask`: a handful of callables (check the data on the driver, build the
Ray Datasets, build a worker's session, turn the worker's dataset shards into step inputs, and
what rank 0 does along the way and at the end). The generator
(:mod:`~synthface_ray.train.generator_job`) and the FR model (:mod:`~synthface_ray.train.fr_job`)
are two entries of :data:`TASKS`; the loop, reporting, checkpointing, resume and fault handling
below are theirs in common.

Resume: the run folder is ``<run.storage_path>/<run.name>``; running the same config again picks
up the latest checkpoint there (``ray.train.get_checkpoint``), including after a crash. Within one
``fit``, ``FailureConfig(max_failures)`` restarts the workers from the latest checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import itertools
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from synthface_ray.config import ConfigError, apply_dotted, from_dict, secret_values, to_dict
from synthface_ray.ops.local_ray import init_ray
from synthface_ray.train.deepspeed import init_distributed, resolve_precision
from synthface_ray.train.monitor import Monitor, eta_text

log = logging.getLogger(__name__)
READ_CPUS = 0.25  # Ray Data read/decode tasks: fractional, so training workers cannot starve them
FAULT_DELAY_S = 5.0  # see _inject_failure


@dataclass(frozen=True)
class TrainTask:
    """What differs between training jobs. ``facts`` is whatever ``check`` learned on the driver
    (picklable; it travels to the workers).

    * ``check(cfg) -> facts``: validate data against config on the driver (clear errors).
    * ``datasets(cfg, facts) -> {name: ray.data.Dataset}``: the training feed.
    * ``session(cfg, facts, rank, world, device, precision)``: a worker's session, with ``step``,
      ``engine``, ``train_step(list of micro-batches) -> loss``, ``save(dir)``, ``load(dir)``.
    * ``batches(cfg, facts) -> iterator``: endless step inputs from ``ray.train.get_dataset_shard``.
    * ``on_step(session, monitor, facts)`` and ``finish(session, monitor, facts)``: rank 0 only,
      after each step (e.g. sample previews) and at the end (export).
    """

    name: str
    config_cls: type
    check: Callable[[Any], Any]
    datasets: Callable[[Any, Any], dict[str, Any]]
    session: Callable[..., Any]
    batches: Callable[[Any, Any], Iterator[list[dict[str, torch.Tensor]]]]
    finish: Callable[[Any, Any, Any], None]
    on_step: Callable[[Any, Any, Any], None] | None = None


#: task name -> "module:attribute" of its :class:`TrainTask` (imported on use: no import cycles)
TASKS = {
    "generator": "synthface_ray.train.generator_job:TASK",
    "fr": "synthface_ray.train.fr_job:TASK",
}


def get_task(name: str) -> TrainTask:
    module, attr = TASKS[name].split(":")
    return getattr(importlib.import_module(module), attr)


# checks before any worker starts --------------------------------------------------------------
def check_device(cfg, use_gpu: bool) -> None:
    """Precision the workers' device cannot run (fp16 on CPU) fails here, not in a worker."""
    if not use_gpu and cfg.deepspeed.precision == "fp16":
        raise ConfigError(
            "deepspeed.precision=fp16 is not supported on CPU workers (DeepSpeed refuses it): use "
            "bf16 or fp32, or run on GPUs (scaling.device=cuda)"
        )


def check_cpus_left(cfg, cluster_cpus: float) -> None:
    """Ray Data's file listing and read tasks need a whole free CPU beside the training workers;
    without it the data feed never starts and training hangs silently (PLATFORM_NOTES)."""
    taken = cfg.scaling.num_workers * cfg.scaling.cpus_per_worker
    if cluster_cpus - taken < 1:
        raise ConfigError(
            f"scaling.num_workers x scaling.cpus_per_worker = {taken:g} of the cluster's "
            f"{cluster_cpus:g} CPUs leaves less than 1 CPU for the Ray Data read tasks, which "
            "would hang; lower scaling.cpus_per_worker (e.g. 0.5) or scaling.num_workers"
        )


def check_global_batch(cfg, rows: int, what: str = "data") -> None:
    """One step needs ``micro_batch x num_workers`` rows (each worker's shard is equal)."""
    need = cfg.optim.micro_batch * cfg.scaling.num_workers
    if rows < need:
        raise ConfigError(
            f"{what} has {rows} rows but one step needs optim.micro_batch x scaling.num_workers "
            f"= {need}: lower optim.micro_batch or scaling.num_workers"
        )


def resolve_use_gpu(cfg) -> bool:
    """``scaling.device``: auto = GPUs when the (initialised) Ray cluster has any."""
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    if cfg.scaling.device == "cuda" and gpus < 1:  # an autoscaler may still add GPU nodes
        log.warning("scaling.device=cuda but the Ray cluster has no GPUs yet: the workers wait "
                    "until GPU nodes join (use scaling.device=auto or cpu to run without)")
    return cfg.scaling.device == "cuda" or (cfg.scaling.device == "auto" and gpus >= 1)


# Ray Data feed helpers ------------------------------------------------------------------------
def decode_rows(table, resolution: int, strict: bool) -> dict[str, np.ndarray]:
    """Ray Data map: faces rows -> uint8 NHWC pixels (4x smaller than floats in the object store
    and in transfers; the worker scales them to [-1, 1]), label, source."""
    from synthface_ray.data.transforms import DecodeReport, decode_batch  # lazy: Ray worker code

    report = DecodeReport()
    out = decode_batch(table, resolution, strict=strict, report=report, model_range=False)
    if report.skipped:
        log.warning("skipped %d corrupt image(s) in a training batch: %s", report.skipped,
                    report.summary())
    return out


def feed_seed(cfg, stream: int = 0) -> int | None:
    """The local-shuffle seed of this worker's feed ``stream`` (a source): from ``run.seed``, the
    worker's rank and the stream when ``data.deterministic``, else None (unseeded)."""
    if not cfg.data.deterministic:
        return None
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    return int(np.random.SeedSequence([cfg.run.seed, rank, stream]).generate_state(1)[0])


def endless_batches(shard, batch_size: int, shuffle_buffer: int,
                    seed: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Torch batches of one dataset shard, epoch after epoch (Ray Train splits every dataset
    into equal shards, so all workers reach an epoch's end at the same step); the local shuffle
    of epoch e seeded with ``seed + e`` (None: unseeded)."""
    for epoch in itertools.count():
        empty = True
        for batch in shard.iter_torch_batches(batch_size=batch_size, drop_last=True,
                                              local_shuffle_buffer_size=shuffle_buffer or None,
                                              local_shuffle_seed=None if seed is None else seed + epoch):
            empty = False
            yield batch
        if empty:
            raise RuntimeError("this worker's data shard gave no full batch in an epoch")


def grouped(batches: Iterator[dict[str, torch.Tensor]], size: int) -> Iterator[list[dict[str, torch.Tensor]]]:
    """Groups of ``size`` micro-batches (one optimizer step with gradient accumulation)."""
    while True:
        yield [next(batches) for _ in range(size)]


# the loop on each worker ----------------------------------------------------------------------
class _Window:
    """Loss and throughput since the last report."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loss, self.steps, self.start = torch.zeros((), device=self.device), 0, time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        self.loss += loss
        self.steps += 1

    def metrics(self, session) -> dict[str, Any]:
        """Window metrics averaged over ranks (one all-reduce per report, not per step)."""
        import torch.distributed as dist

        loss = self.loss / max(self.steps, 1)
        if dist.is_initialized():
            dist.all_reduce(loss)
            loss /= session.world
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        opt = session.cfg.optim
        samples = self.steps * opt.micro_batch * opt.grad_accum * session.world
        return {"step": session.step, "loss": float(loss), "steps_per_s": self.steps / elapsed,
                "samples_per_s": samples / elapsed, "lr": session.engine.get_lr()[0]}


def _report(session, metrics: dict[str, Any], checkpoint: bool, monitor) -> None:
    """``ray.train.report`` from every rank; with a checkpoint every rank saves its share."""
    import ray.train

    if monitor is not None:
        monitor.log(metrics)
        left = eta_text(session.cfg.optim.max_steps - metrics["step"], metrics["steps_per_s"])
        print(f"step {metrics['step']}/{session.cfg.optim.max_steps}  loss {metrics['loss']:.4f}  "
              f"{metrics['steps_per_s']:.2f} steps/s  {metrics['samples_per_s']:.0f} samples/s  ETA {left}"
              + ("  [checkpoint]" if checkpoint else ""), flush=True)
    if not checkpoint:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="synthface-ckpt-") as tmp:
        session.save(tmp)
        if monitor is not None:
            monitor.sync()
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def worker_config(task: TrainTask, loop_config: dict[str, Any], secrets: dict[str, Any] | None):
    """The worker's config: ``loop_config["config"]`` (redacted) with the secrets put back."""
    return from_dict(task.config_cls, apply_dotted(loop_config["config"], secrets or {}, "secret"))


def _setup(task: TrainTask, loop_config: dict[str, Any], secrets: dict[str, Any] | None):
    """Build the session on this worker and restore the latest checkpoint, if any."""
    import ray.train
    import ray.train.torch

    cfg = worker_config(task, loop_config, secrets)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(cfg.scaling.torch_threads or max(1, math.floor(cfg.scaling.cpus_per_worker)))
    init_distributed(cfg.deepspeed, "nccl" if device.type == "cuda" else "gloo")
    precision = resolve_precision(cfg.deepspeed.precision, device)
    session = task.session(cfg, loop_config["facts"], rank, world, device, precision)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with _checkpoint_directory(checkpoint, rank) as directory:
            session.load(directory)
        if rank == 0:
            print(f"resumed from the checkpoint at step {session.step}", flush=True)
    monitor = Monitor(cfg.run_dir(), session.step) if rank == 0 else None
    return session, monitor


@contextlib.contextmanager
def _checkpoint_directory(checkpoint, rank: int):
    """A local directory holding ``checkpoint``: its own path when it is on the local
    filesystem, else a per-rank download. (``Checkpoint.as_directory`` downloads a remote
    checkpoint into one temp dir shared by the node's workers under a non-blocking lock; measured
    here, two ranks on one node raced on it: "Checkpoint directory ... does not exist, even though
    it should have been created by another process".)"""
    import pyarrow.fs as pafs

    if isinstance(checkpoint.filesystem, pafs.LocalFileSystem):
        yield checkpoint.path
        return
    with tempfile.TemporaryDirectory(prefix=f"synthface-checkpoint-rank{rank}-") as directory:
        checkpoint.to_directory(directory)
        yield directory


def _inject_failure(step: int) -> None:
    """Fault injection for tests. Ray Train's controller collects reported checkpoints when it
    polls the workers (every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``, 2 s by default); a crash
    sooner than that after a checkpoint may lose it. Wait out two polls, then fail."""
    time.sleep(FAULT_DELAY_S)
    raise RuntimeError(f"injected failure at step {step} (fail_at_step, for tests)")


def train_loop_per_worker(loop_config: dict[str, Any], *, secrets: dict[str, Any] | None = None) -> None:
    """Ray Train entry point: train to ``optim.max_steps``, report, checkpoint, then rank 0 runs
    the task's ``finish`` (export). ``secrets`` (bound by :func:`trainer`) complete the redacted
    config of ``loop_config``."""
    task = get_task(loop_config["task"])
    session, monitor = _setup(task, loop_config, secrets)
    cfg, facts = session.cfg, loop_config["facts"]
    start, fail_at = session.step, loop_config.get("fail_at_step")
    window = _Window(session.device)
    batches = task.batches(cfg, facts)
    while session.step < cfg.optim.max_steps:
        window.add(session.train_step(next(batches)))
        step = session.step
        checkpoint = step % cfg.run.checkpoint_every == 0 or step == cfg.optim.max_steps
        if checkpoint or step % cfg.run.report_every == 0:
            _report(session, {**window.metrics(session), "resumed_from": start}, checkpoint, monitor)
            window.reset()
        if monitor is not None and task.on_step is not None:
            task.on_step(session, monitor, facts)
        if fail_at is not None and step == fail_at and start == 0:  # only in a fresh run
            _inject_failure(step)
    if monitor is not None:
        task.finish(session, monitor, facts)
        monitor.close()


# driver ---------------------------------------------------------------------------------------
def ordered(ds, cfg):
    """``ds`` with ``data.deterministic`` in its own copy of the Ray Data context: its blocks keep
    their order (``preserve_order``); the process-wide context is left as it is."""
    ds.context.execution_options.preserve_order = bool(cfg.data.deterministic)
    return ds


def data_config(cfg):
    """Ray Train's split of the datasets: with ``data.deterministic`` the split preserves the block
    order, which also makes it hand the blocks to the workers in that order (locality ignored)."""
    from ray.train import DataConfig

    options = DataConfig.default_ingest_options()
    options.preserve_order = bool(cfg.data.deterministic)
    return DataConfig(execution_options=options)


def trainer(task: TrainTask, cfg, facts, use_gpu: bool, fail_at_step: int | None = None):
    """The ``TorchTrainer`` for ``cfg`` (not started). Ray Train keeps ``train_loop_config`` in its
    run state (the dashboard's Train page shows it), so the config goes there redacted and its
    secrets (storage credentials) are bound to the worker function instead."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    root = cfg.run_dir()
    parent = root.path.rsplit("/", 1)[0]
    sc = cfg.scaling
    resources = {"CPU": sc.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    return TorchTrainer(
        functools.partial(train_loop_per_worker, secrets=secret_values(cfg)),
        train_loop_config={"task": task.name, "config": to_dict(cfg),
                           "facts": facts, "fail_at_step": fail_at_step},
        scaling_config=ScalingConfig(num_workers=sc.num_workers, use_gpu=use_gpu,
                                     resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(
            name=cfg.run.name, storage_path=parent, storage_filesystem=root.fs,
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.keep_checkpoints),
        ),
        datasets=task.datasets(cfg, facts),
        dataset_config=data_config(cfg),
    )


def preflight(task: TrainTask, cfg):
    """The checks that need no cluster (data against config, fp16 on a CPU-only run): returns
    ``(cfg with absolute paths, facts)``. Also what ``--dry-run`` shows."""
    cfg = cfg.with_absolute_paths()
    facts = task.check(cfg)
    if cfg.scaling.device == "cpu":
        check_device(cfg, use_gpu=False)
    return cfg, facts


def fit(task: TrainTask, cfg, *, fail_at_step: int | None = None, on_ready: Callable[[Any], None] | None = None):
    """Check everything that can be checked on the driver, then train; returns the Ray Result.

    ``on_ready(checked config)`` runs once every check passed, before the workers start (the
    command writes the run folder's ``config.yaml`` there: bad input writes nothing).
    ``fail_at_step`` raises inside the loop at that step unless the run resumed from a checkpoint
    (fault injection for tests).
    """
    import ray
    import ray.data

    cfg, facts = preflight(task, cfg)
    init_ray()  # a cluster if there is one, else a local Ray on loopback
    ray.data.DataContext.get_current().enable_progress_bars = False  # the loop reports progress
    use_gpu = resolve_use_gpu(cfg)
    check_device(cfg, use_gpu)
    if len([n for n in ray.nodes() if n.get("Alive")]) == 1:  # a fixed single machine
        check_cpus_left(cfg, ray.cluster_resources().get("CPU", 0))
    log.info("%s training; run folder %s", task.name, cfg.run_dir().uri)
    if on_ready is not None:
        on_ready(cfg)
    return trainer(task, cfg, facts, use_gpu, fail_at_step).fit()
