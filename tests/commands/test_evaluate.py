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
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "det.png", "grid.png", "histogram.png", "metrics.json",
                                                     "report.md"]
    m = json.loads((out / "metrics.json").read_text())
    s = m["separability"]
    assert (m["images"], m["identities"]) == (24, 6)
    assert (s["n_genuine"], s["n_impostor"]) == (6 * 6, 24 * 23 // 2 - 6 * 6)
    assert 0 <= s["eer"] <= 1 and m["verification"]["pairs"] == 100
    assert m["identity_consistency"] == pytest.approx(0.5, abs=1e-6)
    assert m["leakage"]["total"] == 6 and m["uniqueness"]["total"] == 6
    assert 0 < m["diversity"]["pixel"] < 1 and 0 <= m["diversity"]["fr"] <= 2
    per = m["per_identity"]  # each identity's own figures, keyed by label; their means are the totals
    assert len(per["diversity_fr"]) == len(per["consistency"]) == 6
    assert np.mean(list(per["diversity_fr"].values())) == pytest.approx(m["diversity"]["fr"])
    assert np.mean(list(per["diversity_pixel"].values())) == pytest.approx(m["diversity"]["pixel"])
    assert np.mean(list(per["consistency"].values())) == pytest.approx(0.5, abs=1e-6)  # 4 images each
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


def test_frechet_distance_to_a_reference_set(tmp_path, fr_model, capsys):
    """frechet.reference: the distance between the data's and the reference's FR-embedding
    Gaussians, equal to the closed-form function on the same embeddings; 0 for the set itself."""
    from synthface_ray.commands.fr_common import embed_faces
    from synthface_ray.evaluate.frechet import frechet_distance_of
    from synthface_ray.models.recognition.embedder import Embedder
    from synthface_ray.storage import StorageConfig

    data = _faces(tmp_path / "gen", identities=6, images=4)
    ref = tmp_path / "ref"
    write_faces(toyfaces_table(ToyFacesConfig(identities=8, images_per_identity=4, resolution=16,
                                              first_identity=50)), str(ref))
    base = ["evaluate", "--data", data, "--model", fr_model, "--set", "verification.enabled=false"]
    assert cli.main([*base, "--out", str(tmp_path / "r1"), "--set", f"frechet.reference={ref}"]) == 0
    fd = json.loads((tmp_path / "r1" / "metrics.json").read_text())["frechet"]
    embed = Embedder.from_pretrained(fr_model, device="cpu")
    want = frechet_distance_of(embed_faces(embed, data, StorageConfig(), 64)[0],
                               embed_faces(embed, str(ref), StorageConfig(), 64)[0])
    assert fd["distance"] == pytest.approx(want, rel=1e-6) and fd["distance"] > 0
    assert (fd["images"], fd["reference_images"]) == (24, 32) and "16-d, L2-normalised" in fd["features"]
    assert "warning" not in fd  # 24 and 32 images for 16-d features
    assert "Fréchet distance to" in (tmp_path / "r1" / "report.md").read_text()
    boot = json.loads((tmp_path / "r1" / "metrics.json").read_text())["bootstrap"]  # on by default
    assert (boot["replicates"], boot["identities"]) == (200, 6)
    assert all(len(boot[k]) == 200 for k in ("generated_eer", "fdr", "frechet"))
    assert boot["frechet_point"] == pytest.approx(fd["distance"])  # every image is resampled here
    assert cli.main([*base, "--out", str(tmp_path / "r2"), "--set", f"frechet.reference={data}"]) == 0
    assert json.loads((tmp_path / "r2" / "metrics.json").read_text())["frechet"]["distance"] == pytest.approx(0, abs=1e-6)
    assert "Frechet distance to" in capsys.readouterr().out


def test_a_missing_frechet_reference_fails_before_any_work(tmp_path, fr_model, capsys):
    data = _faces(tmp_path / "gen")
    assert cli.main(["evaluate", "--data", data, "--model", fr_model, "--out", str(tmp_path / "r"),
                     "--set", f"frechet.reference={tmp_path / 'nope'}"]) == 2
    err = capsys.readouterr().err
    assert "frechet.reference=" in err and "does not exist" in err and "embed:" not in err
    assert not (tmp_path / "r").exists()


def test_bootstrap_intervals_pair_two_sets_of_the_same_people(tmp_path, fr_model, capsys):
    """Two sets of the same identities (other images) resample the same people replicate by
    replicate, so `synthface papers` can pair their EER, FDR and Fréchet distance; the report
    shows each set's own intervals; 0 replicates turn it off; 1 is refused before any work."""
    from synthface_ray.benchmark.claims import Comparison, outcome

    ref = _faces(tmp_path / "ref", identities=5, images=4)
    base = ["--model", fr_model, "--set", "verification.enabled=false", "--set", f"frechet.reference={ref}",
            "--set", "bootstrap.replicates=40", "--set", "bootstrap.impostor=500"]
    metrics = {}
    for name, seed in (("a", 0), ("b", 1)):
        data = tmp_path / f"gen-{name}"
        write_faces(toyfaces_table(ToyFacesConfig(identities=6, images_per_identity=4, resolution=16,
                                                  seed=seed)), str(data))
        assert cli.main(["evaluate", "--data", str(data), "--out", str(tmp_path / name), *base]) == 0
        metrics[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert metrics["a"]["bootstrap"]["identities_key"] == metrics["b"]["bootstrap"]["identities_key"]
    assert metrics["a"]["bootstrap"]["frechet"] != metrics["b"]["bootstrap"]["frechet"]
    o = outcome(Comparison("a", "b", "frechet", "lower"), None, metrics, None)
    assert o.pairs == "6 identities resampled (40 replicates)" and o.diff.resolved
    text = (tmp_path / "a" / "report.md").read_text()
    assert re.search(r"95% intervals over the identities \(6 identities resampled, 40 bootstrap "
                     r"replicates, basic interval\): EER \[.*\], FDR \[.*\], Fréchet distance \[", text)
    off = tmp_path / "off"
    assert cli.main(["evaluate", "--data", str(tmp_path / "gen-a"), "--out", str(off), *base,
                     "--set", "bootstrap.replicates=0"]) == 0
    assert "bootstrap" not in json.loads((off / "metrics.json").read_text())
    assert "95% intervals" not in (off / "report.md").read_text()
    capsys.readouterr()
    assert cli.main(["evaluate", "--data", str(tmp_path / "gen-a"), "--out", str(tmp_path / "one"), *base,
                     "--set", "bootstrap.replicates=1"]) == 2
    assert "bootstrap.replicates=1 gives no interval" in capsys.readouterr().err
    assert not (tmp_path / "one").exists()
