"""Identities table: schema, normalisation, class centres, Parquet round trip."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthface_ray.data import identities as I
from synthface_ray.data.schema import SchemaError


def test_table_normalises_and_round_trips_through_parquet(tmp_path):
    emb = np.array([[3.0, 4.0], [0.0, 2.0]])
    table = I.identities_table([7, 9], emb, I.CLASS_CENTER)
    pq.write_table(table, tmp_path / "ids.parquet")
    back = pq.read_table(tmp_path / "ids.parquet")
    assert back.column(I.IDENTITY_ID).to_pylist() == [7, 9]
    assert back.column(I.ORIGIN).to_pylist() == ["class_center"] * 2
    assert np.allclose(I.embeddings_of(back), [[0.6, 0.8], [0.0, 1.0]])


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="unique"):
        I.identities_table([1, 1], np.ones((2, 3)), "x")
    with pytest.raises(ValueError, match="non-zero"):
        I.identities_table([1], np.zeros((1, 3)), "x")
    with pytest.raises(SchemaError, match="embedding .*origin"):
        I.validate_identities_schema(pa.schema([("identity_id", pa.int64()), ("embedding", pa.float32())]))


def test_class_centers_average_unit_embeddings_per_label():
    emb = np.array([[1.0, 0.0], [10.0, 0.0], [0.0, 1.0], [0.0, 5.0], [1.0, 1.0]])
    ids, centres = I.class_centers(emb, [2, 2, 5, 5, 5])
    assert ids.tolist() == [2, 5]
    assert np.allclose(centres[0], [1, 0])  # scale of the raw vectors does not matter
    expected = np.array([0.0, 2.0]) + np.array([1.0, 1.0]) / np.sqrt(2)
    assert np.allclose(centres[1], expected / np.linalg.norm(expected), atol=1e-6)
