"""Issue 21 item 1: a dataset of ours without its manifest (an interrupted run) is refused by every
command that reads faces, naming what is there and what is missing, unless the reader's
``allow_incomplete`` is set (then it is read with a warning giving the counts)."""

from __future__ import annotations

import json
import os

import pytest
from helpers import png_bytes

from synthface_ray import cli, storage
from synthface_ray.data import faces, schema


def _table(n: int):
    return schema.faces_table([png_bytes(i) for i in range(n)], [i // 2 for i in range(n)], 1)


@pytest.fixture
def incomplete(tmp_path, gen_inputs):
    """A generation run killed after 2 of its shards: part-00000/1 (8 rows) and job.json naming
    its 44-row plan, no manifest."""
    writer = faces.FacesWriter(storage.resolve(str(tmp_path / "inc")), rows_per_shard=4)
    writer.write(_table(10))  # two shards written; the last 2 rows never were
    (tmp_path / "inc" / "job.json").write_text(json.dumps({"config": {"input": {"plan": gen_inputs["plan"]}}}))
    return tmp_path / "inc"


def _commands(inc, out, fr):
    """(argv, the setting that opts in) of every command that reads a faces dataset."""
    return {
        "export-recordio": (["export", "--from", inc, "--format", "recordio", "--out", out], "input.allow_incomplete"),
        "export-folders": (["export", "--from", inc, "--format", "folders", "--out", out], "input.allow_incomplete"),
        "evaluate": (["evaluate", "--data", inc, "--model", fr, "--out", out], "data.allow_incomplete"),
        "embed": (["embed", "--data", inc, "--model", fr, "--out", f"{out}.parquet"], "input.allow_incomplete"),
        "verify": (["verify", "--data", inc, "--model", fr, "--set", f"output.path={out}.json"],
                   "input.allow_incomplete"),
        "identities": (["identities", "--kind", "class_centers", "--set", f"source.faces={inc}",
                        "--set", f"source.fr_model={fr}", "--out", f"{out}.parquet"], "source.allow_incomplete"),
        "train-fr": (["train-fr", "--data", inc, "--set", f"run.storage_path={out}"], "data.allow_incomplete"),
        "train-generator": (["train-generator", "--data", inc, "--set", f"run.storage_path={out}"],
                            "data.allow_incomplete"),
    }


@pytest.mark.parametrize("command", ["export-recordio", "export-folders", "evaluate", "embed", "verify",
                                     "identities", "train-fr", "train-generator"])
def test_every_reader_refuses_a_dataset_without_its_manifest(command, incomplete, tmp_path, gen_inputs, capsys):
    out = str(tmp_path / "out")
    argv, key = _commands(str(incomplete), out, gen_inputs["fr"])[command]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"{incomplete} is incomplete: it has no manifest.json" in err, err
    assert "2 shard(s) hold 8 rows of the 44 the run planned (36 missing)" in err
    assert f"--set {key}=true" in err and "Traceback" not in err
    assert not [p for p in os.listdir(tmp_path) if p.startswith("out")]  # nothing written


def test_opting_in_reads_what_is_there_with_a_warning(incomplete, tmp_path, capsys):
    out = tmp_path / "rec"
    argv = ["export", "--from", str(incomplete), "--format", "recordio", "--out", str(out),
            "--set", "input.allow_incomplete=true"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "WARNING:" in captured.err and "2 shard(s) hold 8 rows" in captured.err
    assert "input.allow_incomplete=true" in captured.err
    assert "8 images" in captured.out


def test_a_manifest_listing_a_missing_shard_is_refused(tmp_path):
    out = str(tmp_path / "ds")
    faces.write_faces(_table(9), out, rows_per_shard=4)
    os.remove(tmp_path / "ds" / "part-00001.parquet")
    with pytest.raises(faces.IncompleteDatasetError, match=r"1 of the 3 files its manifest.json lists are missing "
                                                           r"\(part-00001.parquet\)"):
        faces.open_faces(out)


def test_other_tools_parquet_folders_are_still_read(tmp_path):
    import pyarrow.parquet as pq

    (tmp_path / "hf").mkdir()
    pq.write_table(_table(3), tmp_path / "hf" / "train-00000-of-00001.parquet")
    assert faces.read_faces(str(tmp_path / "hf")).num_rows == 3
