from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import png_bytes

from synthface_ray import storage
from synthface_ray.data import faces, schema
from synthface_ray.data.schema import SchemaError


def make_table(n: int, start: int = 0) -> pa.Table:
    images = [png_bytes(start + i) for i in range(n)]
    labels = [(start + i) // 3 for i in range(n)]
    return schema.faces_table(images, labels, 0, extra={"identity": pa.array([f"id{x}" for x in labels])})


def test_write_read_round_trip_local(tmp_path):
    table = make_table(25)
    manifest = faces.write_faces([table.slice(0, 10), table.slice(10)], str(tmp_path / "ds"), rows_per_shard=8)
    assert manifest["rows"] == 25 and [f["rows"] for f in manifest["files"]] == [8, 8, 8, 1]
    back = faces.read_faces(str(tmp_path / "ds"))
    assert back.equals(table)
    assert sorted(os.listdir(tmp_path / "ds")) == ["README.md", "manifest.json"] + [f"part-0000{i}.parquet" for i in range(4)]


def test_round_trip_s3(s3):
    cfg, root = s3
    table = make_table(12)
    faces.write_faces(table, f"{root}/faces", cfg, rows_per_shard=5)
    assert faces.read_faces(f"{root}/faces", cfg).equals(table)
    assert faces.read_manifest(f"{root}/faces", cfg)["rows"] == 12


def test_manifest_is_written_last(tmp_path):
    writer = faces.FacesWriter(storage.resolve(str(tmp_path / "ds")), rows_per_shard=4)
    writer.write(make_table(9))
    assert os.path.exists(tmp_path / "ds" / "part-00000.parquet")
    assert not os.path.exists(tmp_path / "ds" / "manifest.json")  # incomplete until close()
    writer.close()
    assert faces.read_manifest(str(tmp_path / "ds"))["rows"] == 9


def test_existing_dataset_is_protected_and_overwrite_replaces(tmp_path):
    out = str(tmp_path / "ds")
    faces.write_faces(make_table(6), out, rows_per_shard=2)
    with pytest.raises(faces.OutputExistsError, match="overwrite=true"):
        faces.write_faces(make_table(3), out)
    faces.write_faces(make_table(3, start=100), out, overwrite=True)
    assert faces.read_faces(out).num_rows == 3
    assert len(faces.read_manifest(out)["files"]) == 1
    assert sorted(os.listdir(out)) == ["README.md", "manifest.json", "part-00000.parquet"]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_overwrite_keeps_the_old_dataset_until_the_new_one_is_complete(where, tmp_path, request):
    """A writer that never reaches close() (a killed run) leaves the old dataset whole; the next
    overwrite replaces it in one swap and leaves no replacement folder behind."""
    cfg, root = request.getfixturevalue("s3") if where == "s3" else (None, str(tmp_path))
    out = f"{root}/ds"
    faces.write_faces(make_table(6), out, cfg, rows_per_shard=2)
    killed = faces.FacesWriter(storage.resolve(out, cfg), rows_per_shard=2, overwrite=True)
    killed.write(make_table(5, start=50))  # shards of the new dataset written, then "kill -9"
    assert killed.folder.uri.endswith("/.ds.replacing") and storage.list_files(killed.folder, ".parquet")
    assert faces.read_faces(out, cfg).equals(make_table(6))  # the old dataset, complete
    assert faces.read_manifest(out, cfg)["rows"] == 6
    faces.write_faces(make_table(3, start=100), out, cfg, overwrite=True)
    assert faces.read_faces(out, cfg).equals(make_table(3, start=100))
    assert [p.rsplit("/", 1)[-1] for p in storage.list_all(storage.resolve(root, cfg))] == \
        ["README.md", "manifest.json", "part-00000.parquet"]


def test_leftover_shards_of_an_interrupted_run_are_removed(tmp_path):
    out = tmp_path / "ds"
    writer = faces.FacesWriter(storage.resolve(str(out)), rows_per_shard=2)
    writer.write(make_table(6))  # "killed" before close(): shards but no manifest
    (out / "notes.txt").write_text("user file")
    faces.write_faces(make_table(2), str(out))
    assert faces.read_faces(str(out)).num_rows == 2
    assert (out / "notes.txt").exists()


def test_reads_foreign_parquet_without_manifest(tmp_path):
    table = make_table(5)
    pq.write_table(table, tmp_path / "single.parquet")
    assert faces.read_faces(str(tmp_path / "single.parquet")).num_rows == 5
    (tmp_path / "dir").mkdir()
    pq.write_table(table, tmp_path / "dir" / "a.parquet")
    pq.write_table(table, tmp_path / "dir" / "b.parquet")
    assert faces.read_faces(str(tmp_path / "dir")).num_rows == 10


def test_empty_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Parquet files"):
        faces.open_faces(str(tmp_path))


@pytest.mark.parametrize(
    "columns, words",
    [
        ({"image": pa.array([b"x"]), "label": pa.array([1]), "source": pa.array([0])}, ["'image' has type binary"]),
        ({"label": pa.array([1]), "source": pa.array([0])}, ["missing column 'image'"]),
        ({"image": schema.image_array([b"x"]), "label": pa.array(["a"]), "source": pa.array([0])},
         ["'label' has type string", "expected int64"]),
        ({"image": schema.image_array([b"x"])}, ["missing column 'label'", "missing column 'source'"]),
    ],
)
def test_wrong_schema_names_the_columns(tmp_path, columns, words):
    pq.write_table(pa.table(columns), tmp_path / "bad.parquet")
    with pytest.raises(SchemaError) as err:
        faces.open_faces(str(tmp_path / "bad.parquet"))
    for word in words + ["Expected schema", "image: struct<bytes: binary, path: string>"]:
        assert word in str(err.value)


def test_writer_rejects_a_non_faces_table(tmp_path):
    with pytest.raises(SchemaError, match="missing column 'source'"):
        faces.write_faces(pa.table({"image": schema.image_array([b"x"]), "label": [1]}), str(tmp_path / "o"))
    assert not os.path.exists(tmp_path / "o" / "manifest.json")


def test_int32_labels_from_other_tools_are_accepted(tmp_path):
    table = pa.table({"image": schema.image_array([png_bytes(0)]), "label": pa.array([4], pa.int32()),
                      "source": pa.array([0], pa.int32())})
    pq.write_table(table, tmp_path / "t.parquet")
    assert faces.read_faces(str(tmp_path / "t.parquet")).column("label").to_pylist() == [4]
