"""``grid.png`` of a generation run: a row per identity (its first samples), then a row per
ScoreMix identity with its two (or m) sources' first samples, a gap, and the mix's samples."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from synthface_ray import storage
from synthface_ray.data.faces import shard_name
from synthface_ray.data.transforms import decode_image
from synthface_ray.mining.plan import IDENTITY_ID, MIX_IDS, ROW_ID
from synthface_ray.storage import Location

Batches = Callable[[], Iterable[pa.Table]]  # a plan's rows in row_id order, from the start, on each call


def _take_first(store: dict[int, list[int]], limit: int, keys: np.ndarray) -> list[int]:
    """Add the keys not yet in ``store`` in order of first appearance while it holds under
    ``limit``; returns the positions (in ``keys``) of the first row of each key added."""
    added = []
    if len(store) >= limit or not len(keys):
        return added
    uniq, first = np.unique(keys, return_index=True)
    for key, at in sorted(zip(uniq.tolist(), first.tolist(), strict=True), key=lambda kv: kv[1]):
        if key not in store:
            store[key] = []
            added.append(at)
            if len(store) >= limit:
                break
    return added


def _scan_samples(batches: Batches, identities: int, images: int, mixes: int):
    """First pass: the first ``identities`` plain identities and ``mixes`` mixes (in row order),
    up to ``images`` row ids of each, each mix's sources, and every kept row's position."""
    plain: dict[int, list[int]] = {}
    mixed: dict[int, list[int]] = {}
    sources: dict[int, list[int]] = {}
    where: dict[int, int] = {}
    offset = 0
    for table in batches():
        ids, rows = table.column(IDENTITY_ID).to_numpy(), table.column(ROW_ID).to_numpy()
        sizes = pa.compute.list_value_length(table.column(MIX_IDS)).to_numpy()
        for mask, store, limit in ((sizes == 1, plain, identities), (sizes > 1, mixed, mixes)):
            at = np.flatnonzero(mask)
            for first in _take_first(store, limit, ids[at]):
                if store is mixed:
                    sources[int(ids[at[first]])] = table.column(MIX_IDS)[int(at[first])].as_py()
            open_keys = [k for k, v in store.items() if len(v) < images]
            for i in at[np.isin(ids[at], open_keys)].tolist():
                kept = store[int(ids[i])]
                if len(kept) < images:
                    kept.append(int(rows[i]))
                    where[int(rows[i])] = offset + i
        offset += table.num_rows
    return plain, mixed, sources, where


def _first_plain_rows(batches: Batches, wanted: set[int], known: dict[int, list[int]], where: dict[int, int]):
    """Second pass, only for mix sources not among the shown identities: each one's first plain
    row id (-1 when it has none)."""
    first = {k: v[0] for k, v in known.items() if k in wanted and v}
    missing = np.array(sorted(wanted - set(first)), np.int64)
    offset = 0
    for table in batches() if len(missing) else ():
        ids, rows = table.column(IDENTITY_ID).to_numpy(), table.column(ROW_ID).to_numpy()
        plain = pa.compute.list_value_length(table.column(MIX_IDS)).to_numpy() == 1
        for i in np.flatnonzero(plain & np.isin(ids, missing)).tolist():
            if int(ids[i]) not in first:
                first[int(ids[i])] = int(rows[i])
                where[int(rows[i])] = offset + i
        missing = missing[~np.isin(missing, list(first))]
        offset += table.num_rows
        if not len(missing):
            break
    return first


def grid_rows(batches: Batches, identities: int, images: int, mixes: int):
    """``(source row ids, sample row ids)`` per grid row: first the plain identities, then the
    mixes (sources = the first plain row of each source identity, -1 when it has none); and each
    shown row's position in row_id order. Streams the plan (twice at most), holding only what it
    shows."""
    plain, mixed, sources, where = _scan_samples(batches, identities, images, mixes)
    wanted = {s for src in sources.values() for s in src}
    first = _first_plain_rows(batches, wanted, plain, where)
    out = [([], samples) for samples in plain.values()]
    out += [([first.get(s, -1) for s in sources[i]], samples) for i, samples in mixed.items()]
    return out, where


def _pixels(loc: Location, where: dict[int, int], rows_per_file: int, wanted: set[int]) -> dict[int, np.ndarray]:
    """Decoded images of the wanted row ids, read from the shards that hold them."""
    out = {}
    for shard in sorted({where[r] // rows_per_file for r in wanted}):
        data = storage.read_bytes(loc.join(shard_name(shard)))
        table = pq.read_table(io.BytesIO(data), columns=[ROW_ID, "image"])
        for r, img in zip(table.column(ROW_ID).to_pylist(), table.column("image").to_pylist(), strict=True):
            if r in wanted:
                out[r] = decode_image(img["bytes"])
    return out


def render(loc: Location, batches: Batches, rows_per_file: int, identities: int, images: int, mixes: int,
           cell: int = 64) -> bytes:
    """The grid as PNG bytes (nearest-neighbour upscaled cells; a blank cell where a source has no
    plain samples)."""
    from PIL import Image

    layout, where = grid_rows(batches, identities, images, mixes)
    if not layout:
        raise ValueError("the plan has no rows to show in a grid")
    wanted = {r for src, smp in layout for r in (*src, *smp) if r >= 0}
    pix = _pixels(loc, where, rows_per_file, wanted)
    lead = max(len(src) for src, _ in layout)
    lead = lead + 1 if lead else 0  # sources, then a gap column
    width = lead + max(len(smp) for _, smp in layout)
    sheet = Image.new("RGB", (width * cell, len(layout) * cell), (255, 255, 255))
    for y, (src, smp) in enumerate(layout):
        offset = lead if src else 0  # plain identities start at the left edge
        cells = [(x, r) for x, r in enumerate(src)] + [(offset + x, r) for x, r in enumerate(smp)]
        for x, r in cells:
            if r in pix:
                tile = Image.fromarray(pix[r]).resize((cell, cell), Image.Resampling.NEAREST)
                sheet.paste(tile, (x * cell, y * cell))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["grid_rows", "render"]
