"""The Ray edge of generator training: checks before any worker starts, the Ray Data feed, the
``train_loop_per_worker`` and the ``TorchTrainer`` wiring (Ray Train V2 + DeepSpeed).

Resume: the run folder is ``<run.storage_path>/<run.name>``; running the same config again picks
up the latest checkpoint there (``ray.train.get_checkpoint``), including after a crash. Within one
``fit``, ``FailureConfig(max_failures)`` restarts the workers from the latest checkpoint.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from synthface_ray.config import ConfigError, from_dict, to_dict
from synthface_ray.data import faces, schema
from synthface_ray.train.generator import (
    GeneratorSession,
    TrainGeneratorConfig,
    load_label_embeddings,
)

log = logging.getLogger(__name__)
READ_CPUS = 0.25  # Ray Data read/decode tasks: fractional, so training workers cannot starve them
FAULT_DELAY_S = 5.0  # see _inject_failure


@dataclass
class DatasetFacts:
    """What the pre-flight check learned about the training data."""

    rows: int
    identities: int
    max_label: int
    max_source: int
    preview_labels: list[int]


# checks before any worker starts --------------------------------------------------------------
def check_dataset(cfg: TrainGeneratorConfig) -> DatasetFacts:
    """Schema, label and source ranges, and size of the training data, against the config.

    Streams only the ``label`` and ``source`` columns. Raises ``SchemaError``/``ConfigError``
    naming what is wrong and how to fix it.
    """
    import pyarrow.compute as pc

    dataset = faces.open_faces(cfg.data.path, cfg.storage)  # SchemaError names missing columns
    labels, max_source, rows = [], 0, 0
    for batch in dataset.to_batches(columns=[schema.LABEL, schema.SOURCE]):
        rows += batch.num_rows
        labels.append(np.unique(batch.column(schema.LABEL).to_numpy(zero_copy_only=False)))
        if batch.num_rows:
            max_source = max(max_source, pc.max(batch.column(schema.SOURCE)).as_py())
    unique = np.unique(np.concatenate(labels)) if labels else np.array([], np.int64)
    if rows == 0:
        raise ConfigError(f"data.path={cfg.data.path} has no rows: nothing to train on")
    _check_labels(cfg, int(unique[0]), int(unique[-1]))
    _check_sources(cfg, int(max_source))
    need = cfg.optim.micro_batch * cfg.scaling.num_workers
    if rows < need:
        raise ConfigError(
            f"data.path has {rows} rows but one step needs optim.micro_batch x scaling.num_workers "
            f"= {need}: lower optim.micro_batch or scaling.num_workers"
        )
    return DatasetFacts(rows=rows, identities=len(unique), max_label=int(unique[-1]),
                        max_source=int(max_source),
                        preview_labels=[int(x) for x in unique[: cfg.preview.identities]])


def _check_labels(cfg: TrainGeneratorConfig, lo: int, hi: int) -> None:
    """Condition ids (labels) must index the class table or the embedding table."""
    if lo < 0:
        raise ConfigError(f"data.path has a negative label ({lo}): labels must be identity ids >= 0")
    gen = cfg.generator
    if gen.condition == "class" and hi >= gen.num_identities:
        raise ConfigError(
            f"condition ids out of range: data.path has labels up to {hi} but "
            f"generator.num_identities={gen.num_identities}; set generator.num_identities={hi + 1} "
            "(or more)"
        )
    if gen.condition == "embedding":
        table = load_label_embeddings(cfg.data.label_embeddings, cfg.storage)
        if table.shape[0] <= hi or table.shape[1] != gen.embedding_dim:
            raise ConfigError(
                f"data.label_embeddings has shape {tuple(table.shape)} but labels go up to {hi} and "
                f"generator.embedding_dim={gen.embedding_dim}: need at least {hi + 1} rows of "
                f"{gen.embedding_dim} floats"
            )


def _check_sources(cfg: TrainGeneratorConfig, max_source: int) -> None:
    k = cfg.generator.num_sources
    if k and max_source > k:
        raise ConfigError(
            f"data.path has source labels up to {max_source} but generator.num_sources={k}: set "
            f"generator.num_sources={max_source} (CASD: 0 = real, 1..k = synthetic sources)"
        )


def check_device(cfg: TrainGeneratorConfig, use_gpu: bool) -> None:
    """Precision the workers' device cannot run (fp16 on CPU) fails here, not in a worker."""
    if not use_gpu and cfg.deepspeed.precision == "fp16":
        raise ConfigError(
            "deepspeed.precision=fp16 is not supported on CPU workers (DeepSpeed refuses it): use "
            "bf16 or fp32, or run on GPUs (scaling.device=cuda)"
        )


def check_cpus_left(cfg: TrainGeneratorConfig, cluster_cpus: float) -> None:
    """Ray Data's file listing and read tasks need a whole free CPU beside the training workers;
    without it the data feed never starts and training hangs silently (PLATFORM_NOTES)."""
    taken = cfg.scaling.num_workers * cfg.scaling.cpus_per_worker
    if cluster_cpus - taken < 1:
        raise ConfigError(
            f"scaling.num_workers x scaling.cpus_per_worker = {taken:g} of the cluster's "
            f"{cluster_cpus:g} CPUs leaves less than 1 CPU for the Ray Data read tasks, which "
            "would hang; lower scaling.cpus_per_worker (e.g. 0.5) or scaling.num_workers"
        )


def resolve_use_gpu(cfg: TrainGeneratorConfig) -> bool:
    """``scaling.device``: auto = GPUs when the (initialised) Ray cluster has any."""
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    if cfg.scaling.device == "cuda" and gpus < 1:  # an autoscaler may still add GPU nodes
        log.warning("scaling.device=cuda but the Ray cluster has no GPUs yet: the workers wait "
                    "until GPU nodes join (use scaling.device=auto or cpu to run without)")
    return cfg.scaling.device == "cuda" or (cfg.scaling.device == "auto" and gpus >= 1)


# Ray Data feed --------------------------------------------------------------------------------
def _decode(table, resolution: int, strict: bool) -> dict[str, np.ndarray]:
    """Ray Data map: faces rows -> uint8 NHWC pixels (4x smaller than floats in the object store
    and in transfers; the worker scales them to [-1, 1]), label, source."""
    from synthface_ray.data.transforms import DecodeReport, decode_batch

    report = DecodeReport()
    out = decode_batch(table, resolution, strict=strict, report=report, model_range=False)
    if report.skipped:
        log.warning("skipped %d corrupt image(s) in a training batch: %s", report.skipped,
                    report.summary())
    return out


def should_cache(cfg: TrainGeneratorConfig, rows: int) -> bool:
    """``data.cache``: keep the decoded pixels in the object store after the first pass (auto: when
    they fit in ``data.cache_max_gb``), so later epochs skip reading and decoding."""
    size_gb = rows * cfg.image_resolution() ** 2 * 3 / 2**30
    return cfg.data.cache == "yes" or (cfg.data.cache == "auto" and size_gb <= cfg.data.cache_max_gb)


def build_dataset(cfg: TrainGeneratorConfig, rows: int):
    """The training ``ray.data.Dataset``: read, randomise block order, decode in CPU tasks
    (materialised once when :func:`should_cache`)."""
    from synthface_ray.data.ray_io import read_faces_dataset

    ds = read_faces_dataset(cfg.data.path, cfg.storage, num_cpus=READ_CPUS)
    ds = ds.randomize_block_order(seed=cfg.run.seed).map_batches(
        _decode, batch_format="pyarrow", num_cpus=READ_CPUS,
        fn_kwargs={"resolution": cfg.image_resolution(), "strict": cfg.data.strict},
    )
    return ds.materialize() if should_cache(cfg, rows) else ds


def _step_batches(shard, cfg: TrainGeneratorConfig) -> Iterator[list[dict[str, torch.Tensor]]]:
    """Endless groups of ``grad_accum`` micro-batches, epoch after epoch."""
    group: list[dict[str, torch.Tensor]] = []
    while True:
        empty = True
        for batch in shard.iter_torch_batches(
            batch_size=cfg.optim.micro_batch, drop_last=True,
            local_shuffle_buffer_size=cfg.data.shuffle_buffer or None,
        ):
            empty = False
            group.append(batch)
            if len(group) == cfg.optim.grad_accum:
                yield group
                group = []
        if empty:
            raise RuntimeError("this worker's data shard gave no full micro-batch in an epoch")


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

    def metrics(self, session: GeneratorSession) -> dict[str, Any]:
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


def _report(session: GeneratorSession, metrics: dict[str, Any], checkpoint: bool, monitor) -> None:
    """``ray.train.report`` from every rank; with a checkpoint every rank saves its share."""
    import ray.train

    if monitor is not None:
        monitor.log(metrics)
        cfg = session.cfg
        print(f"step {metrics['step']}/{cfg.optim.max_steps}  loss {metrics['loss']:.4f}  "
              f"{metrics['steps_per_s']:.2f} steps/s  {metrics['samples_per_s']:.0f} samples/s"
              + ("  [checkpoint]" if checkpoint else ""), flush=True)
    if not checkpoint:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="synthface-ckpt-") as tmp:
        session.save(tmp)
        if monitor is not None:
            monitor.sync()
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _preview(session: GeneratorSession, monitor, labels: list[int]) -> None:
    from synthface_ray.train.preview import preview_grid

    table = None if session.cond_table is None else session.cond_table.cpu()
    grid = preview_grid(session.ema_generator(session.device), session.objective, labels,
                        session.cfg.preview, table, session.vae)
    loc = monitor.image(session.step, grid)
    print(f"step {session.step}: sample grid {loc.uri}", flush=True)


def _setup(loop_config: dict[str, Any]) -> tuple[GeneratorSession, Any]:
    """Build the session on this worker and restore the latest checkpoint, if any."""
    import ray.train
    import ray.train.torch

    from synthface_ray.train.deepspeed import init_distributed, resolve_precision
    from synthface_ray.train.monitor import Monitor

    cfg = from_dict(TrainGeneratorConfig, loop_config["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    threads = cfg.scaling.torch_threads or max(1, math.floor(cfg.scaling.cpus_per_worker))
    torch.set_num_threads(threads)
    init_distributed(cfg.deepspeed, "nccl" if device.type == "cuda" else "gloo")
    session = GeneratorSession(cfg, rank, world, device, resolve_precision(cfg.deepspeed.precision, device))
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            session.load(directory)
        if rank == 0:
            print(f"resumed from the checkpoint at step {session.step}", flush=True)
    monitor = Monitor(cfg.run_dir(), session.step) if rank == 0 else None
    return session, monitor


def _inject_failure(step: int) -> None:
    """Fault injection for tests. Ray Train's controller collects reported checkpoints when it
    polls the workers (every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``, 2 s by default); a crash
    sooner than that after a checkpoint may lose it. Wait out two polls, then fail."""
    time.sleep(FAULT_DELAY_S)
    raise RuntimeError(f"injected failure at step {step} (fail_at_step, for tests)")


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point: train to ``optim.max_steps``, report, checkpoint, export (rank 0)."""
    import ray.train

    session, monitor = _setup(loop_config)
    cfg, labels = session.cfg, loop_config["preview_labels"]
    start, fail_at = session.step, loop_config.get("fail_at_step")
    window = _Window(session.device)
    batches = _step_batches(ray.train.get_dataset_shard("train"), cfg)
    while session.step < cfg.optim.max_steps:
        window.add(session.train_step(next(batches)))
        step = session.step
        checkpoint = step % cfg.run.checkpoint_every == 0 or step == cfg.optim.max_steps
        if checkpoint or step % cfg.run.report_every == 0:
            _report(session, {**window.metrics(session), "resumed_from": start}, checkpoint, monitor)
            window.reset()
        if monitor is not None and cfg.preview.every and step % cfg.preview.every == 0:
            _preview(session, monitor, labels)
        if fail_at is not None and step == fail_at and start == 0:  # only in a fresh run
            _inject_failure(step)
    if monitor is not None:
        if cfg.preview.every and session.step % cfg.preview.every:
            _preview(session, monitor, labels)
        monitor.curve()
        dest = session.export(cfg.export_dir())
        print(f"exported the EMA generator (step {session.step}) to {dest.uri}", flush=True)
        monitor.close()


# driver ---------------------------------------------------------------------------------------
def trainer(cfg: TrainGeneratorConfig, facts: DatasetFacts, use_gpu: bool,
            fail_at_step: int | None = None):
    """The ``TorchTrainer`` for ``cfg`` (not started)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    root = cfg.run_dir()
    parent = root.path.rsplit("/", 1)[0]
    sc = cfg.scaling
    resources = {"CPU": sc.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": to_dict(cfg, redact=False), "fail_at_step": fail_at_step,
                           "preview_labels": facts.preview_labels},
        scaling_config=ScalingConfig(num_workers=sc.num_workers, use_gpu=use_gpu,
                                     resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(
            name=cfg.run.name, storage_path=parent, storage_filesystem=root.fs,
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.keep_checkpoints),
        ),
        datasets={"train": build_dataset(cfg, facts.rows)},
    )


def fit(cfg: TrainGeneratorConfig, *, fail_at_step: int | None = None):
    """Check everything that can be checked on the driver, then train; returns the Ray Result.

    ``fail_at_step`` raises inside the loop at that step unless the run resumed from a checkpoint
    (fault injection for tests).
    """
    import ray
    import ray.data

    cfg = cfg.with_absolute_paths()
    facts = check_dataset(cfg)
    if cfg.scaling.device == "cpu":
        check_device(cfg, use_gpu=False)
    if not ray.is_initialized():
        ray.init()
    ray.data.DataContext.get_current().enable_progress_bars = False  # the loop reports progress
    use_gpu = resolve_use_gpu(cfg)
    check_device(cfg, use_gpu)
    if len([n for n in ray.nodes() if n.get("Alive")]) == 1:  # a fixed single machine
        check_cpus_left(cfg, ray.cluster_resources().get("CPU", 0))
    log.info("training on %d rows of %d identities; run folder %s", facts.rows, facts.identities,
             cfg.run_dir().uri)
    return trainer(cfg, facts, use_gpu, fail_at_step).fit()
