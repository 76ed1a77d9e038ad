"""RecordIO import/export through the storage layer (the codec itself: test_recordio.py)."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest
from helpers import png_bytes

from synthface_ray.data import faces, schema
from synthface_ray.data.formats import import_faces, insightface, recordio
from synthface_ray.data.formats.common import ImportOptions


def write_dataset(path, labels):
    table = schema.faces_table([png_bytes(i, 12) for i in range(len(labels))], labels, 0)
    faces.write_faces(table, str(path))
    return table


@pytest.mark.parametrize("labels", [[0, 0, 3, 3, 3, 9, 42], [5, 1, 5, 0, 1]], ids=["grouped", "shuffled"])
def test_round_trip_returns_every_label(tmp_path, labels):
    table = write_dataset(tmp_path / "ds", labels)
    summary, report = insightface.export_recordio(str(tmp_path / "ds"), str(tmp_path / "rec"))
    assert summary.startswith(f"{len(labels)} images of {len(set(labels))} identities")
    assert sorted(os.listdir(tmp_path / "rec")) == ["property", "train.idx", "train.rec"]
    assert (tmp_path / "rec" / "property").read_text() == f"{max(labels) + 1},12,12\n"  # every label < classes
    manifest, _ = import_faces("recordio", str(tmp_path / "rec" / "train.rec"), str(tmp_path / "back"),
                               ImportOptions())
    back = faces.read_faces(str(tmp_path / "back"))
    assert sorted(back.column("label").to_pylist()) == sorted(labels)
    assert manifest["identities"] == len(set(labels))
    # each image keeps its own label (bytes identify the image)
    pairs = dict(zip(table.column("image").combine_chunks().field("bytes").to_pylist(), labels))
    for blob, label in zip(back.column("image").combine_chunks().field("bytes").to_pylist(),
                           back.column("label").to_pylist()):
        assert pairs[blob] == label


def test_identity_range_header_is_insightface_layout(tmp_path):
    write_dataset(tmp_path / "ds", [0, 0, 1, 2, 2, 2])
    insightface.export_recordio(str(tmp_path / "ds"), str(tmp_path / "rec"))
    with open(tmp_path / "rec" / "train.rec", "rb") as rec, open(tmp_path / "rec" / "train.idx") as idx:
        assert recordio.identity_range(rec, idx) == (7, 10)


def test_import_accepts_the_folder_and_reports_missing_idx(tmp_path):
    write_dataset(tmp_path / "ds", [1, 2])
    insightface.export_recordio(str(tmp_path / "ds"), str(tmp_path / "rec"))
    manifest, _ = import_faces("recordio", str(tmp_path / "rec"), str(tmp_path / "o"), ImportOptions())
    assert manifest["rows"] == 2
    os.remove(tmp_path / "rec" / "train.idx")
    with pytest.raises(FileNotFoundError, match="train.idx does not exist"):
        import_faces("recordio", str(tmp_path / "rec"), str(tmp_path / "o2"), ImportOptions())


def test_corrupt_images_are_skipped_on_export_and_import(tmp_path):
    blobs = [png_bytes(0), b"broken", png_bytes(1)]
    faces.write_faces(schema.faces_table(blobs, [0, 1, 2], 0), str(tmp_path / "ds"))
    summary, report = insightface.export_recordio(str(tmp_path / "ds"), str(tmp_path / "rec"))
    assert summary.startswith("2 images") and report.skipped == 1 and report.examples[0][:2] == (1, None)
    with pytest.raises(ValueError, match="row 1"):
        insightface.export_recordio(str(tmp_path / "ds"), str(tmp_path / "rec2"), strict=True)
    assert not os.path.exists(tmp_path / "rec2" / "train.idx")
    # a RecordIO holding a corrupt image (exported with verify off) is cleaned on import
    insightface.export_recordio(str(tmp_path / "ds"), str(tmp_path / "rec3"), verify=False)
    manifest, report = import_faces("recordio", str(tmp_path / "rec3"), str(tmp_path / "o"), ImportOptions())
    assert manifest["rows"] == 2 and report.skipped == 1 and report.examples[0][1] == "train.rec#2"


def test_export_protects_existing_output(tmp_path):
    write_dataset(tmp_path / "ds", [0])
    insightface.export_recordio(str(tmp_path / "ds"), str(tmp_path / "rec"))
    with pytest.raises(FileExistsError):
        insightface.export_recordio(str(tmp_path / "ds"), str(tmp_path / "rec"))
    insightface.export_recordio(str(tmp_path / "ds"), str(tmp_path / "rec"), overwrite=True)


def test_recordio_round_trip_on_s3(s3):
    cfg, root = s3
    table = schema.faces_table([png_bytes(i, 8) for i in range(4)], [3, 3, 8, 8], 0,
                               extra={"identity": pa.array(["a", "a", "b", "b"])})
    faces.write_faces(table, f"{root}/ds", cfg)
    insightface.export_recordio(f"{root}/ds", f"{root}/rec", cfg)
    manifest, _ = import_faces("recordio", f"{root}/rec/train.rec", f"{root}/back", ImportOptions(), cfg)
    assert faces.read_faces(f"{root}/back", cfg).column("label").to_pylist() == [3, 3, 8, 8]
