"""Generator training as a :class:`~synthface_ray.train.job.TrainTask`: the pre-flight data
checks, the Ray Data feed, sample previews and the EMA export. The loop, checkpoints, resume and
the ``TorchTrainer`` wiring are :mod:`synthface_ray.train.job`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from synthface_ray.config import ConfigError
from synthface_ray.data import faces, schema
from synthface_ray.data.ray_io import read_faces_dataset
from synthface_ray.train import job
from synthface_ray.train.generator import (
    GeneratorSession,
    TrainGeneratorConfig,
    load_context_embedder,
    load_label_embeddings,
)
from synthface_ray.train.preview import preview_grid


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

    dataset = faces.open_faces(cfg.data.path, cfg.storage, allow_incomplete=cfg.data.allow_incomplete,  # SchemaError
                               key="data.allow_incomplete")  # names missing columns, IncompleteDatasetError an interrupted run
    labels, max_source, rows = [], 0, 0
    for batch in dataset.to_batches(columns=[schema.LABEL, schema.SOURCE]):
        rows += batch.num_rows
        labels.append(np.unique(batch.column(schema.LABEL).to_numpy(zero_copy_only=False)))
        if batch.num_rows:
            max_source = max(max_source, pc.max(batch.column(schema.SOURCE)).as_py())
    unique = np.unique(np.concatenate(labels)) if labels else np.array([], np.int64)
    if rows == 0:
        raise ConfigError(f"data.path={cfg.data.path} has no rows: nothing to train on")
    _check_labels(cfg, unique)
    _check_context_model(cfg)
    _check_sources(cfg, int(max_source))
    job.check_global_batch(cfg, rows, "data.path")
    return DatasetFacts(rows=rows, identities=len(unique), max_label=int(unique[-1]),
                        max_source=int(max_source),
                        preview_labels=[int(x) for x in unique[: cfg.preview.identities]])


def _check_labels(cfg: TrainGeneratorConfig, labels: np.ndarray) -> None:
    """Condition ids (labels) must index the class table or the embedding table."""
    lo, hi = int(labels[0]), int(labels[-1])
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
        absent = labels[torch.isnan(table[torch.as_tensor(labels)]).any(dim=1).numpy()]
        if absent.size:
            raise ConfigError(
                f"data.label_embeddings has no embedding for label(s) {absent[:10].tolist()} "
                f"({absent.size} in all) of data.path: embed the same faces set "
                "(`synthface embed --model FR --data FACES --out IDS.parquet`)"
            )


def _check_context_model(cfg: TrainGeneratorConfig) -> None:
    """``data.context_fr_model`` must load and embed to the generator's ``embedding_dim``."""
    if not cfg.data.context_fr_model:
        return
    dim = load_context_embedder(cfg).config.embedding_dim
    if dim != cfg.generator.embedding_dim:
        raise ConfigError(
            f"data.context_fr_model={cfg.data.context_fr_model} embeds to {dim} dimensions but "
            f"generator.embedding_dim={cfg.generator.embedding_dim}: set generator.embedding_dim={dim} "
            "(the identities you sample from must come from the same FR model)"
        )


def _check_sources(cfg: TrainGeneratorConfig, max_source: int) -> None:
    k = cfg.generator.num_sources
    if k and max_source > k:
        raise ConfigError(
            f"data.path has source labels up to {max_source} but generator.num_sources={k}: set "
            f"generator.num_sources={max_source} (CASD: 0 = real, 1..k = synthetic sources)"
        )


def build_dataset(cfg: TrainGeneratorConfig, rows: int):
    """The training ``ray.data.Dataset``: read, randomise block order, decode in CPU tasks
    (materialised once when ``data.cache`` says the pixels fit)."""
    ds = read_faces_dataset(cfg.data.path, cfg.storage, cfg.data.allow_incomplete, "data.allow_incomplete",
                            num_cpus=job.READ_CPUS)
    ds = ds.randomize_block_order(seed=cfg.run.seed).map_batches(
        job.decode_rows, batch_format="pyarrow", num_cpus=job.READ_CPUS,
        fn_kwargs={"resolution": cfg.image_resolution(), "strict": cfg.data.strict},
    )
    ds = job.ordered(ds, cfg)
    return ds.materialize() if cfg.data.should_cache(rows, cfg.image_resolution()) else ds


def _datasets(cfg: TrainGeneratorConfig, facts: DatasetFacts) -> dict:
    return {"train": build_dataset(cfg, facts.rows)}


def _session(cfg: TrainGeneratorConfig, facts: DatasetFacts, rank: int, world: int,
             device: torch.device, precision: str) -> GeneratorSession:
    return GeneratorSession(cfg, rank, world, device, precision)


def _batches(cfg: TrainGeneratorConfig, facts: DatasetFacts) -> Iterator[list[dict[str, torch.Tensor]]]:
    """Endless groups of ``grad_accum`` micro-batches of this worker's shard."""
    import ray.train

    shard = ray.train.get_dataset_shard("train")
    micro = job.endless_batches(shard, cfg.optim.micro_batch, cfg.data.shuffle_buffer, job.feed_seed(cfg))
    return job.grouped(micro, cfg.optim.grad_accum)


# rank 0: previews and export ------------------------------------------------------------------
def _preview(session: GeneratorSession, monitor, labels: list[int]) -> None:
    table = None if session.cond_table is None else session.cond_table.cpu()
    grid = preview_grid(session.ema_generator(session.device), session.objective, labels,
                        session.cfg.preview, table, session.vae)
    loc = monitor.image(session.step, grid)
    print(f"step {session.step}: sample grid {loc.uri}", flush=True)


def _on_step(session: GeneratorSession, monitor, facts: DatasetFacts) -> None:
    every = session.cfg.preview.every
    if every and session.step % every == 0:
        _preview(session, monitor, facts.preview_labels)


def _finish(session: GeneratorSession, monitor, facts: DatasetFacts) -> None:
    """The last sample grid (unless this step already has one), the loss curve, the export."""
    every = session.cfg.preview.every
    if every and session.step % every:
        _preview(session, monitor, facts.preview_labels)
    monitor.curve()
    dest = session.export(session.cfg.export_dir())
    print(f"exported the EMA generator (step {session.step}) to {dest.uri}", flush=True)


TASK = job.TrainTask(
    name="generator", config_cls=TrainGeneratorConfig, check=check_dataset, datasets=_datasets,
    session=_session, batches=_batches, on_step=_on_step, finish=_finish,
)


def fit(cfg: TrainGeneratorConfig, *, fail_at_step: int | None = None):
    """Train the generator (:func:`synthface_ray.train.job.fit`); returns the Ray Result."""
    return job.fit(TASK, cfg, fail_at_step=fail_at_step)
