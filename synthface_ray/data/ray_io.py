"""Faces tables as Ray Datasets (Ray imported only inside these functions).

Reading goes through the same storage layer as plain pyarrow. Writing is staged: Ray writes
shards under a hidden ``.staging-<id>`` prefix, the shards are moved to ``part-NNNNN.parquet`` and
the manifest is written last, so a killed job never leaves a dataset that looks complete. The
shards get the faces storage schema (``schema.storage_schema``: ``image`` an Image for Hugging
Face ``datasets``) and the folder its dataset card, as every faces dataset does.
"""

from __future__ import annotations

import uuid
from typing import Any

from synthface_ray import storage
from synthface_ray.data import faces, schema
from synthface_ray.storage import StorageConfig


def read_faces_dataset(uri: str, cfg: StorageConfig | None = None, allow_incomplete: bool = False,
                       key: str = "input.allow_incomplete", **read_kwargs: Any):
    """A ``ray.data.Dataset`` over a faces table (schema-checked first; an incomplete dataset
    refused unless ``allow_incomplete``, see ``faces.dataset_files``)."""
    import pyarrow.dataset as pads
    import ray.data

    loc = storage.resolve(uri, cfg)
    files = faces.dataset_files(loc, allow_incomplete, key)
    # the schema, checked with a clear error before Ray starts tasks
    schema.validate_faces_schema(pads.dataset(files, filesystem=loc.fs, format="parquet").schema, loc.uri)
    return ray.data.read_parquet(files, filesystem=loc.fs, **read_kwargs)


def write_faces_dataset(ds, uri: str, cfg: StorageConfig | None = None, *, overwrite: bool = False,
                        **metadata: Any) -> dict[str, Any]:
    """Write a Ray Dataset of faces rows as a faces dataset with a manifest; returns the manifest."""
    loc = storage.resolve(uri, cfg)
    arrow_schema = _arrow_schema(ds)
    schema.validate_faces_schema(arrow_schema, "dataset to write")
    arrow_schema = schema.storage_schema(arrow_schema)
    folder = faces.prepare_output(loc, overwrite)
    staging = folder.join(f".staging-{uuid.uuid4().hex[:12]}")
    # every block is cast to the storage schema (Ray's own would drop the Image metadata)
    ds.write_parquet(staging.path, filesystem=loc.fs, schema=arrow_schema)
    files = []
    for i, src in enumerate(storage.list_files(staging, ".parquet")):
        name = faces.shard_name(i)
        loc.fs.move(src, folder.join(name).path)
        rows = _parquet_rows(folder.join(name))
        files.append({"path": name, "rows": rows})
    _remove_dir(staging)
    manifest = faces.publish_manifest(folder, files, arrow_schema, **metadata)
    faces.finish(folder, loc)
    return manifest


def _arrow_schema(ds):
    import pyarrow as pa

    s = ds.schema()
    return s.base_schema if isinstance(getattr(s, "base_schema", None), pa.Schema) else pa.schema(
        [pa.field(n, t) for n, t in zip(s.names, s.types)])


def _parquet_rows(loc: storage.Location) -> int:
    import pyarrow.parquet as pq

    with loc.fs.open_input_file(loc.path) as fh:
        return pq.ParquetFile(fh).metadata.num_rows


def _remove_dir(loc: storage.Location) -> None:
    try:
        loc.fs.delete_dir(loc.path)
    except (FileNotFoundError, OSError):
        pass
