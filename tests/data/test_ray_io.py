from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import png_bytes

from synthface_ray.data import faces, ray_io, schema


@pytest.fixture
def table():
    return schema.faces_table([png_bytes(i, 8) for i in range(10)], [i // 2 for i in range(10)], 1,
                              extra={"identity": pa.array([f"p{i // 2}" for i in range(10)])})


def test_ray_dataset_round_trip_local(ray_local, tmp_path, table):
    faces.write_faces(table, str(tmp_path / "src"), rows_per_shard=4)
    ds = ray_io.read_faces_dataset(str(tmp_path / "src"))
    assert ds.count() == 10
    manifest = ray_io.write_faces_dataset(ds, str(tmp_path / "dst"))
    assert manifest["rows"] == 10
    back = faces.read_faces(str(tmp_path / "dst")).sort_by("label")
    assert back.column("label").to_pylist() == table.column("label").to_pylist()
    assert back.column("image").combine_chunks().field("bytes").to_pylist() == table.column("image").combine_chunks().field("bytes").to_pylist()
    assert not [n for n in os.listdir(tmp_path / "dst") if n.startswith(".staging")]
    # Ray's writer gets the faces storage schema: Hugging Face datasets reads an Image column
    shard = tmp_path / "dst" / "part-00000.parquet"
    written = pq.read_schema(shard)
    assert written.field("image").nullable and schema.HF_METADATA in written.metadata
    assert (tmp_path / "dst" / "README.md").exists()
    import datasets
    from PIL import Image

    ds = datasets.Dataset.from_parquet(str(shard), cache_dir=str(tmp_path / "hf-cache"))
    assert isinstance(ds.features["image"], datasets.Image) and isinstance(ds[0]["image"], Image.Image)
    assert ds[0]["image"].size == (8, 8)


def test_ray_reads_old_and_new_shards_with_the_nullable_image(ray_local, tmp_path, table):
    """A dataset of an old shard (``image`` non-nullable, no metadata) and a new one reads in Ray."""
    faces.write_faces(table, str(tmp_path / "src"), rows_per_shard=6)
    old = pq.read_table(tmp_path / "src" / "part-00000.parquet")
    fields = [pa.field(f.name, f.type, nullable=f.name != "image" and f.nullable) for f in old.schema]
    pq.write_table(old.cast(pa.schema(fields)), tmp_path / "src" / "part-00000.parquet")
    assert not pq.read_schema(tmp_path / "src" / "part-00000.parquet").field("image").nullable
    ds = ray_io.read_faces_dataset(str(tmp_path / "src"))
    assert sorted(ds.to_pandas()["label"].tolist()) == table.column("label").to_pylist()


def test_ray_dataset_round_trip_s3(ray_local, s3, table):
    cfg, root = s3
    faces.write_faces(table, f"{root}/src", cfg)
    ds = ray_io.read_faces_dataset(f"{root}/src", cfg)
    ray_io.write_faces_dataset(ds, f"{root}/dst", cfg)
    assert faces.read_faces(f"{root}/dst", cfg).num_rows == 10


def test_ray_write_refuses_to_clobber(ray_local, tmp_path, table):
    faces.write_faces(table, str(tmp_path / "src"))
    ds = ray_io.read_faces_dataset(str(tmp_path / "src"))
    with pytest.raises(faces.OutputExistsError):
        ray_io.write_faces_dataset(ds, str(tmp_path / "src"))
