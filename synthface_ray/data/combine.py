"""Several faces datasets as one (``synthface combine``): e.g. real images (source 0) and a
synthetic set (source 1) for CASD's source-labelled generator training (CASD Algorithm 1) or for
unlabelled real + synthetic training (SDA).

Each input's rows are streamed in order, a batch at a time, with their ``label`` shifted so that
the inputs' identities stay apart (``labels: offset``: input i starts after the largest label of
the inputs before it) or kept as they are (``labels: keep``, refused when two inputs share a
label), and their ``source`` set to the input's ``source`` when one is given. Columns: the faces
columns every input has (``image``, ``label``, ``source``) and the optional ones that every input
has with the same type (e.g. ``identity``); the others are dropped and named. The output is written
by :class:`synthface_ray.data.faces.FacesWriter`, so it is complete only once its manifest exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthface_ray.data import faces, schema
from synthface_ray.storage import Location, StorageConfig


class CombineError(ValueError):
    """The inputs cannot be combined as asked (the message says why and what to change)."""


@dataclass(frozen=True)
class InputFacts:
    """One input as read before writing: its rows, label range and the columns it has."""

    path: str
    rows: int
    labels: np.ndarray  # the distinct labels, sorted
    schema: pa.Schema


def read_facts(path: str, store: StorageConfig | None) -> InputFacts:
    """Rows, distinct labels and schema of one complete faces dataset (only the label column is
    read); an incomplete one is refused (finish or re-run the job that writes it)."""
    dataset = faces.open_faces(path, store)
    labels = [np.unique(b.column(schema.LABEL).to_numpy(zero_copy_only=False))
              for b in dataset.to_batches(columns=[schema.LABEL])]
    unique = np.unique(np.concatenate(labels)) if labels else np.array([], np.int64)
    rows = dataset.count_rows()
    if not rows:
        raise CombineError(f"{path} has no rows: nothing to combine")
    return InputFacts(path, rows, unique, dataset.schema)


def label_offsets(facts: list[InputFacts], mode: str) -> list[int]:
    """``offset``: input i's labels shifted past every label of inputs 0..i-1 (the first unshifted);
    ``keep``: all zero, refused when two inputs share a label."""
    if mode == "offset":
        out, nxt = [], 0
        for f in facts:
            out.append(nxt - int(f.labels[0]) if out and int(f.labels[0]) < nxt else 0)
            nxt = int(f.labels[-1]) + out[-1] + 1
        return out
    seen: dict[int, str] = {}
    for f in facts:
        shared = [int(x) for x in f.labels if int(x) in seen]
        if shared:
            raise CombineError(f"labels: keep, but {f.path} and {seen[shared[0]]} share label(s) "
                               f"{shared[:5]}{' ...' if len(shared) > 5 else ''} ({len(shared)} in all): "
                               "use labels: offset to number each input's identities apart")
        seen.update({int(x): f.path for x in f.labels})
    return [0] * len(facts)


def shared_columns(facts: list[InputFacts]) -> tuple[list[str], list[str]]:
    """The columns every input has with one type (faces columns first), and the ones dropped."""
    first = facts[0].schema
    keep, dropped = [], set()
    for f in facts:
        dropped |= set(f.schema.names) ^ set(first.names)
    for name in first.names:
        types = {str(f.schema.field(name).type) for f in facts if name in f.schema.names}
        if name in dropped or (len(types) > 1 and name != schema.IMAGE):
            dropped.add(name)
        else:
            keep.append(name)
    return keep, sorted(dropped)


def combined_batches(facts: list[InputFacts], offsets: list[int], sources: list[int | None],
                     columns: list[str], store: StorageConfig | None,
                     on_rows: Callable[[int], object] | None = None) -> Iterator[pa.Table]:
    """Each input's rows in order, a batch at a time, labels shifted and sources set."""
    for f, offset, source in zip(facts, offsets, sources, strict=True):
        dataset = faces.open_faces(f.path, store)
        for batch in dataset.to_batches(columns=columns):
            table = pa.Table.from_batches([batch])
            if offset:
                i = table.schema.get_field_index(schema.LABEL)
                table = table.set_column(i, schema.LABEL, pc.add(table.column(schema.LABEL), offset))
            if source is not None:
                i = table.schema.get_field_index(schema.SOURCE)
                table = table.set_column(i, schema.SOURCE, pa.array(np.full(table.num_rows, source, np.int64)))
            if on_rows:
                on_rows(table.num_rows)
            yield table


def combine(facts: list[InputFacts], offsets: list[int], sources: list[int | None], out: Location,
            store: StorageConfig | None, rows_per_shard: int = 10_000, overwrite: bool = False,
            before_manifest: Callable[[Location], object] | None = None,
            on_rows: Callable[[int], object] | None = None, **metadata) -> dict:
    """Write the combined dataset to ``out``; returns its manifest (which lists each input's path,
    rows, label offset and source)."""
    columns, _ = shared_columns(facts)
    writer = faces.FacesWriter(out, rows_per_shard, overwrite)
    for table in combined_batches(facts, offsets, sources, columns, store, on_rows=on_rows):
        writer.write(table)
    if before_manifest:
        before_manifest(writer.folder)
    inputs = [{"path": f.path, "rows": f.rows, "label_offset": o, "source": s}
              for f, o, s in zip(facts, offsets, sources, strict=True)]
    identities = len(np.unique(np.concatenate([f.labels + o for f, o in zip(facts, offsets, strict=True)])))
    return writer.close(inputs=inputs, identities=identities, **metadata)


__all__ = ["CombineError", "InputFacts", "combine", "combined_batches", "label_offsets", "read_facts",
           "shared_columns"]
