"""Generator training end to end: bad input stops before any worker, and real Ray Train runs
(2 workers, DeepSpeed ZeRO-2 over gloo) resume from their checkpoints after a crash."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from synthface_ray import cli, storage
from synthface_ray.config import from_dict
from synthface_ray.data.toyfaces import ToyFacesConfig, toyfaces_table
from synthface_ray.models.generator import IdentityGenerator
from synthface_ray.train import generator_job, job
from synthface_ray.train.generator import EXPORT_MARKER, TrainGeneratorConfig
from synthface_ray.train.monitor import read_metrics

IDENTITIES = 6


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """6 identities x 8 ToyFaces at 16x16."""
    from synthface_ray.data.faces import write_faces

    path = tmp_path_factory.mktemp("toy") / "faces"
    write_faces(toyfaces_table(ToyFacesConfig(identities=IDENTITIES, images_per_identity=8,
                                              resolution=16)), str(path))
    return str(path)


def job_config(data_path: str, root: str, **sections) -> dict:
    cfg = {
        "data": {"path": data_path, "shuffle_buffer": 16},
        "generator": {"num_identities": IDENTITIES, "block_out_channels": [8, 16],
                      "norm_num_groups": 4, "cross_attention_levels": [False, True],
                      "sample_size": 16, "context_dim": 16},
        "optim": {"micro_batch": 4, "max_steps": 8},
        "scaling": {"num_workers": 2, "cpus_per_worker": 0.5, "torch_threads": 1},
        "run": {"storage_path": root, "name": "run", "report_every": 2, "checkpoint_every": 4},
        "preview": {"every": 4, "identities": 2, "images": 2, "steps": 2},
    }
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value)
    return cfg


def write_yaml(tmp_path, cfg: dict) -> str:
    import yaml

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.parametrize(("change", "message"), [
    ({"objective": {"name": "flow_matching"}}, "objective.name"),
    ({"deepspeed": {"zero_stage": 5}}, "deepspeed.zero_stage=5"),
    ({"deepspeed": {"precision": "fp16"}, "scaling": {"device": "cpu"}}, "fp16 is not supported on CPU"),
    ({"generator": {"num_identities": 4}}, r"condition ids out of range: .* labels up to 5"),
    ({"generator": {"num_sources": 1}, "data": {"path": "SOURCE2"}}, "source labels up to 2"),
    ({"data": {"path": "NOLABEL"}}, "label"),
    ({"optim": {"micro_batch": 32}}, "48 rows but one step needs .* = 64"),
])
def test_bad_input_fails_before_any_worker(toy, tmp_path, capsys, change, message):
    if change.get("data", {}).get("path") == "NOLABEL":
        folder = tmp_path / "nolabel"
        folder.mkdir()
        table = toyfaces_table(ToyFacesConfig(identities=2, images_per_identity=2, resolution=16))
        pq.write_table(table.drop_columns(["label"]), folder / "part-00000.parquet")
        change = {"data": {"path": str(folder)}}
    if change.get("data", {}).get("path") == "SOURCE2":
        from synthface_ray.data.faces import write_faces

        table = toyfaces_table(ToyFacesConfig(identities=2, images_per_identity=2, resolution=16))
        table = table.set_column(table.schema.get_field_index("source"), "source",
                                 pa.array([0, 2, 1, 0], pa.int64()))
        write_faces(table, str(tmp_path / "src2"))
        change = {**change, "data": {"path": str(tmp_path / "src2")}}
    root = tmp_path / "runs"
    cfg = job_config(toy, str(root), **change)
    assert cli.main(["train-generator", "--config", write_yaml(tmp_path, cfg)]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not root.exists()  # nothing started, nothing written


@pytest.mark.slow
def test_a_worker_crash_restarts_the_group_which_resumes_at_the_checkpoint_and_exports_on_s3(ray_local, s3, toy):
    """One fit on S3: the workers crash at step 3, Ray Train restarts them (max_failures 1), they
    resume at the step-2 checkpoint and finish; previews, loss curve, TensorBoard and an export
    that loads. (A crash that exhausts max_failures, then a re-run resuming the run folder, is
    train/job.py's code for every task: tests/train/test_fr_job.py runs it, at the same cost.)"""
    store, bucket = s3
    data = job_config(toy, f"{bucket}/runs", run={"max_failures": 1, "checkpoint_every": 2,
                                                   "report_every": 1},
                      optim={"max_steps": 4}, preview={"every": 2})
    data["storage"] = {"endpoint_url": store.endpoint_url}
    cfg = from_dict(TrainGeneratorConfig, data)
    result = generator_job.fit(cfg, fail_at_step=3)
    assert result.metrics["step"] == 4 and result.metrics["resumed_from"] == 2
    run = cfg.run_dir()
    history = read_metrics(run)
    assert [m["step"] for m in history] == [1, 2, 3, 4]
    assert all(m["loss"] > 0 and m["samples_per_s"] > 0 for m in history)
    assert storage.exists(cfg.export_dir().join(EXPORT_MARKER))
    assert storage.exists(cfg.export_dir().join("unet", "diffusion_pytorch_model.safetensors"))
    samples = storage.list_files(run.join("samples"), ".png")
    assert [s.rsplit("/", 1)[1] for s in samples] == ["step_0000002.png", "step_0000004.png"]
    assert storage.exists(run.join("loss_curve.png"))
    assert storage.list_files(run.join("tensorboard"))
    with storage.local_copy(cfg.export_dir()) as folder, torch.no_grad():
        out = IdentityGenerator.from_pretrained(folder)(torch.randn(2, 3, 16, 16), 10, cond=torch.tensor([0, 5]))
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()


@pytest.mark.slow
def test_per_image_contexts_train_the_same_generator_twice(ray_local, toy, tmp_path):
    """data.context_fr_model through real Ray Train + DeepSpeed: the workers load the FR export and
    condition every image on its own embedding (16 px images resized to the FR model's 32); two
    runs of one config and seed see the same batches and export the same weights, byte for byte
    (two fresh `synthface demo` runs of sessions 35 and 36 did the same at full size)."""
    from pathlib import Path

    import numpy as np

    from synthface_ray.models.recognition.embedder import save_backbone
    from synthface_ray.models.recognition.iresnet import BackboneConfig, build_backbone

    torch.manual_seed(0)
    fr = BackboneConfig(input_size=32, width=4, embedding_dim=8)
    save_backbone(build_backbone(fr), fr, tmp_path / "fr")
    table = np.random.default_rng(0).normal(size=(IDENTITIES, 8)).astype(np.float32)
    np.save(tmp_path / "centres.npy", table / np.linalg.norm(table, axis=1, keepdims=True))
    exports, losses = [], []
    for name in ("first", "second"):
        cfg = from_dict(TrainGeneratorConfig, job_config(
            toy, str(tmp_path / "runs"), run={"name": name, "report_every": 1, "checkpoint_every": 4},
            generator={"condition": "embedding", "embedding_dim": 8},
            data={"label_embeddings": str(tmp_path / "centres.npy"), "context_fr_model": str(tmp_path / "fr")},
            optim={"max_steps": 4}, preview={"every": 0}))
        generator_job.fit(cfg)
        losses.append([m["loss"] for m in read_metrics(cfg.run_dir())])
        exports.append(Path(cfg.export_dir().path))
    assert len(losses[0]) == 4 and losses[0] == losses[1]
    weights = sorted(p.relative_to(exports[0]) for p in exports[0].rglob("*.safetensors"))
    assert weights  # the UNet and the condition encoder
    for rel in weights:
        assert (exports[0] / rel).read_bytes() == (exports[1] / rel).read_bytes(), rel


def test_worker_layout_that_would_starve_the_data_feed_is_refused(toy, tmp_path):
    from synthface_ray.config import ConfigError

    ok = from_dict(TrainGeneratorConfig, job_config(toy, str(tmp_path)))  # 2 x 0.5 of 2 CPUs
    job.check_cpus_left(ok, 2)
    hungry = from_dict(TrainGeneratorConfig, job_config(toy, str(tmp_path),
                                                        scaling={"cpus_per_worker": 0.75}))
    with pytest.raises(ConfigError, match="leaves less than 1 CPU .* lower scaling.cpus_per_worker"):
        job.check_cpus_left(hungry, 2)
