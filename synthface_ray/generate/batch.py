"""Pure per-batch work of the generation pipeline (no Ray): plan rows -> sampler conditions ->
pixels, FR consistency scores, encoded faces rows.

A batch is a ``pyarrow.Table`` of plan rows (``synthface_ray.mining.plan`` columns); every
function here returns a new table with more columns, so the Ray stages are one-line wrappers.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from synthface_ray.config import to_dict
from synthface_ray.data import schema
from synthface_ray.mining.plan import IDENTITY_ID, MIX_IDS, MIX_WEIGHTS, NEGATIVE_ID, ROW_ID, SEED

PLAN_COLUMNS = (ROW_ID, IDENTITY_ID, MIX_IDS, MIX_WEIGHTS, NEGATIVE_ID, SEED)
PIXELS, T0, NFE, FR_COSINE, SAMPLER, MODEL = "pixels", "t0", "nfe", "fr_cosine", "sampler", "model"
GATE_COLUMNS = ("attempts", "gate_passed")  # written when the consistency gate ran (generate/gate.py)
SOURCE_SYNTHETIC = 1
IMAGE_FORMATS = {"png": "PNG", "jpeg": "JPEG"}


@dataclass(frozen=True)
class IdentityTable:
    """Identity embeddings by id (sorted, for vectorised lookup)."""

    ids: np.ndarray
    embeddings: np.ndarray

    @classmethod
    def build(cls, ids, embeddings) -> IdentityTable:
        ids = np.asarray(ids, np.int64)
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        if len(ids) > 1 and (np.diff(ids) == 0).any():
            dup = ids[1:][np.diff(ids) == 0][0]
            raise ValueError(f"identities table has identity_id {dup} more than once")
        return cls(ids, np.ascontiguousarray(np.asarray(embeddings, np.float32)[order]))

    def missing(self, query) -> np.ndarray:
        """The ids of ``query`` not in the table."""
        q = np.unique(np.asarray(query, np.int64))
        pos = np.searchsorted(self.ids, q).clip(max=max(len(self.ids) - 1, 0))
        return q[(len(self.ids) == 0) | (self.ids[pos] != q)]

    def lookup(self, query) -> np.ndarray:
        """Embeddings (len(query), D) of ids that must all be present."""
        absent = self.missing(query)
        if absent.size:
            raise KeyError(f"identity ids {absent[:10].tolist()} are not in the identities table")
        return self.embeddings[np.searchsorted(self.ids, np.asarray(query, np.int64))]


def mix_lists(batch: pa.Table) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each row's positive identities and weights (ScoreMix lambdas) as arrays."""
    ids = [np.asarray(v, np.int64) for v in batch.column(MIX_IDS).to_pylist()]
    weights = [np.asarray(v, np.float64) for v in batch.column(MIX_WEIGHTS).to_pylist()]
    return ids, weights


def conditions(batch: pa.Table, contexts_of, empty: torch.Tensor):
    """The :class:`~synthface_ray.sampling.composite.Conditions` of a batch of plan rows.

    ``contexts_of(ids)`` maps distinct identity ids (K,) to contexts (K, tokens, dim); each row's
    mix and negative refer to them by index."""
    from synthface_ray.sampling.composite import Conditions  # lazy: imports diffusers

    mixes, weights = mix_lists(batch)
    negatives = batch.column(NEGATIVE_ID).to_numpy()
    distinct = np.unique(np.concatenate([*mixes, negatives[negatives >= 0]]))
    index = {int(i): k for k, i in enumerate(distinct)}
    m = max(len(ids) for ids in mixes)
    mix_ids = np.full((len(mixes), m), -1, np.int64)
    mix_w = np.zeros((len(mixes), m), np.float64)
    for r, (ids, w) in enumerate(zip(mixes, weights, strict=True)):
        mix_ids[r, :len(ids)] = [index[int(i)] for i in ids]
        mix_w[r, :len(ids)] = w
    neg = np.array([index[int(n)] if n >= 0 else -1 for n in negatives], np.int64)
    return Conditions(contexts=contexts_of(distinct), empty=empty, mix_ids=torch.from_numpy(mix_ids),
                      mix_weights=torch.from_numpy(mix_w), seeds=torch.tensor(batch.column(SEED).to_numpy()),
                      negative_ids=torch.from_numpy(neg))


def context_lookup(gen, identities: IdentityTable | None):
    """``contexts_of`` for :func:`conditions`: class ids for a class-conditioned generator, the
    identities' embeddings for an embedding-conditioned one."""
    if gen.model.config.condition == "class":
        return lambda ids: gen.contexts(torch.as_tensor(ids, dtype=torch.long))
    if identities is None:
        raise ValueError("an embedding-conditioned generator needs input.identities")
    return lambda ids: gen.contexts(torch.from_numpy(identities.lookup(ids)))


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """float NCHW in about [-1, 1] -> uint8 NHWC (clamped; rounded to nearest)."""
    x = images.detach().float().clamp(-1, 1).cpu().numpy()
    return np.clip((x + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def sample_batch(gen, batch: pa.Table, sampler, identities: IdentityTable | None, *,
                 micro_batch: int, device, dtype) -> pa.Table:
    """Generate every row of ``batch`` in fixed micro-batches (the same partition on every run,
    so a re-generated row is bit-identical); adds ``pixels`` (raw uint8 HxWx3 bytes), ``t0``, ``nfe``."""
    from synthface_ray.sampling.composite import sample  # lazy: imports diffusers

    lookup = context_lookup(gen, identities)
    pixels, t0, nfe = [], [], []
    for start in range(0, batch.num_rows, micro_batch):
        part = batch.slice(start, micro_batch)
        cond = conditions(part, lookup, gen.empty)
        out = sample(gen.net, gen.param, cond, sampler, gen.shape, device=device, dtype=dtype, unet=gen.unet)
        pixels.extend(p.tobytes() for p in to_pixels(out.images))
        t0.append(out.t0.numpy().astype(np.int32))
        nfe.append(out.nfe.numpy().astype(np.int32))
    return (batch.append_column(PIXELS, pa.array(pixels, pa.binary()))
            .append_column(T0, pa.array(np.concatenate(t0), pa.int32()))
            .append_column(NFE, pa.array(np.concatenate(nfe), pa.int32())))


def pixel_array(batch: pa.Table, size: int) -> np.ndarray:
    """The ``pixels`` column as uint8 (B, size, size, 3)."""
    raw = b"".join(batch.column(PIXELS).to_pylist())
    return np.frombuffer(raw, np.uint8).reshape(batch.num_rows, size, size, 3)


def reference_embeddings(batch: pa.Table, identities: IdentityTable) -> np.ndarray:
    """Each row's identity in FR space: its identity's embedding, or for a ScoreMix row the
    normalised lambda-weighted sum of its sources' embeddings (unit rows)."""
    mixes, weights = mix_lists(batch)
    refs = np.stack([(w[:, None] * identities.lookup(ids)).sum(0) for ids, w in zip(mixes, weights, strict=True)])
    return (refs / np.linalg.norm(refs, axis=1, keepdims=True).clip(min=1e-12)).astype(np.float32)


def resize_pixels(pixels: np.ndarray, size: int) -> np.ndarray:
    """uint8 NHWC resized (bicubic, as training data is) to ``size``; unchanged if it already is."""
    if pixels.shape[1] == size:
        return pixels
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(p).resize((size, size), Image.Resampling.BICUBIC)) for p in pixels])


def image_embeddings(embedder, pixels: np.ndarray) -> np.ndarray:
    """Unit FR embeddings of uint8 NHWC images (resized to the FR model's input size)."""
    return embedder(resize_pixels(pixels, embedder.config.input_size))


def score_batch(embedder, batch: pa.Table, identities: IdentityTable, size: int) -> pa.Table:
    """Adds ``fr_cosine``: the cosine between each image's FR embedding and its identity's."""
    cos = (image_embeddings(embedder, pixel_array(batch, size)) * reference_embeddings(batch, identities)).sum(1)
    return batch.append_column(FR_COSINE, pa.array(cos.astype(np.float32), pa.float32()))


def encode(pixels: np.ndarray, fmt: str, quality: int) -> bytes:
    """One uint8 HxWx3 image as PNG or JPEG bytes (no metadata: same pixels, same bytes)."""
    from PIL import Image

    buf = io.BytesIO()
    options = {"compress_level": 6} if fmt == "png" else {"quality": quality, "subsampling": 0}
    Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(buf, format=IMAGE_FORMATS[fmt], **options)
    return buf.getvalue()


def faces_rows(batch: pa.Table, *, size: int, fmt: str, quality: int, sampler_json: str,
               model_id: str) -> pa.Table:
    """The generated-table rows of a batch: faces columns (``label`` = identity_id, ``source`` =
    1 synthetic), the plan columns, ``fr_cosine`` (null without an FR model), ``t0``, ``nfe``,
    ``sampler`` (resolved config JSON), ``model`` (checkpoint id) and, when the consistency gate
    ran, ``attempts`` and ``gate_passed``."""
    pixels = pixel_array(batch, size)
    row_ids = batch.column(ROW_ID).to_numpy()
    n = batch.num_rows
    fr = batch.column(FR_COSINE) if FR_COSINE in batch.column_names else pa.nulls(n, pa.float32())
    extra = {name: batch.column(name) for name in PLAN_COLUMNS}
    extra.update({FR_COSINE: fr, T0: batch.column(T0), NFE: batch.column(NFE),
                  SAMPLER: pa.array([sampler_json] * n, pa.string()),
                  MODEL: pa.array([model_id] * n, pa.string())})
    extra.update({name: batch.column(name) for name in GATE_COLUMNS if name in batch.column_names})
    extra = {k: (v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v) for k, v in extra.items()}
    return schema.faces_table([encode(p, fmt, quality) for p in pixels], batch.column(IDENTITY_ID).to_pylist(),
                              SOURCE_SYNTHETIC, [f"{int(r)}.{fmt}" for r in row_ids], extra)


def sampler_json(sampler) -> str:
    """The resolved sampler config as canonical JSON (stored per row)."""
    return json.dumps(to_dict(sampler, redact=False), sort_keys=True, separators=(",", ":"))


__all__ = [
    "FR_COSINE", "IdentityTable", "PLAN_COLUMNS", "conditions", "context_lookup", "encode", "faces_rows",
    "image_embeddings",
    "pixel_array", "reference_embeddings", "sample_batch", "sampler_json", "score_batch", "to_pixels",
]
