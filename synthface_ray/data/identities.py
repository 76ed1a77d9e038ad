"""The identities table: one unit-norm identity embedding per row (``shared/DESIGN.md``).

Columns: ``identity_id`` int64 (unique), ``embedding`` fixed_size_list<float32>[D] (unit L2 norm),
``origin`` string (how it was made: ``class_center`` from an FR head or from averaged embeddings
of a labelled set, later ``sampled``, ``mixed``, ...). Mining, identity contexts for the
generator and the generation plan all read it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from synthface_ray import storage
from synthface_ray.data.schema import SchemaError

IDENTITY_ID, EMBEDDING, ORIGIN = "identity_id", "embedding", "origin"
CLASS_CENTER = "class_center"


def identities_table(ids, embeddings, origin: str | list[str]) -> pa.Table:
    """Build an identities table; embeddings are L2-normalised here, ids must be unique."""
    ids = np.asarray(ids, np.int64)
    emb = np.asarray(embeddings, np.float32)
    if emb.ndim != 2 or len(emb) != len(ids):
        raise ValueError(f"embeddings must be (N, D) with N = {len(ids)} ids, got {emb.shape}")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("identity ids must be unique")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    if (norms == 0).any() or not np.isfinite(emb).all():
        raise ValueError("embeddings must be finite and non-zero to be normalised")
    emb = emb / norms
    origins = [origin] * len(ids) if isinstance(origin, str) else list(origin)
    flat = pa.array(emb.reshape(-1), pa.float32())
    return pa.table({
        IDENTITY_ID: pa.array(ids, pa.int64()),
        EMBEDDING: pa.FixedSizeListArray.from_arrays(flat, emb.shape[1]),
        ORIGIN: pa.array(origins, pa.string()),
    })


def embeddings_of(table: pa.Table) -> np.ndarray:
    """The (N, D) float32 embedding matrix of an identities table (schema-checked)."""
    validate_identities_schema(table.schema)
    col = table.column(EMBEDDING).combine_chunks()
    return col.values.to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)


def check_identities(ids: np.ndarray, emb: np.ndarray, where: str) -> None:
    """Refuse what no reader can use: a repeated ``identity_id`` (every consumer keys on it), an
    embedding with NaN or inf, or one of zero norm (it has no direction). Names the first
    offending identity and how many there are; ``where`` names the table."""
    ids, emb = np.asarray(ids), np.asarray(emb)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise SchemaError(f"{where}: identity_id {dup[0]} appears {counts[counts > 1][0]} times "
                          f"({len(dup)} repeated id(s)); every identity must have one row")
    with np.errstate(all="ignore"):
        norms = np.sqrt(np.einsum("ij,ij->i", emb, emb, dtype=np.float64))
    for bad, what in ((~np.isfinite(norms), "NaN or inf values"), (norms == 0, "an all-zero embedding")):
        if bad.any():
            raise SchemaError(f"{where}: identity_id {ids[np.flatnonzero(bad)[0]]} has {what} "
                              f"({int(bad.sum())} of {len(ids)} rows); regenerate the table or drop "
                              "those rows")


def read_identities(uri: str, cfg=None) -> tuple[np.ndarray, np.ndarray]:
    """``(identity_ids (N,) int64, embeddings (N, D) float32)`` of an identities table (one
    Parquet file, local or s3://), refused (:class:`SchemaError`, naming the file) when it is
    not Parquet, lacks a column, repeats an id or holds an unusable embedding
    (:func:`check_identities`)."""
    import io

    import pyarrow.parquet as pq

    loc = storage.resolve(uri, cfg)
    if not storage.exists(loc):
        raise FileNotFoundError(f"identities table {loc.uri} does not exist")
    try:
        table = pq.read_table(io.BytesIO(storage.read_bytes(loc)))
    except pa.ArrowInvalid as err:
        raise SchemaError(f"{loc.uri} is not a Parquet identities table ({err}); make one with "
                          "`synthface identities`") from None
    try:
        ids, emb = table.column(IDENTITY_ID).to_numpy(), embeddings_of(table)
    except SchemaError as err:
        raise SchemaError(f"{loc.uri}: {err}") from None
    check_identities(ids, emb, loc.uri)
    return ids.astype(np.int64), emb


def validate_identities_schema(schema: pa.Schema) -> None:
    """Raise :class:`SchemaError` naming each missing or mistyped identities column."""
    problems = []
    if schema.get_field_index(IDENTITY_ID) < 0 or not pa.types.is_integer(schema.field(IDENTITY_ID).type):
        problems.append(f"{IDENTITY_ID} (int64)")
    idx = schema.get_field_index(EMBEDDING)
    typ = schema.field(EMBEDDING).type if idx >= 0 else None
    if typ is None or not pa.types.is_fixed_size_list(typ) or not pa.types.is_floating(typ.value_type):
        problems.append(f"{EMBEDDING} (fixed_size_list<float32>[D])")
    if schema.get_field_index(ORIGIN) < 0:
        problems.append(f"{ORIGIN} (string)")
    if problems:
        raise SchemaError("identities table lacks or mistypes: " + ", ".join(problems))


CENTRE_CHUNK = 16_384  # rows of :func:`class_centers` in float64 at a time


def class_centers(embeddings, labels) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, centres)``: the normalised mean of each label's L2-normalised embeddings."""
    emb = np.asarray(embeddings)
    ids, inverse = np.unique(np.asarray(labels), return_inverse=True)
    sums = np.zeros((len(ids), emb.shape[1]))
    for start in range(0, len(emb), CENTRE_CHUNK):  # float64 a chunk at a time: memory ~ centres + a chunk
        part = emb[start:start + CENTRE_CHUNK].astype(np.float64)
        part /= np.linalg.norm(part, axis=1, keepdims=True).clip(1e-12)
        codes = inverse[start:start + CENTRE_CHUNK]
        order = np.argsort(codes, kind="stable")
        first = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
        sums[codes[order][first]] += np.add.reduceat(part[order], first, axis=0)
    return ids.astype(np.int64), (sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


__all__ = [
    "CLASS_CENTER", "EMBEDDING", "IDENTITY_ID", "ORIGIN", "check_identities", "class_centers",
    "embeddings_of", "identities_table", "read_identities", "validate_identities_schema",
]
