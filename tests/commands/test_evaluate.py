"""`synthface evaluate` end to end on real files: report folder, metrics, bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pytest

from synthface_ray import cli
from synthface_ray.data.faces import write_faces
from synthface_ray.data.identities import identities_table
from synthface_ray.data.toyfaces import ToyFacesConfig, toyfaces_table


@pytest.fixture(scope="module")
def fr_model(tmp_path_factory):
    import torch

    from synthface_ray.models.recognition.embedder import save_backbone
    from synthface_ray.models.recognition.iresnet import BackboneConfig, build_backbone

    torch.manual_seed(0)
    cfg = BackboneConfig(input_size=32, width=4, embedding_dim=16)
    return str(save_backbone(build_backbone(cfg).eval(), cfg, tmp_path_factory.mktemp("fr") / "export"))


def _faces(path, identities=6, images=4, fr_cosine=False):
    table = toyfaces_table(ToyFacesConfig(identities=identities, images_per_identity=images, resolution=16))
    if fr_cosine:
        table = table.append_column("fr_cosine", pa.array(np.linspace(0.2, 0.8, table.num_rows), pa.float32()))
    write_faces(table, str(path))
    return str(path)


def test_report_folder_and_metrics(tmp_path, fr_model, capsys):
    data = _faces(tmp_path / "gen", fr_cosine=True)
    real = tmp_path / "real.parquet"
    import pyarrow.parquet as pq

    pq.write_table(identities_table(np.arange(3), np.random.default_rng(0).standard_normal((3, 16)), "class_center"), real)
    out = tmp_path / "report"
    assert cli.main(["evaluate", "--data", data, "--model", fr_model, "--out", str(out),
                     "--set", "verification.genuine=50", "--set", "verification.impostor=50",
                     "--set", f"leakage.real={real}", "--set", "leakage.tau=0.5"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "histogram.png", "metrics.json", "report.md"]
    m = json.loads((out / "metrics.json").read_text())
    s = m["separability"]
    assert (m["images"], m["identities"]) == (24, 6)
    assert (s["n_genuine"], s["n_impostor"]) == (6 * 6, 24 * 23 // 2 - 6 * 6)
    assert 0 <= s["eer"] <= 1 and m["verification"]["pairs"] == 100
    assert m["identity_consistency"] == pytest.approx(0.5, abs=1e-6)
    assert m["leakage"]["total"] == 6 and m["uniqueness"]["total"] == 6
    assert 0 < m["diversity"]["pixel"] < 1 and 0 <= m["diversity"]["fr"] <= 2
    text = (out / "report.md").read_text()
    assert "EER" in text and "identity consistency: mean fr_cosine 0.5000" in text
    assert "report:" in capsys.readouterr().out


@pytest.mark.parametrize(("case", "message"), [
    ("one_image", r"fewer than 2|1 image"),
    ("one_identity", r"single identity|at least 2 identities"),
    ("leak_no_tau", "leakage.tau"),
])
def test_bad_input(tmp_path, fr_model, capsys, case, message):
    if case == "one_image":
        data = _faces(tmp_path / "d", identities=3, images=1)
    elif case == "one_identity":
        data = _faces(tmp_path / "d", identities=1, images=4)
    else:
        data = _faces(tmp_path / "d")
    argv = ["evaluate", "--data", data, "--model", fr_model, "--out", str(tmp_path / "out")]
    if case == "leak_no_tau":
        argv += ["--set", "leakage.real=x.parquet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_corrupt_images_are_reported_by_row_or_refused_when_strict(tmp_path, fr_model, capsys):
    """Issue 21 item 5: evaluate dropped corrupt images silently (and read fr_cosine of every row
    beside the embeddings of the decoded ones)."""
    table = toyfaces_table(ToyFacesConfig(identities=6, images_per_identity=4, resolution=16))
    cos = np.linspace(0.2, 0.8, table.num_rows).astype(np.float32)
    images = table.column("image").to_pylist()
    for row in (5, 17):
        images[row] = {**images[row], "bytes": b"not an image"}
    table = table.set_column(table.schema.get_field_index("image"), "image",
                             pa.array(images, table.schema.field("image").type))
    write_faces(table.append_column("fr_cosine", pa.array(cos)), str(tmp_path / "gen"))
    argv = ["evaluate", "--data", str(tmp_path / "gen"), "--model", fr_model,
            "--set", "verification.genuine=20", "--set", "verification.impostor=20"]
    assert cli.main([*argv, "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "WARNING:" in out and "skipped 2 corrupt ones" in out and "row 5" in out and "row 17" in out
    m = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert (m["images"], m["skipped_images"], m["skipped_rows"]) == (22, 2, [5, 17])
    assert m["identity_consistency"] == pytest.approx(float(np.delete(cos, [5, 17]).mean()), abs=1e-6)
    assert "2 corrupt image(s) skipped** (rows 5, 17)" in (tmp_path / "report" / "report.md").read_text()
    assert cli.main([*argv, "--out", str(tmp_path / "strict"), "--set", "data.strict=true"]) == 2
    assert "row 5" in capsys.readouterr().err and not (tmp_path / "strict").exists()
