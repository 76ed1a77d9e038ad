"""`synthface embed` and `synthface verify` end to end with a real (tiny, untrained) exported
IResNet: the plumbing, the output formats and the errors. Accuracy of a trained model is the FR
training job's concern."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from synthface_ray import cli
from synthface_ray.data.faces import read_faces, write_faces
from synthface_ray.data.identities import embeddings_of
from synthface_ray.data.toyfaces import ToyFacesConfig, toyfaces_table
from synthface_ray.models.recognition.embedder import save_backbone
from synthface_ray.models.recognition.iresnet import BackboneConfig, build_backbone


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("fr")
    torch.manual_seed(0)
    cfg = BackboneConfig(input_size=32, width=4, embedding_dim=16)
    save_backbone(build_backbone(cfg), cfg, root / "model")
    write_faces(toyfaces_table(ToyFacesConfig(identities=6, images_per_identity=5, resolution=32)),
                str(root / "faces"))
    return root


def test_embed_writes_unit_class_centres(setup, tmp_path, capsys):
    out = tmp_path / "ids.parquet"
    assert cli.main(["embed", "--model", str(setup / "model"), "--data", str(setup / "faces"),
                     "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert table.column("identity_id").to_pylist() == list(range(6))
    assert set(table.column("origin").to_pylist()) == {"class_center"}
    assert np.allclose(np.linalg.norm(embeddings_of(table), axis=1), 1.0, atol=1e-5)
    assert "wrote 6 class centres (16-d) of 30 images" in capsys.readouterr().out
    assert cli.main(["embed", "--model", str(setup / "model"), "--data", str(setup / "faces"),
                     "--out", str(out)]) == 2  # exists, no overwrite


def test_verify_on_faces_pairs_writes_a_report(setup, tmp_path, capsys):
    report = tmp_path / "r.json"
    assert cli.main(["verify", "--model", str(setup / "model"), "--data", str(setup / "faces"),
                     "--set", "input.genuine=40", "--set", "input.impostor=40",
                     "--set", f"output.path={report}"]) == 0
    data = json.loads(report.read_text())
    assert data["pairs"] == 80 and 0 <= data["accuracy"] <= 1 and 0 <= data["eer"] <= 1
    captured = capsys.readouterr()
    assert "10-fold" in captured.out
    assert "40 impostor pairs cannot resolve FAR=0.001 (fewer than 10000)" in captured.err
    assert len(data["warnings"]) == 2  # 1e-3 and 1e-4


def test_verify_on_an_insightface_bin(setup, tmp_path, capsys):
    table = read_faces(str(setup / "faces"))
    images = [row["bytes"] for row in table.column("image").to_pylist()[:20]]
    with open(tmp_path / "set.bin", "wb") as fh:
        pickle.dump((images, [i % 2 == 0 for i in range(10)]), fh)
    assert cli.main(["verify", "--model", str(setup / "model"), "--data", str(tmp_path / "set.bin"),
                     "--set", "input.folds=5"]) == 0
    assert "10 pairs" in capsys.readouterr().out


def test_errors_name_the_problem(setup, tmp_path, capsys):
    one = tmp_path / "one"
    write_faces(toyfaces_table(ToyFacesConfig(identities=1, images_per_identity=4, resolution=32)), str(one))
    assert cli.main(["verify", "--model", str(setup / "model"), "--data", str(one)]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert cli.main(["verify", "--model", str(tmp_path / "nope"), "--data", str(one)]) == 2
    assert "exported FR backbone" in capsys.readouterr().err
    assert cli.main(["verify", "--data", str(one)]) == 2
    assert "model.path is not set" in capsys.readouterr().err
