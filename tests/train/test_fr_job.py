"""FR training end to end: the data checks (held-out split, class numbering, source mix), bad
input stopped before any worker, and a real Ray Train run (2 workers, ZeRO-2 over gloo, two
weighted sources) that crashes, resumes from its checkpoint, exports and verifies."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from synthface_ray import cli, storage
from synthface_ray.config import from_dict
from synthface_ray.data.faces import read_faces, write_faces
from synthface_ray.data.toyfaces import ToyFacesConfig, toyfaces_table
from synthface_ray.models.recognition.embedder import Embedder
from synthface_ray.train import fr_job
from synthface_ray.train.fr_job import check_data, decode_classes, largest_remainder, mix
from synthface_ray.train.monitor import read_metrics
from synthface_ray.train.recognition import TrainFRConfig


def _faces(path, identities: int, images: int, seed: int = 0, label_offset: int = 0) -> str:
    table = toyfaces_table(ToyFacesConfig(identities=identities, images_per_identity=images,
                                          resolution=16, seed=seed))
    labels = table.column("label").to_numpy() + label_offset
    table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels))
    write_faces(table, str(path))
    return str(path)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """8 identities x 6 images (labels 0..7)."""
    return _faces(tmp_path_factory.mktemp("real") / "faces", 8, 6)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """4 identities x 6 images whose labels (100..103) overlap nothing, from another seed."""
    return _faces(tmp_path_factory.mktemp("syn") / "faces", 4, 6, seed=1, label_offset=100)


def job_config(root: str, **sections) -> dict:
    cfg = {
        "backbone": {"input_size": 32, "width": 4, "embedding_dim": 16},
        "margin": {"s": 16.0, "m": 0.2},
        "optim": {"micro_batch": 4, "max_steps": 6, "lr": 0.05},
        "scaling": {"num_workers": 2, "cpus_per_worker": 0.5, "torch_threads": 1},
        "run": {"storage_path": root, "name": "fr", "report_every": 2, "checkpoint_every": 3},
        "data": {"shuffle_buffer": 8},
        "export": {"onnx": False},  # the ONNX export: tests/train/test_recognition_interop.py
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    return cfg


def tensorboard_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a TensorBoard log folder, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    out: dict[str, list[tuple[int, float]]] = {}
    for run, tags in mux.Runs().items():
        for tag in tags["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in mux.Scalars(run, tag))
    return {tag: sorted(points) for tag, points in out.items()}


def test_largest_remainder_splits_exactly():
    assert largest_remainder([1.0], 7) == [7]
    assert largest_remainder([0.5, 0.5], 7) == [4, 3]
    assert largest_remainder([3, 1], 8) == [6, 2]
    for w, n in [([0.2, 0.3, 0.5], 13), ([1, 1, 1], 10), ([0.01, 0.99], 64)]:
        counts = largest_remainder(w, n)
        assert sum(counts) == n
        assert np.abs(np.array(counts) - np.array(w) / sum(w) * n).max() < 1


def test_classes_number_sources_densely_and_hold_out_identities(real, synthetic, tmp_path):
    cfg = from_dict(TrainFRConfig, job_config(str(tmp_path), data={"sources": [
        {"path": real, "weight": 3}, {"path": synthetic, "weight": 1}]},
        holdout={"identities": 3}, optim={"micro_batch": 8}))
    facts = check_data(cfg)
    assert len(facts.heldout) == 3 and set(facts.heldout) <= set(range(8))
    assert facts.num_classes == 5 + 4 and facts.counts == [6, 2]
    first, second = facts.sources
    assert (first.rows, first.identities, second.rows, second.identities) == (30, 5, 24, 4)
    assert sorted(first.class_map[first.class_map >= 0]) == list(range(5))
    assert (first.class_map[facts.heldout] == -1).all()
    assert list(second.class_map[100:104]) == [5, 6, 7, 8] and (second.class_map[:100] == -1).all()
    assert check_data(cfg).heldout == facts.heldout  # the split is seeded

    table = toyfaces_table(ToyFacesConfig(identities=8, images_per_identity=2, resolution=16))
    out = decode_classes(table, 16, False, first.class_map)
    kept = ~np.isin(table.column("label").to_numpy(), facts.heldout)
    assert out["image"].shape == (kept.sum(), 16, 16, 3) and out["image"].dtype == np.uint8
    np.testing.assert_array_equal(out["label"], first.class_map[table.column("label").to_numpy()[kept]])

    classes = fr_job.classes_table(facts)
    assert sorted(classes.column("class_id").to_pylist()) == list(range(9))
    assert classes.filter(pa.compute.equal(classes["class_id"], 5)).column("label").to_pylist() == [100]


def test_mix_concatenates_the_sources_batches():
    a = {"image": torch.zeros(3, 2), "label": torch.tensor([0, 1, 2]), "source": torch.zeros(3)}
    b = {"image": torch.ones(1, 2), "label": torch.tensor([7])}
    out = mix([a, b])
    assert set(out) == {"image", "label"}
    assert out["label"].tolist() == [0, 1, 2, 7] and out["image"][3].tolist() == [1, 1]


def write_yaml(tmp_path, cfg: dict) -> str:
    import yaml

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.parametrize(("change", "message"), [
    ({"backbone": {"name": "resnet9"}}, "backbone.name"),
    ({"margin": {"name": "adaface"}}, "margin.name"),
    ({"num_classes": 5}, r"label ids out of range: the data has 8 training identities .* num_classes=5"),
    ({"holdout": {"identities": 1}}, "at least 2 held-out identities"),
    ({"holdout": {"identities": 7}}, r"holdout.identities=7 but source .* has 8 identities"),
    ({"data": {"path": "NOLABEL"}}, "label"),
    ({"data": {"path": None}}, r"no training data: set data.path \(--data\)"),
    ({"optim": {"micro_batch": 32}}, "48 training rows but one step takes 32 per worker"),
    ({"data": {"path": None, "sources": [{"path": "REAL", "weight": 1}, {"path": "REAL", "weight": 0.01}]}},
     "gets 0 rows of a micro-batch"),
])
def test_bad_input_fails_before_any_worker(real, tmp_path, capsys, change, message):
    data = change.get("data", {})
    if data.get("path") == "NOLABEL":
        folder = tmp_path / "nolabel"
        folder.mkdir()
        table = toyfaces_table(ToyFacesConfig(identities=2, images_per_identity=2, resolution=16))
        pq.write_table(table.drop_columns(["label"]), folder / "part-00000.parquet")
        data["path"] = str(folder)
    for source in data.get("sources", []):
        source["path"] = real
    root = tmp_path / "runs"
    cfg = job_config(str(root), **change)
    if "sources" not in cfg["data"]:
        cfg["data"].setdefault("path", real)
    assert cli.main(["train-fr", "--config", write_yaml(tmp_path, cfg)]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not root.exists()  # nothing started, nothing written


def test_dry_run_prints_the_plan(real, synthetic, tmp_path, capsys):
    cfg = job_config(str(tmp_path / "runs"), data={"sources": [{"path": real}, {"path": synthetic}]},
                     holdout={"identities": 2})
    assert cli.main(["train-fr", "--config", write_yaml(tmp_path, cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "36 images of 6 training identities" in out and "2 per micro-batch" in out
    assert "hold out 2 identities of source 0" in out and "over 10 classes" in out
    assert "trained as separate classes, unchecked; set data.same_identity.fr_model" in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_two_sources_crash_resume_export_and_heldout_verification(ray_local, real, synthetic, tmp_path):
    cfg = from_dict(TrainFRConfig, job_config(
        str(tmp_path / "runs"),
        data={"sources": [{"path": real, "weight": 3}, {"path": synthetic, "weight": 1}]},
        holdout={"identities": 3, "genuine": 40, "impostor": 40, "folds": 4}))
    with pytest.raises(Exception, match="injected failure at step 4"):
        fr_job.fit(cfg, fail_at_step=4)
    assert not storage.exists(cfg.export_dir().join("backbone_config.json"))  # no export from a crash

    result = fr_job.fit(cfg, fail_at_step=4)  # same run name: resumes at step 3, does not fail again
    assert result.metrics["step"] == 6 and result.metrics["resumed_from"] == 3
    history = read_metrics(cfg.run_dir())
    assert [m["step"] for m in history] == [2, 3, 4, 6]  # the crashed run's step 4 is cut back
    assert [m["resumed_from"] for m in history] == [0, 0, 3, 3]
    assert all(np.isfinite(m["loss"]) and m["samples_per_s"] > 0 for m in history)

    export = cfg.export_dir().path
    embed = Embedder.from_pretrained(export, device="cpu")
    emb = embed(np.zeros((2, 32, 32, 3), np.uint8))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, rtol=1e-5)
    assert torch.load(f"{export}/centers.pt").shape == (9, 16)
    assert pq.read_table(f"{export}/classes.parquet").num_rows == 9
    report = fr_job.read_heldout_report(cfg)
    assert report["identities"] == 3 and report["pairs"] == 80 and report["folds"] == 4
    assert 0 <= report["accuracy"] <= 1 and 0 <= report["eer"] <= 1
    # TensorBoard (read with its own EventAccumulator): the held-out metrics beside the training curve
    scalars = tensorboard_scalars(cfg.run_dir().join("tensorboard").path)
    assert scalars["heldout/accuracy"] == [(6, pytest.approx(report["accuracy"], abs=1e-6))]
    assert scalars["heldout/eer"] == [(6, pytest.approx(report["eer"], abs=1e-6))]
    assert [step for step, _ in scalars["train/loss"]][-2:] == [4, 6]


# one person in two sources (data.same_identity) -----------------------------------------------
@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    """An (untrained) FR export: it embeds identical images identically, which is all these
    tests need to tell a copied identity from a new one."""
    from synthface_ray.models.recognition.embedder import save_backbone
    from synthface_ray.models.recognition.iresnet import BackboneConfig, build_backbone

    torch.manual_seed(0)
    config = BackboneConfig(input_size=32, width=4, embedding_dim=16)
    return str(save_backbone(build_backbone(config), config, tmp_path_factory.mktemp("judge") / "fr"))


@pytest.fixture(scope="module")
def copies(tmp_path_factory, real):
    """Real identities 2 and 5 relabelled 202 and 205 (a generator's copies), then 3 new people
    (labels 300..302, another seed)."""
    table = read_faces(real)
    labels = table.column("label").to_numpy()
    copied = table.filter(pa.array(np.isin(labels, [2, 5])))
    copied = copied.set_column(copied.schema.get_field_index("label"), "label",
                               pa.array(copied.column("label").to_numpy() + 200))
    new = toyfaces_table(ToyFacesConfig(identities=3, images_per_identity=6, resolution=16, seed=7))
    new = new.set_column(new.schema.get_field_index("label"), "label",
                         pa.array(new.column("label").to_numpy() + 300))
    path = tmp_path_factory.mktemp("copies") / "faces"
    write_faces(pa.concat_tables([copied, new.cast(copied.schema)]), str(path))
    return str(path)


def same_identity_config(tmp_path, real, copies, judge, action: str, **data) -> TrainFRConfig:
    return from_dict(TrainFRConfig, job_config(str(tmp_path), data={
        "sources": [{"path": real}, {"path": copies}],
        "same_identity": {"fr_model": judge, "threshold": 0.9999, "action": action}, **data}))


def test_same_identity_warns_and_trains_the_copies_as_numbered(real, copies, judge, tmp_path, capsys):
    facts = check_data(same_identity_config(tmp_path, real, copies, judge, "warn"))
    out = capsys.readouterr().out
    assert "WARNING: 2 identities of later sources are the same person" in out, out
    assert re.search(r"label 202 ~ .* label 2 \(cosine 1\.000\)", out), out
    assert facts.num_classes == 8 + 5
    assert list(facts.sources[1].class_map[[202, 205, 300, 301, 302]]) == [8, 9, 10, 11, 12]


def test_same_identity_merge_trains_a_copy_as_its_real_class(real, copies, judge, tmp_path, capsys):
    facts = check_data(same_identity_config(tmp_path, real, copies, judge, "merge",
                                            same_identity={"fr_model": judge, "threshold": 0.9999,
                                                           "action": "merge", "images_per_identity": 2}))
    assert "merged into one class each" in capsys.readouterr().out
    assert facts.num_classes == 8 + 3
    second = facts.sources[1]
    assert list(second.class_map[[202, 205, 300, 301, 302]]) == [2, 5, 8, 9, 10]
    assert (second.rows, second.identities) == (30, 5)  # every image still trains
    classes = fr_job.classes_table(facts)
    two = classes.filter(pa.compute.equal(classes["class_id"], 2))
    assert sorted(zip(two["source_index"].to_pylist(), two["label"].to_pylist())) == [(0, 2), (1, 202)]


def test_same_identity_merge_resolves_chains_and_skips_held_out():
    from synthface_ray.mining.same_identity import Match

    trained = [np.array([0, 1, 3]), np.array([10, 11]), np.array([20])]  # label 2 of source 0 held out
    merged = [Match(1, 11, 0, 3, 0.99), Match(2, 20, 1, 11, 0.98)]
    maps, n = fr_job.number_classes(trained, merged, [4, 12, 21])
    assert n == 4 and list(maps[0]) == [0, 1, -1, 2]
    assert list(maps[1][10:]) == [3, 2] and maps[2][20] == 2


def test_same_identity_error_refuses_and_no_match_says_so(real, copies, synthetic, judge, tmp_path, capsys):
    root = tmp_path / "runs"
    cfg = job_config(str(root), data={"sources": [{"path": real}, {"path": copies}],
                                      "same_identity": {"fr_model": judge, "threshold": 0.9999,
                                                        "action": "error"}})
    assert cli.main(["train-fr", "--config", write_yaml(tmp_path, cfg)]) == 2
    err = capsys.readouterr().err
    assert "2 identities of later sources are the same person" in err and "action: merge" in err
    assert not root.exists()
    facts = check_data(from_dict(TrainFRConfig, job_config(str(root), data={
        "sources": [{"path": copies}, {"path": synthetic}],
        "same_identity": {"fr_model": judge, "threshold": 0.9999, "action": "error"}})))
    assert facts.num_classes == 5 + 4 and "no identity of a later source matches" in capsys.readouterr().out


@pytest.mark.parametrize(("same", "message"), [
    ({"threshold": 1.0}, r"data.same_identity.threshold=1.0 must be a cosine in the open interval"),
    ({"action": "drop"}, r"data.same_identity.action='drop' is not allowed"),
    ({"images_per_identity": 0}, r"data.same_identity.images_per_identity=0 is out of range"),
    ({"fr_model": "NOWHERE"}, r"data.same_identity.fr_model=.*NOWHERE.*exported FR backbone"),
])
def test_same_identity_bad_input_fails_before_any_worker(real, copies, tmp_path, capsys, same, message):
    root = tmp_path / "runs"
    same = {**same, "fr_model": str(tmp_path / same["fr_model"]) if "fr_model" in same else None}
    cfg = job_config(str(root), data={"sources": [{"path": real}, {"path": copies}], "same_identity": same})
    assert cli.main(["train-fr", "--config", write_yaml(tmp_path, cfg)]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not root.exists()


@pytest.mark.slow
def test_one_seed_trains_the_same_model_twice(ray_local, real, tmp_path):
    """data.deterministic (the default): Ray Data keeps the block order and hands blocks to the
    two workers in it, each worker's local shuffle is seeded, so a second run of one config and
    seed sees the same batches and exports the same weights, byte for byte (without it the losses
    already differed at step 2: the experiment of the session that added it)."""
    runs = []
    for name in ("first", "second"):
        cfg = from_dict(TrainFRConfig, job_config(str(tmp_path / "runs"), run={"name": name, "report_every": 1,
                                                                              "checkpoint_every": 4},
                                                  data={"path": real, "shuffle_buffer": 16},
                                                  optim={"max_steps": 4}, holdout={"identities": 0}))
        fr_job.fit(cfg)
        runs.append((cfg, [m["loss"] for m in read_metrics(cfg.run_dir())]))
    (a, loss_a), (b, loss_b) = runs
    assert len(loss_a) == 4 and loss_a == loss_b
    for name in ("backbone.safetensors", "centers.pt"):
        assert Path(a.export_dir().path, name).read_bytes() == Path(b.export_dir().path, name).read_bytes()
