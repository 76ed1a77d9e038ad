"""Fixtures of the data tests: a folder laid out as `synthface generate` writes one."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

#: identity labels of :func:`generated_set`: plain identities 0..9 and two ScoreMix identities
#: (100, 113): 12 identities whose labels run to 113, as a generated set's labels have gaps
GENERATED_LABELS = (*range(10), 100, 113)
GENERATED_SIZE = 16


def write_generated_set(folder: str, rows_per_file: int = 8) -> dict:
    """Write a generated dataset at ``folder`` with the functions `synthface generate` writes it
    with (``batch.faces_rows`` -> ``shards.commit_shard`` per shard, ``job.json`` first, receipts,
    ``faces.publish_manifest`` last), without Ray or models: random 16x16 pixels stand in for
    the sampler's. Returns the manifest."""
    from synthface_ray import storage
    from synthface_ray.data.faces import publish_manifest
    from synthface_ray.generate import batch as gb
    from synthface_ray.generate import shards
    from synthface_ray.mining.plan import plan_rows

    plan = plan_rows(np.arange(10), 2, negative_of={i: (i + 5) % 10 for i in range(10)},
                     mixes=[(100, [0, 1], [0.5, 0.5]), (113, [2, 7], [0.5, 0.5])], images_per_mix=2, seed=3)
    n = plan.num_rows
    pixels = np.random.default_rng(0).integers(0, 256, (n, GENERATED_SIZE, GENERATED_SIZE, 3), dtype=np.uint8)
    plan = (plan.append_column(gb.PIXELS, pa.array([p.tobytes() for p in pixels], pa.binary()))
            .append_column(gb.T0, pa.array([-1] * n, pa.int32())).append_column(gb.NFE, pa.array([3] * n, pa.int32())))
    loc = storage.resolve(folder)
    job = {"format": "synthface-generate", "version": 1, "fingerprint": "test", "content": {}}
    storage.atomic_write_json(loc.join(shards.JOB_FILE), job)
    receipts = []
    for part in shards.split_shards(shards.assign_shards(plan, rows_per_file)):
        rows = gb.faces_rows(part, size=GENERATED_SIZE, fmt="png", quality=95, sampler_json="{}", model_id="m")
        receipts.append(shards.commit_shard(loc, int(part.column(shards.SHARD)[0].as_py()), rows))
    return publish_manifest(loc, receipts, rows.schema, kind="generated", job_fingerprint="test")


@pytest.fixture
def generated_set(tmp_path) -> str:
    """A generated dataset (see :func:`write_generated_set`): 24 16x16 PNGs in 3 shards, labels
    :data:`GENERATED_LABELS` (0..9 twice each, 100 and 113 twice each), with job.json, 3
    receipts and manifest.json beside the shards (more JSON files than shards)."""
    folder = str(tmp_path / "generated")
    write_generated_set(folder)
    return folder
