"""Importers and exporters between faces tables and other on-disk layouts.

``IMPORTERS[name](src, opts, storage_cfg, report, idx=...)`` yields faces tables;
``EXPORTERS[name](src, dst, storage_cfg, overwrite=, verify=, strict=, allow_incomplete=, relabel=)``
returns ``(summary, report)``. Both show a progress bar on stderr (``common.progress_bar``). :func:`import_faces` drives an importer into a faces dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from synthface_ray import storage
from synthface_ray.data import faces
from synthface_ray.data.formats import folders, insightface
from synthface_ray.data.formats.common import ImportOptions
from synthface_ray.data.transforms import DecodeReport
from synthface_ray.storage import StorageConfig

IMPORTERS: dict[str, Callable[..., Any]] = {
    "folders": folders.iter_folders_tables,
    "recordio": insightface.iter_recordio_tables,
}
EXPORTERS: dict[str, Callable[..., Any]] = {
    "folders": folders.export_folders,
    "recordio": insightface.export_recordio,
}


def import_faces(fmt: str, src: str, dst: str, opts: ImportOptions, cfg: StorageConfig | None = None, *,
                 overwrite: bool = False, idx: str | None = None,
                 before_manifest: Callable[[storage.Location], None] | None = None,
                 **metadata: Any) -> tuple[dict[str, Any], DecodeReport]:
    """Import ``src`` in format ``fmt`` into a faces dataset at ``dst``; returns (manifest, report).

    ``before_manifest(folder)`` runs after the last shard and before the manifest that marks the
    dataset complete (the CLI writes the resolved config in ``folder``: ``dst`` itself, or its
    replacement when overwriting a complete dataset, swapped in with the manifest).
    """
    if fmt not in IMPORTERS:
        raise ValueError(f"unknown import format {fmt!r}: choose one of {sorted(IMPORTERS)}")
    report = DecodeReport()
    writer = faces.FacesWriter(storage.resolve(dst, cfg), opts.rows_per_shard, overwrite)
    labels: set[int] = set()
    for table in IMPORTERS[fmt](src, opts, cfg, report, idx=idx):
        labels.update(table.column("label").unique().to_pylist())
        writer.write(table)
    if writer.rows == 0:
        raise ValueError(f"no decodable images in {src}: {report.summary()}")
    if before_manifest is not None:
        before_manifest(writer.folder)
    manifest = writer.close(importer=fmt, source_uri=storage.resolve(src, cfg).uri,
                            identities=len(labels), skipped=report.skipped, **metadata)
    return manifest, report
