"""Stream training batches from a faces table: Parquet -> decoded float tensors in [-1, 1], CHW."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from synthface_ray.data import faces, schema
from synthface_ray.data.transforms import DecodeReport, decode_batch
from synthface_ray.storage import StorageConfig


def _record_batches(uri: str, cfg: StorageConfig | None, read_rows: int, shuffle: bool,
                    rng: np.random.Generator, allow_incomplete: bool, key: str) -> Iterator[tuple[Any, int]]:
    """Yield (record batch, its first row's position in the dataset), shards in shuffled order."""
    dataset = faces.open_faces(uri, cfg, allow_incomplete=allow_incomplete, key=key)
    fragments = list(dataset.get_fragments())
    starts = np.cumsum([0] + [f.metadata.num_rows for f in fragments[:-1]]).tolist()
    order = rng.permutation(len(fragments)) if shuffle else range(len(fragments))
    columns = [schema.IMAGE, schema.LABEL, schema.SOURCE]
    for i in order:
        offset = starts[i]
        for batch in fragments[i].to_batches(columns=columns, batch_size=read_rows):
            yield batch, offset
            offset += batch.num_rows


def iter_training_batches(uri: str, batch_size: int, resolution: int | None = None, *,
                          cfg: StorageConfig | None = None, strict: bool = False,
                          shuffle: bool = False, shuffle_buffer: int = 4096, seed: int = 0,
                          drop_last: bool = False, report: DecodeReport | None = None,
                          allow_incomplete: bool = False, key: str = "input.allow_incomplete",
                          ) -> Iterator[dict[str, Any]]:
    """Yield ``{"image": float32 (B,3,H,W) in [-1,1], "label": int64 (B,), "source": int64 (B,)}``
    as torch tensors, streaming shard by shard.

    ``shuffle`` permutes shard order and mixes rows through a buffer of ``shuffle_buffer`` rows
    (seeded by ``seed``). Corrupt images are skipped and counted in ``report`` (see
    :class:`~synthface_ray.data.transforms.DecodeReport`), or raise when ``strict``. An
    incomplete dataset is refused unless ``allow_incomplete`` (``faces.dataset_files``; ``key``
    is the setting its message names).
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rng = np.random.default_rng(seed)
    report = report if report is not None else DecodeReport()
    pending: dict[str, list[np.ndarray]] = {}
    count = 0
    target = max(batch_size, shuffle_buffer if shuffle else batch_size)
    for record_batch, offset in _record_batches(uri, cfg, min(target, 1024), shuffle, rng, allow_incomplete, key):
        decoded = decode_batch(record_batch, resolution, strict=strict, row_offset=offset, report=report)
        for key, value in decoded.items():
            pending.setdefault(key, []).append(value)
        count += len(decoded["label"])
        while count >= target:
            merged = _merge(pending, rng if shuffle else None)
            head, rest = _split(merged, batch_size)
            yield {k: torch.from_numpy(v) for k, v in head.items()}
            pending, count = {k: [v] for k, v in rest.items()}, len(rest["label"])
    if count:
        merged = _merge(pending, rng if shuffle else None)
        while len(merged["label"]) >= batch_size or (len(merged["label"]) and not drop_last):
            head, merged = _split(merged, batch_size)
            yield {k: torch.from_numpy(v) for k, v in head.items()}


def _merge(pending: dict[str, list[np.ndarray]], rng: np.random.Generator | None) -> dict[str, np.ndarray]:
    merged = {k: np.concatenate(v) for k, v in pending.items()}
    if rng is not None:
        order = rng.permutation(len(merged["label"]))
        merged = {k: v[order] for k, v in merged.items()}
    return merged


def _split(arrays: dict[str, np.ndarray], n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    return ({k: np.ascontiguousarray(v[:n]) for k, v in arrays.items()},
            {k: v[n:] for k, v in arrays.items()})
