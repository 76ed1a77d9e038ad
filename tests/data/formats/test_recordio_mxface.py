"""`synthface export --format recordio` read the way insightface trains on it, by a reader written
here from the MXNet RecordIO format (dmlc-core ``recordio.h``/``recordio.cc``, ``mx.recordio``'s
``IRHeader``) and insightface's ``MXFaceDataset`` and ``load_property``, not the project's own
reader (synthface_ray/data/formats/recordio.py); MXNet itself needs numpy < 2.

The generated set (tests/data/conftest.py) has 12 identities labelled 0..9, 100 and 113: its
``property`` must give 114 classes (max label + 1; it said 12, the identity count, so a trainer
sized from it got out-of-range labels), or 12 with ``output.relabel=true`` and a label map."""

from __future__ import annotations

import csv
import io
import numbers
import os
import struct
from collections import namedtuple

import numpy as np
import pytest
from PIL import Image

from synthface_ray import cli
from synthface_ray.data import faces, schema
from synthface_ray.data.formats.common import contiguous_labels, label_map_csv

GENERATED_LABELS = [*range(10), 100, 113]  # the generated_set fixture's identities

# -- an independent reader -----------------------------------------------------------------------

MAGIC = 0xCED7230A  # dmlc RecordIOWriter::kMagic
IRHeader = namedtuple("IRHeader", ["flag", "label", "id", "id2"])  # mx.recordio.IRHeader
IR_FORMAT = "IfQQ"  # mx.recordio._IR_FORMAT (native byte order and alignment, as mxnet packs it)
IR_SIZE = struct.calcsize(IR_FORMAT)


class IndexedRecordIO:
    """``mx.recordio.MXIndexedRecordIO(idx, rec, "r")``: ``keys`` and ``read_idx``."""

    def __init__(self, idx_path: str, rec_path: str) -> None:
        self.idx = {}
        with open(idx_path) as fh:
            for line in fh:
                key, offset = line.strip().split("\t")
                self.idx[int(key)] = int(offset)
        self.keys = list(self.idx)
        self.rec = open(rec_path, "rb")  # noqa: SIM115 -- closed by close()

    def close(self) -> None:
        self.rec.close()

    def read_idx(self, key: int) -> bytes:
        """dmlc ``RecordIOReader::NextRecord`` from the record's offset: chunks of (magic, lrecord:
        cflag in the upper 3 bits, length in the lower 29), payload padded to 4 bytes; cflag 0 is
        a whole record, 1/2/3 start/middle/end of a split one, joined by the magic word the
        writer cut it at."""
        self.rec.seek(self.idx[key])
        out = b""
        while True:
            magic, lrecord = struct.unpack("<II", self.rec.read(8))
            assert magic == MAGIC, f"bad magic at record {key}"
            cflag, length = lrecord >> 29, lrecord & ((1 << 29) - 1)
            out += self.rec.read((length + 3) // 4 * 4)[:length]
            if cflag in (0, 3):
                return out
            out += struct.pack("<I", MAGIC)


def unpack(s: bytes) -> tuple[IRHeader, bytes]:
    """``mx.recordio.unpack``: the IRHeader, then ``flag`` float32 labels when flag > 0."""
    header = IRHeader(*struct.unpack(IR_FORMAT, s[:IR_SIZE]))
    s = s[IR_SIZE:]
    if header.flag > 0:
        header = header._replace(label=np.frombuffer(s, np.float32, header.flag))
        s = s[header.flag * 4:]
    return header, s


class MXFaceDataset:
    """insightface ``recognition/arcface_torch/dataset.py`` ``MXFaceDataset`` (decoding with PIL
    instead of ``mx.image.imdecode``; the label as an int instead of a torch long tensor)."""

    def __init__(self, root_dir: str) -> None:
        self.imgrec = IndexedRecordIO(os.path.join(root_dir, "train.idx"), os.path.join(root_dir, "train.rec"))
        header, _ = unpack(self.imgrec.read_idx(0))
        if header.flag > 0:
            self.header0 = (int(header.label[0]), int(header.label[1]))
            self.imgidx = np.array(range(1, int(header.label[0])))
        else:
            self.imgidx = np.array(list(self.imgrec.keys))

    def __len__(self) -> int:
        return len(self.imgidx)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int, bytes]:
        header, img = unpack(self.imgrec.read_idx(int(self.imgidx[index])))
        label = header.label
        if not isinstance(label, numbers.Number):
            label = label[0]
        return np.asarray(Image.open(io.BytesIO(img)).convert("RGB")), int(label), img


def load_property(data_dir: str) -> dict:
    """insightface ``load_property``: ``num_classes,height,width``."""
    with open(os.path.join(data_dir, "property")) as fh:
        vec = fh.read().strip().split(",")
    assert len(vec) == 3
    return {"num_classes": int(vec[0]), "image_size": [int(vec[1]), int(vec[2])]}


def read_export(folder: str) -> tuple[dict, list[tuple[int, bytes]]]:
    """(property, [(label, image bytes)] in MXFaceDataset order), checking the identity records."""
    ds = MXFaceDataset(folder)
    try:
        items = [ds[i] for i in range(len(ds))]
        start, end = ds.header0
        assert start == len(ds) + 1
        for key in range(start, end):  # identity records: (first image key, last + 1), one label each
            header, _ = unpack(ds.imgrec.read_idx(key))
            first, stop = (int(x) for x in header.label)
            assert len({items[k - 1][1] for k in range(first, stop)}) == 1
    finally:
        ds.imgrec.close()
    return load_property(folder), [(label, img) for _, label, img in items]


def source_labels(folder: str) -> dict[bytes, int]:
    table = faces.read_faces(folder)
    return dict(zip(table.column("image").combine_chunks().field("bytes").to_pylist(),
                    table.column("label").to_pylist(), strict=True))


# -- tests ---------------------------------------------------------------------------------------


def test_property_has_a_class_for_every_label_of_a_generated_set(generated_set, tmp_path, capsys):
    out = str(tmp_path / "rec")
    assert cli.main(["export", "--from", generated_set, "--format", "recordio", "--out", out]) == 0
    prop, items = read_export(out)
    assert prop == {"num_classes": 114, "image_size": [16, 16]}
    labels = np.array([label for label, _ in items])
    assert sorted(set(labels.tolist())) == GENERATED_LABELS
    np.eye(prop["num_classes"])[labels]  # one-hot targets: an out-of-range label raises IndexError
    truth = source_labels(generated_set)
    assert len(items) == len(truth) == 24 and all(truth[img] == label for label, img in items)
    assert not os.path.exists(os.path.join(out, "labels.csv"))
    assert "24 images of 12 identities as RecordIO (property: 114 classes) from" in capsys.readouterr().out


def test_relabel_numbers_labels_contiguously_and_writes_the_map(generated_set, tmp_path, capsys):
    out = str(tmp_path / "rec")
    assert cli.main(["export", "--from", generated_set, "--format", "recordio", "--out", out,
                     "--set", "output.relabel=true"]) == 0
    prop, items = read_export(out)
    assert prop["num_classes"] == 12 and sorted({label for label, _ in items}) == list(range(12))
    with open(os.path.join(out, "labels.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    original = {int(r["label"]): int(r["original_label"]) for r in rows}
    assert original == dict(enumerate(GENERATED_LABELS))  # ascending order kept
    truth = source_labels(generated_set)
    assert all(original[label] == truth[img] for label, img in items)
    assert "(property: 12 classes; labels relabelled 0..11, map in labels.csv)" in capsys.readouterr().out
    # exporting again without relabel (overwrite) leaves no stale map behind
    assert cli.main(["export", "--from", generated_set, "--format", "recordio", "--out", out,
                     "--set", "output.overwrite=true"]) == 0
    assert not os.path.exists(os.path.join(out, "labels.csv")) and read_export(out)[0]["num_classes"] == 114


def _negative_set(folder) -> None:
    from helpers import png_bytes

    faces.write_faces(schema.faces_table([png_bytes(i, 8) for i in range(3)], [-3, -3, 5]), str(folder))


def test_negative_labels_need_relabel(tmp_path):
    _negative_set(tmp_path / "neg")
    with pytest.raises(ValueError, match=r"negative labels \(lowest -3\).*output.relabel=true"):
        _export(tmp_path / "neg", tmp_path / "r")
    assert not os.path.exists(tmp_path / "r" / "train.idx")
    _export(tmp_path / "neg", tmp_path / "r", relabel=True)
    prop, items = read_export(str(tmp_path / "r"))
    assert prop["num_classes"] == 2 and sorted(label for label, _ in items) == [0, 0, 1]
    assert (tmp_path / "r" / "labels.csv").read_text() == "label,original_label\n0,-3\n1,5\n"


def _export(src, dst, **kwargs):
    from synthface_ray.data.formats import insightface

    return insightface.export_recordio(str(src), str(dst), **kwargs)


def test_contiguous_labels_refuse_non_integers():
    assert contiguous_labels([113, 0, 100, 0, np.int64(7)]) == {0: 0, 7: 1, 100: 2, 113: 3}
    assert label_map_csv({5: 1, -2: 0}) == "label,original_label\n0,-2\n1,5\n"
    for bad in (1.5, 2.0, "3", True, None):
        with pytest.raises(ValueError, match=f"label {bad!r} .* is not an integer"):
            contiguous_labels([0, bad])


def test_folders_export_relabels_too(generated_set, tmp_path, capsys):
    out = tmp_path / "dirs"
    assert cli.main(["export", "--from", generated_set, "--format", "folders", "--out", str(out),
                     "--set", "output.relabel=true"]) == 0
    assert sorted(p for p in os.listdir(out) if p.isdigit()) == [f"{k:06d}" for k in range(12)]
    assert (out / "labels.csv").read_text().splitlines()[-1] == "11,113"
    assert "(labels relabelled 0..11, map in labels.csv)" in capsys.readouterr().out


def test_export_and_import_show_a_progress_bar_and_the_summary(generated_set, tmp_path, capsys):
    assert cli.main(["export", "--from", generated_set, "--format", "recordio", "--out", str(tmp_path / "rec")]) == 0
    captured = capsys.readouterr()
    assert "export" in captured.err and "24/24" in captured.err
    assert captured.out.startswith("exported 24 images")
    assert cli.main(["import", "--format", "recordio", "--from", str(tmp_path / "rec"),
                     "--out", str(tmp_path / "back")]) == 0
    captured = capsys.readouterr()
    assert "import" in captured.err and "24/24" in captured.err
    assert captured.out.startswith("imported 24 images with 12 identities")
    back = faces.read_faces(str(tmp_path / "back"))
    assert sorted(set(back.column("label").to_pylist())) == GENERATED_LABELS  # true labels survive
