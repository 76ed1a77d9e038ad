"""Hugging Face ``datasets`` itself (no network) reads every faces table the project writes with
``image`` as an Image feature that decodes to PIL: ToyFaces (`synthface toyfaces`), a generated
set (written by generation's own functions), imported sets (`synthface import`), and a table
FacesWriter re-writes from an old dataset; through ``load_dataset("parquet", data_files=...)``,
``Dataset.from_parquet`` and ``load_dataset(<dataset folder>)`` (the folder's README.md card).
Also: the project's own readers, pandas and plain pyarrow still read the nullable ``image`` field
and old datasets (non-nullable ``image``, no metadata), and the card never makes an incomplete
folder complete. Ray Data's writer: tests/data/test_ray_io.py."""

from __future__ import annotations

import fnmatch
import glob
import io
import os

import datasets as datasets_lib  # a dev dependency: the real client of the format we claim
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import png_bytes
from PIL import Image

from synthface_ray import cli, storage
from synthface_ray.data import faces, schema
from synthface_ray.data.formats import recordio


@pytest.fixture
def hf(tmp_path, monkeypatch):
    """The ``datasets`` module, offline, with a cache under ``tmp_path``; returns (module, cache_dir)."""
    cache = str(tmp_path / "hf-cache")
    for key, value in {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": cache}.items():
        monkeypatch.setenv(key, value)
    # the variables are read when datasets is imported: set what an earlier import read, too
    monkeypatch.setattr(datasets_lib.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets_lib.config, "HF_DATASETS_CACHE", cache)
    datasets_lib.disable_progress_bars()
    return datasets_lib, cache


def shard_paths(folder) -> list[str]:
    return sorted(glob.glob(os.path.join(str(folder), "part-*.parquet")))


def hf_loads(hf, folder) -> dict:
    """The dataset at ``folder`` read the three ways a Hugging Face user would."""
    datasets, cache = hf
    shards = shard_paths(folder)
    assert shards, f"no shards in {folder}"
    return {
        'load_dataset("parquet", data_files=...)':
            datasets.load_dataset("parquet", data_files=shards, split="train", cache_dir=cache),
        "Dataset.from_parquet": datasets.Dataset.from_parquet(shards, cache_dir=cache),
        "load_dataset(folder)": datasets.load_dataset(str(folder), split="train", cache_dir=cache),
    }


def check_image_column(hf, folder, size: tuple[int, int]) -> None:
    """Every way of loading gives an Image feature, PIL images of ``size`` (width, height), and
    the rows and labels pyarrow reads (the first row's pixels too)."""
    datasets, _ = hf
    table = faces.read_faces(str(folder))
    first = Image.open(io.BytesIO(table.column("image")[0].as_py()["bytes"]))
    for how, ds in hf_loads(hf, folder).items():
        assert isinstance(ds.features["image"], datasets.Image), (how, ds.features)
        image = ds[0]["image"]
        assert isinstance(image, Image.Image) and image.size == size, (how, image)
        assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(first.convert("RGB"))), how
        assert len(ds) == table.num_rows, how
        assert list(ds["label"]) == table.column("label").to_pylist(), how


def test_toyfaces_open_as_an_image_column(hf, tmp_path):
    out = tmp_path / "toyfaces"
    assert cli.main(["toyfaces", "--out", str(out), "--set", "toyfaces.identities=3",
                     "--set", "toyfaces.images_per_identity=4", "--set", "output.rows_per_shard=5"]) == 0
    assert len(shard_paths(out)) == 3
    check_image_column(hf, out, (32, 32))


def test_generated_set_opens_as_an_image_column(hf, generated_set):
    # the folder holds more JSON files (job.json, manifest.json, 3 receipts) than shards: without its
    # README.md card, load_dataset(folder) would pick the JSON loader
    jsons = [p for p in storage.list_all(storage.resolve(generated_set)) if p.endswith(".json")]
    assert len(jsons) > len(shard_paths(generated_set))
    check_image_column(hf, generated_set, (16, 16))


@pytest.fixture
def image_tree(tmp_path):
    root = tmp_path / "imgs"
    for ident, count in (("alice", 3), ("bob", 2)):
        (root / ident).mkdir(parents=True)
        for i in range(count):
            (root / ident / f"{i}.png").write_bytes(png_bytes(i, 12))
    return root


@pytest.mark.parametrize("fmt", ["folders", "recordio"])
def test_imported_sets_open_as_an_image_column(hf, tmp_path, image_tree, fmt):
    src = str(image_tree)
    if fmt == "recordio":  # an insightface pair, written by the codec (labels 7 and 9)
        os.makedirs(tmp_path / "rec")
        with open(tmp_path / "rec" / "train.rec", "wb") as rec, open(tmp_path / "rec" / "train.idx", "w") as idx:
            recordio.write_faces([(7, png_bytes(i, 12)) for i in range(3)] + [(9, png_bytes(5, 12))], rec, idx)
        src = str(tmp_path / "rec" / "train.rec")
    out = tmp_path / "imported"
    assert cli.main(["import", "--format", fmt, "--from", src, "--out", str(out)]) == 0
    check_image_column(hf, out, (12, 12))


def old_table(n: int = 4) -> pa.Table:
    """A faces table as the project wrote them before: ``image`` non-nullable, no metadata."""
    table = schema.faces_table([png_bytes(i, 8) for i in range(n)], [i // 2 for i in range(n)], 0)
    fields = [pa.field(f.name, f.type, nullable=f.name != "image" and f.nullable) for f in table.schema]
    return table.cast(pa.schema(fields))


def write_old_dataset(folder, n: int = 4) -> pa.Table:
    """An old dataset: one old shard and its manifest, no README.md card."""
    os.makedirs(folder)
    table = old_table(n)
    pq.write_table(table, os.path.join(folder, faces.shard_name(0)))
    storage.atomic_write_json(storage.resolve(str(folder)).join(faces.MANIFEST),
                              {"format": faces.FORMAT, "version": 1, "rows": n,
                               "files": [{"path": faces.shard_name(0), "rows": n}]})
    return table


def test_old_datasets_still_read_and_rewrite_as_image_columns(hf, tmp_path):
    old = tmp_path / "old"
    table = write_old_dataset(old)
    assert not pq.read_schema(shard_paths(old)[0]).field("image").nullable
    back = faces.read_faces(str(old))
    assert back.column("label").to_pylist() == table.column("label").to_pylist()
    # a faces writer given an old table (benchmark subsets, re-imports) writes the new schema
    faces.write_faces(back, str(tmp_path / "new"))
    written = pq.read_schema(shard_paths(tmp_path / "new")[0])
    assert written.field("image").nullable and schema.HF_METADATA in written.metadata
    check_image_column(hf, tmp_path / "new", (8, 8))
    # an old shard and a new one in one folder (a run resumed across the change) read together
    os.replace(shard_paths(tmp_path / "new")[0], old / faces.shard_name(1))
    storage.atomic_write_json(storage.resolve(str(old)).join(faces.MANIFEST),
                              {"format": faces.FORMAT, "version": 1, "rows": 8,
                               "files": [{"path": faces.shard_name(k), "rows": 4} for k in (0, 1)]})
    assert faces.read_faces(str(old)).num_rows == 8


def test_nullable_image_still_reads_with_pyarrow_and_pandas(generated_set):
    shard = shard_paths(generated_set)[0]
    table = pq.read_table(shard)
    assert table.schema.field("image").nullable and table.schema.field("image").type.equals(schema.IMAGE_TYPE)
    frame = pq.read_table(shard).to_pandas()
    import pandas as pd

    assert pd.read_parquet(shard)["image"][0]["bytes"] == frame["image"][0]["bytes"] == \
        table.column("image")[0].as_py()["bytes"]
    assert faces.open_faces(generated_set).count_rows() == 24


def test_faces_writer_refuses_null_images_now_that_the_field_is_nullable(tmp_path):
    good = schema.faces_table([png_bytes(0), png_bytes(1)], [0, 1])
    images = good.column("image").combine_chunks()
    holed = pa.StructArray.from_arrays([images.field("bytes"), images.field("path")],
                                       fields=list(schema.IMAGE_TYPE), mask=pa.array([False, True]))
    bad = good.set_column(0, pa.field("image", schema.IMAGE_TYPE), holed)
    writer = faces.FacesWriter(storage.resolve(str(tmp_path / "ds")))
    with pytest.raises(ValueError, match="1 of 2 rows have a null 'image'"):
        writer.write(bad)
    with pytest.raises(ValueError, match="null 'image'"):
        schema.check_no_null_images(bad)


def test_storage_schema_declares_only_image_and_keeps_other_metadata():
    base = pa.schema([pa.field("image", schema.IMAGE_TYPE, nullable=False), pa.field("label", pa.int64())],
                     metadata={b"other": b"kept", schema.HF_METADATA: b'{"info": {"features": {"label": {"x": 1}}}}'})
    out = schema.storage_schema(base)
    assert out.field("image").nullable and out.metadata[b"other"] == b"kept"
    assert schema.storage_schema(out).equals(out, check_metadata=True)  # idempotent
    import json

    assert json.loads(out.metadata[schema.HF_METADATA])["info"]["features"] == \
        {"image": {"_type": "Image"}, "label": {"x": 1}}
    assert schema.faces_schema().equals(schema.storage_schema(schema.faces_schema()), check_metadata=True)
    with pytest.raises(schema.SchemaError, match="no 'image' column"):
        schema.storage_schema(pa.schema([pa.field("label", pa.int64())]))


def test_card_points_at_the_shards_and_never_completes_a_folder(tmp_path):
    card = faces.dataset_card("faces", 10, 2)
    front = yaml.safe_load(card.split("---\n")[1])
    assert front == {"configs": [{"config_name": "default", "data_files": faces.SHARD_GLOB}]}
    assert all(fnmatch.fnmatch(faces.shard_name(k), faces.SHARD_GLOB) for k in (0, 7, 99999))
    assert not fnmatch.fnmatch(".staging-ab/part-00000.parquet", faces.SHARD_GLOB)
    # killed between the card and the manifest: still an incomplete dataset to every reader
    out = tmp_path / "ds"
    faces.write_faces(schema.faces_table([png_bytes(0)], [0]), str(out))
    os.remove(out / faces.MANIFEST)
    assert (out / faces.CARD).exists()
    with pytest.raises(faces.IncompleteDatasetError, match="no manifest.json"):
        faces.read_faces(str(out))
    from synthface_ray.benchmark import sources

    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        sources.check_complete(str(out), storage.StorageConfig())


def test_s3_dataset_has_its_card_and_image_schema(s3):
    cfg, root = s3
    table = schema.faces_table([png_bytes(i) for i in range(3)], [0, 0, 1])
    faces.write_faces(table, f"{root}/ds", cfg, rows_per_shard=2)
    loc = storage.resolve(f"{root}/ds", cfg)
    assert sorted(p.rsplit("/", 1)[-1] for p in storage.list_all(loc)) == \
        ["README.md", "manifest.json", "part-00000.parquet", "part-00001.parquet"]
    assert "data_files: \"part-*.parquet\"" in storage.read_bytes(loc.join(faces.CARD)).decode()
    with loc.fs.open_input_file(loc.join(faces.shard_name(0)).path) as fh:
        assert schema.HF_METADATA in pq.read_schema(fh).metadata
    assert faces.read_faces(f"{root}/ds", cfg).equals(table)
