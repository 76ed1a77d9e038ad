"""Column names and pyarrow schemas of the project's Parquet tables.

Column names are part of the public interface (see ``shared/DESIGN.md``): every stage reads and
writes these tables, so they are spelled once, here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import pyarrow as pa

# faces table --------------------------------------------------------------------------------
IMAGE = "image"
LABEL = "label"
SOURCE = "source"
IDENTITY = "identity"

#: ``image`` is struct<bytes, path>: the Arrow storage of a Hugging Face ``datasets`` Image. It is
#: written as a nullable field with :data:`HF_METADATA` (see :func:`storage_schema`): ``datasets``
#: decodes it to PIL only then (it ignores its metadata for a non-nullable field).
IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])

#: Schema metadata key that Hugging Face ``datasets`` reads its features from.
HF_METADATA = b"huggingface"
#: The feature it declares for ``image`` (other columns: ``datasets`` infers them from their Arrow types).
HF_IMAGE_FEATURE = {"_type": "Image"}

FACES_REQUIRED = {
    IMAGE: IMAGE_TYPE,
    LABEL: pa.int64(),
    SOURCE: pa.int64(),
}
FACES_OPTIONAL = {IDENTITY: pa.string()}

#: source label values (CASD): 0 is real data, 1..k are synthetic sources.
SOURCE_REAL = 0


class SchemaError(ValueError):
    """A table lacks required columns or has them with the wrong type."""


def faces_schema(extra: Sequence[pa.Field] = ()) -> pa.Schema:
    """The faces schema as written: required columns first, then ``extra`` fields; ``image``
    nullable and declared an Image for Hugging Face ``datasets`` (see :func:`storage_schema`)."""
    fields = [pa.field(name, typ, nullable=False) for name, typ in FACES_REQUIRED.items()]
    return storage_schema(pa.schema(fields + list(extra)))


def hf_metadata(existing: bytes | None = None) -> bytes:
    """The ``huggingface`` schema metadata declaring ``image`` an Image feature.

    Features that ``existing`` (a previous value of that metadata) declares for other columns
    are kept; a value that is not such JSON is replaced."""
    try:
        meta = json.loads(existing) if existing else {}
    except (TypeError, ValueError):
        meta = {}
    if not isinstance(meta, dict):
        meta = {}
    info = meta.get("info") if isinstance(meta.get("info"), dict) else {}
    features = info.get("features") if isinstance(info.get("features"), dict) else {}
    meta["info"] = {**info, "features": {**features, IMAGE: HF_IMAGE_FEATURE}}
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()


def storage_schema(table_schema: pa.Schema) -> pa.Schema:
    """The schema a faces table is written with: ``table_schema`` with ``image`` as
    :data:`IMAGE_TYPE` in a nullable field and the ``huggingface`` metadata (:func:`hf_metadata`),
    so that ``datasets`` reads ``image`` as an Image. Other fields and metadata are kept.

    ``image`` stays required: :func:`check_no_null_images` refuses null rows before writing.
    Raises :class:`SchemaError` when ``table_schema`` has no ``image`` column."""
    idx = table_schema.get_field_index(IMAGE)
    if idx < 0:
        raise SchemaError(f"schema has no '{IMAGE}' column: {', '.join(table_schema.names) or 'no columns'}")
    field = table_schema.field(idx)
    out = table_schema.set(idx, pa.field(IMAGE, IMAGE_TYPE, nullable=True, metadata=field.metadata))
    metadata = dict(table_schema.metadata or {})
    metadata[HF_METADATA] = hf_metadata(metadata.get(HF_METADATA))
    return out.with_metadata(metadata)


def check_no_null_images(table: pa.Table | pa.RecordBatch, where: str = "table") -> None:
    """Raise ``ValueError`` when any row's ``image`` is null (the field is nullable on disk, for
    Hugging Face ``datasets``, but every face row needs its image)."""
    nulls = table.column(IMAGE).null_count
    if nulls:
        raise ValueError(f"{where}: {nulls} of {table.num_rows} rows have a null '{IMAGE}'; "
                         "every face row needs its encoded image bytes")


def _describe(expected: dict[str, pa.DataType]) -> str:
    return ", ".join(f"{name}: {typ}" for name, typ in expected.items())


def validate_faces_schema(schema: pa.Schema, where: str = "table") -> None:
    """Raise :class:`SchemaError` naming every missing or wrongly typed faces column."""
    problems = []
    for name, typ in {**FACES_REQUIRED, **FACES_OPTIONAL}.items():
        idx = schema.get_field_index(name)
        if idx < 0:
            if name in FACES_REQUIRED:
                problems.append(f"missing column '{name}'")
            continue
        actual = schema.field(idx).type
        if not _compatible(actual, typ):
            problems.append(f"column '{name}' has type {actual}, expected {typ}")
    if problems:
        raise SchemaError(
            f"{where} is not a faces table: {'; '.join(problems)}. "
            f"Expected schema: {_describe(FACES_REQUIRED)} (optional {_describe(FACES_OPTIONAL)}). "
            "Import images with `synthface import` to get a valid table."
        )


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual.equals(expected):
        return True
    if pa.types.is_integer(expected) and pa.types.is_integer(actual):
        return True  # int32 labels from other tools are fine; we cast on read
    if pa.types.is_string(expected) and (pa.types.is_large_string(actual) or pa.types.is_string(actual)):
        return True
    if pa.types.is_struct(expected) and pa.types.is_struct(actual):
        names = {actual.field(i).name: actual.field(i).type for i in range(actual.num_fields)}
        return "bytes" in names and (
            pa.types.is_binary(names["bytes"]) or pa.types.is_large_binary(names["bytes"])
        )
    return False


def image_array(data: Iterable[bytes | None], paths: Iterable[str | None] | None = None) -> pa.StructArray:
    """Build the ``image`` struct column from encoded image bytes (and optional source paths)."""
    data = list(data)
    paths = [None] * len(data) if paths is None else list(paths)
    if len(paths) != len(data):
        raise ValueError(f"image_array: {len(data)} images but {len(paths)} paths")
    return pa.StructArray.from_arrays(
        [pa.array(data, type=pa.binary()), pa.array(paths, type=pa.string())],
        fields=list(IMAGE_TYPE),
    )


def faces_table(
    images: Iterable[bytes],
    labels: Sequence[int],
    sources: Sequence[int] | int = SOURCE_REAL,
    paths: Iterable[str | None] | None = None,
    extra: dict[str, pa.Array] | None = None,
) -> pa.Table:
    """Assemble a faces table; ``extra`` columns (e.g. factor vectors) are appended in order."""
    image_col = image_array(images, paths)
    n = len(image_col)
    if isinstance(sources, int):
        sources = [sources] * n
    if len(labels) != n or len(sources) != n:
        raise ValueError(f"faces_table: {n} images, {len(labels)} labels, {len(sources)} sources")
    columns = {IMAGE: image_col, LABEL: pa.array(labels, pa.int64()), SOURCE: pa.array(sources, pa.int64())}
    for name, col in (extra or {}).items():
        if len(col) != n:
            raise ValueError(f"faces_table: extra column '{name}' has {len(col)} rows, expected {n}")
        columns[name] = col
    table = pa.table(columns)
    check_no_null_images(table, "faces_table")
    return table.cast(faces_schema(list(table.schema)[3:]))
