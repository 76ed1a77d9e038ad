"""``grid.png`` of a generation run: a row per identity (its first samples), then a row per
ScoreMix identity with its two (or m) sources' first samples, a gap, and the mix's samples."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from synthface_ray import storage
from synthface_ray.data.faces import shard_name
from synthface_ray.data.transforms import decode_image
from synthface_ray.generate import shards
from synthface_ray.mining.plan import IDENTITY_ID, MIX_IDS, ROW_ID
from synthface_ray.storage import Location


def grid_rows(plan: pa.Table, identities: int, images: int, mixes: int) -> list[tuple[list[int], list[int]]]:
    """``(source row ids, sample row ids)`` per grid row: first the plain identities, then the
    mixes (sources = the first plain row of each source identity, -1 when it has none)."""
    ids = plan.column(IDENTITY_ID).to_numpy()
    rows = plan.column(ROW_ID).to_numpy()
    sizes = pa.compute.list_value_length(plan.column(MIX_IDS)).to_numpy()
    first_plain: dict[int, list[int]] = {}
    mix_rows: dict[int, list[int]] = {}
    mix_sources: dict[int, list[int]] = {}
    for k, (i, r, m) in enumerate(zip(ids.tolist(), rows.tolist(), sizes.tolist(), strict=True)):
        target = first_plain if m == 1 else mix_rows
        target.setdefault(i, []).append(r)
        if m > 1 and i not in mix_sources:
            mix_sources[i] = plan.column(MIX_IDS)[k].as_py()
    out = [([], samples[:images]) for samples in list(first_plain.values())[:identities]]
    for i, samples in list(mix_rows.items())[:mixes]:
        out.append(([first_plain.get(s, [-1])[0] for s in mix_sources[i]], samples[:images]))
    return out


def _pixels(loc: Location, plan: pa.Table, wanted: set[int]) -> dict[int, np.ndarray]:
    """Decoded images of the wanted row ids, read from the shards that hold them."""
    where = dict(zip(plan.column(ROW_ID).to_pylist(), plan.column(shards.SHARD).to_pylist(), strict=True))
    out = {}
    for shard in sorted({where[r] for r in wanted}):
        data = storage.read_bytes(loc.join(shard_name(shard)))
        table = pq.read_table(io.BytesIO(data), columns=[ROW_ID, "image"])
        for r, img in zip(table.column(ROW_ID).to_pylist(), table.column("image").to_pylist(), strict=True):
            if r in wanted:
                out[r] = decode_image(img["bytes"])
    return out


def render(loc: Location, plan: pa.Table, identities: int, images: int, mixes: int, cell: int = 64) -> bytes:
    """The grid as PNG bytes (nearest-neighbour upscaled cells; a blank cell where a source has no
    plain samples)."""
    from PIL import Image

    layout = grid_rows(plan, identities, images, mixes)
    if not layout:
        raise ValueError("the plan has no rows to show in a grid")
    wanted = {r for src, smp in layout for r in (*src, *smp) if r >= 0}
    pix = _pixels(loc, plan, wanted)
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
