"""train-fr's export (FRSession.export, in one process) carries the backbone for insightface
tooling: the insightface-named state dict, the ONNX model checked with onnxruntime, and
interop.json describing both; without the onnx extra the export still completes."""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from insightface_reference import get_model

from synthface_ray import storage
from synthface_ray.config import from_dict
from synthface_ray.models.recognition.embedder import Embedder
from synthface_ray.train.recognition import FRSession, TrainFRConfig

CFG = {
    "backbone": {"input_size": 32, "width": 4, "embedding_dim": 16},
    "margin": {"name": "arcface", "s": 16.0, "m": 0.2},
    "optim": {"name": "sgd", "lr": 0.05, "milestones": [], "micro_batch": 8},
    "num_classes": 4,
}


def trained_session(**sections) -> FRSession:
    s = FRSession(from_dict(TrainFRConfig, {**CFG, **sections}), 0, 1, torch.device("cpu"), "fp32")
    g = torch.Generator().manual_seed(0)
    for _ in range(2):  # moves the BatchNorm statistics off their defaults
        s.train_step([{"image": torch.rand(8, 3, 32, 32, generator=g) * 2 - 1, "label": torch.arange(8) % 4}])
    return s


def test_export_writes_insightface_weights_onnx_and_interop_json(process_group, tmp_path, capsys):
    import onnxruntime as ort

    s = trained_session()
    s.export(storage.resolve(tmp_path / "fr"))
    folder = tmp_path / "fr"
    assert {"backbone.safetensors", "backbone_config.json", "centers.pt", "backbone.insightface.pth",
            "model.onnx", "pixel_norm.txt", "interop.json"} <= {p.name for p in folder.iterdir()}
    meta = json.loads((folder / "interop.json").read_text())
    assert meta["input_size"] == 32 and meta["embedding_dim"] == 16
    assert meta["input"]["formula"] == "(pixel / 255 - 0.5) / 0.5"
    diff = meta["onnx"]["check"]["max_abs_diff"]
    assert 0 <= diff < 1e-4
    assert f"max abs diff {diff:.2g}" in capsys.readouterr().out

    # the three artefacts give one embedding: Embedder (safetensors), insightface layout (.pth), ONNX
    pixels = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    ours = Embedder.from_pretrained(folder, device="cpu")(pixels)
    blob = np.ascontiguousarray(((pixels / 255 - 0.5) / 0.5).astype(np.float32).transpose(0, 3, 1, 2))
    net = get_model("r18", num_features=16, width=4, fc_scale=4).eval()
    net.load_state_dict(torch.load(folder / "backbone.insightface.pth"), strict=True)
    with torch.no_grad():
        theirs = torch.nn.functional.normalize(net(torch.from_numpy(blob)), dim=1).numpy()
    onnx_out = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"data": blob})[0]
    onnx_out /= np.linalg.norm(onnx_out, axis=1, keepdims=True)
    assert np.allclose(ours, theirs, atol=1e-5) and np.allclose(ours, onnx_out, atol=1e-5)


def test_export_without_the_onnx_extra_still_completes(process_group, tmp_path, monkeypatch):
    s = trained_session()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    s.export(storage.resolve(tmp_path / "fr"))
    names = {p.name for p in (tmp_path / "fr").iterdir()}
    assert {"backbone.safetensors", "backbone.insightface.pth", "interop.json"} <= names
    assert "model.onnx" not in names
    assert json.loads((tmp_path / "fr" / "interop.json").read_text())["onnx"] is None


def test_export_onnx_false_skips_only_the_onnx_model(process_group, tmp_path):
    trained_session(export={"onnx": False}).export(storage.resolve(tmp_path / "fr"))
    folder = tmp_path / "fr"
    names = {p.name for p in folder.iterdir()}
    assert "backbone.insightface.pth" in names and "interop.json" in names and "model.onnx" not in names
    assert json.loads((folder / "interop.json").read_text())["onnx"] is None
