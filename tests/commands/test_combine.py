"""``synthface combine`` on real Parquet (and the real S3 client against a moto server): rows and
image bytes carried over, labels numbered apart, sources set, shared columns kept, Hugging Face
``datasets`` reads the result; bad input refused before anything is written."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from synthface_ray import cli, config
from synthface_ray.data import faces
from synthface_ray.data.combine import CombineError, InputFacts, label_offsets
from synthface_ray.data.faces import read_faces, write_faces
from synthface_ray.data.toyfaces import ToyFacesConfig, toyfaces_table


def _set(path, first=0, identities=3, images=2, source=0, extra=False):
    table = toyfaces_table(ToyFacesConfig(first_identity=first, identities=identities,
                                          images_per_identity=images, resolution=16, source=source))
    if extra:
        table = table.append_column("fr_cosine", pa.array(np.linspace(0, 1, table.num_rows), pa.float32()))
    write_faces(table, str(path))
    return str(path)


def _inputs(*items):
    return "combine.inputs=[" + ", ".join(
        "{path: " + p + ("" if s is None else f", source: {s}") + "}" for p, s in items) + "]"


def test_labels_numbered_apart_sources_set_bytes_kept(tmp_path, capsys):
    real = _set(tmp_path / "real", identities=3)
    syn = _set(tmp_path / "syn", identities=4, extra=True)  # labels 0..3 again: another set's people
    out = tmp_path / "out"
    assert cli.main(["combine", "--set", _inputs((real, 0), (syn, 1)), "--out", str(out)]) == 0
    t = read_faces(str(out))
    assert t.num_rows == 6 + 8
    assert t.column("label").to_pylist() == [0, 0, 1, 1, 2, 2] + [3, 3, 4, 4, 5, 5, 6, 6]
    assert t.column("source").to_pylist() == [0] * 6 + [1] * 8
    assert "fr_cosine" not in t.column_names and "identity" in t.column_names
    originals = read_faces(real).column("image").to_pylist() + read_faces(syn).column("image").to_pylist()
    assert t.column("image").to_pylist() == originals
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["identities"] == 7 and [i["label_offset"] for i in manifest["inputs"]] == [0, 3]
    assert (out / "config.yaml").read_text().startswith("# resolved config of `synthface combine`")
    text = capsys.readouterr().out
    assert "dropped (not in every input, or of another type): fr_cosine" in text and "combined 14 images of 7" in text

    import datasets

    ds = datasets.load_dataset(str(out), split="train")
    assert len(ds) == 14 and ds[13]["label"] == 6 and ds[0]["image"].size == (16, 16)


def test_keep_labels_and_keep_sources(tmp_path):
    a = _set(tmp_path / "a", first=0, identities=2, source=0)
    b = _set(tmp_path / "b", first=10, identities=2, source=2)
    out = tmp_path / "out"
    assert cli.main(["combine", "--set", _inputs((a, None), (b, None)), "--set", "combine.labels=keep",
                     "--out", str(out)]) == 0
    t = read_faces(str(out))
    assert sorted(set(t.column("label").to_pylist())) == sorted(set(read_faces(a).column("label").to_pylist())
                                                                 | set(read_faces(b).column("label").to_pylist()))
    assert sorted(set(t.column("source").to_pylist())) == [0, 2]


def test_offsets_leave_sets_that_are_already_apart():
    def facts(lo, hi):
        return InputFacts(f"set{lo}", hi - lo + 1, np.arange(lo, hi + 1), pa.schema([]))

    assert label_offsets([facts(0, 9), facts(0, 4)], "offset") == [0, 10]
    assert label_offsets([facts(0, 9), facts(20, 24)], "offset") == [0, 0]
    assert label_offsets([facts(5, 9), facts(7, 8), facts(0, 0)], "offset") == [0, 3, 12]
    with pytest.raises(CombineError, match="share label"):
        label_offsets([facts(0, 9), facts(9, 12)], "keep")


def test_s3_in_and_out(tmp_path, s3):
    cfg, root = s3
    real = _set(tmp_path / "real")
    out = f"{root}/combined"
    assert cli.main(["combine", "--set", _inputs((real, 0), (real, 1)), "--out", out,
                     "--set", f"storage.endpoint_url={cfg.endpoint_url}"]) == 0
    t = read_faces(out, cfg)
    assert t.num_rows == 12 and t.column("source").to_pylist() == [0] * 6 + [1] * 6
    assert t.column("label").to_pylist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


@pytest.mark.parametrize(("case", "message"), [
    ("one_input", "give two or more"),
    ("output_is_input", "is also an input"),
    ("incomplete", "manifest"),
    ("bad_source", "combine.inputs\\[\\].source"),
    ("bad_labels", "combine.labels"),
])
def test_bad_input_writes_nothing(tmp_path, case, message):
    real = _set(tmp_path / "real")
    other = _set(tmp_path / "other")
    out = tmp_path / "out"
    sets = {"one_input": [_inputs((real, 0))],
            "output_is_input": [_inputs((real, 0), (other, 1))],
            "incomplete": [_inputs((real, 0), (other, 1))],
            "bad_source": [_inputs((real, -1), (other, 1))],
            "bad_labels": [_inputs((real, 0), (other, 1)), "combine.labels=renumber"]}[case]
    if case == "output_is_input":
        out = tmp_path / "other"
    if case == "incomplete":
        (tmp_path / "other" / faces.MANIFEST).unlink()
    with pytest.raises((config.ConfigError, CombineError, ValueError), match=message):
        module = cli._module("combine")
        module.run(config.load(module.Config, None, [*sets, f"output.path={out}"]))
    assert not (tmp_path / "out").exists()
