"""``synthface export --format onnx|diffusers``: an FR or generator export made before issue 22
gains, in place, the files that open in onnxruntime / insightface tooling / diffusers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synthface_ray import cli
from synthface_ray.models.generator import GeneratorConfig, IdentityGenerator


@pytest.fixture
def old_fr_export(tmp_path):
    from synthface_ray.models.recognition.embedder import save_backbone
    from synthface_ray.models.recognition.iresnet import BackboneConfig, build_backbone

    torch.manual_seed(0)
    config = BackboneConfig(input_size=32, width=4, embedding_dim=16)
    return save_backbone(build_backbone(config).eval(), config, tmp_path / "fr")


def test_onnx_format_adds_onnx_and_insightface_files_in_place(old_fr_export, capsys):
    import onnxruntime as ort

    from synthface_ray.models.recognition.embedder import Embedder

    assert cli.main(["export", "--from", str(old_fr_export), "--format", "onnx"]) == 0
    assert "model.onnx (onnxruntime vs torch: max abs diff" in capsys.readouterr().out
    meta = json.loads((old_fr_export / "interop.json").read_text())
    assert meta["onnx"]["check"]["max_abs_diff"] < 1e-4 and (old_fr_export / "backbone.insightface.pth").is_file()
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    blob = np.ascontiguousarray(((pixels / 255 - 0.5) / 0.5).astype(np.float32).transpose(0, 3, 1, 2))
    out = ort.InferenceSession(str(old_fr_export / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"data": blob})[0]
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    assert np.allclose(out, Embedder.from_pretrained(old_fr_export, device="cpu")(pixels), atol=1e-5)


def test_diffusers_format_makes_an_old_generator_export_a_pipeline(tmp_path, capsys):
    from diffusers import DiffusionPipeline

    model = IdentityGenerator(GeneratorConfig(sample_size=8, block_out_channels=(8, 16), norm_num_groups=4,
                                              cross_attention_levels=(False, True), context_dim=16,
                                              num_identities=4))
    folder = model.save_pretrained(tmp_path / "gen")  # no metadata: what an old export lacks too
    (folder / "condition" / "metadata.json").write_text(json.dumps({"objective": {"name": "edm"}}))
    assert not (folder / "model_index.json").exists()
    assert cli.main(["export", "--from", str(folder), "--format", "diffusers"]) == 0
    assert "model_index.json" in capsys.readouterr().out
    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    images = pipe([0, 1], num_inference_steps=2, output_type="np").images
    assert np.asarray(images).shape == (2, 8, 8, 3)


@pytest.mark.parametrize("argv, message", [
    (["--format", "diffusers"], "input.path is not set"),
    (["--format", "onnx", "--from", "s3://bucket/fr"], "writes into a local model export folder"),
    (["--format", "onnx", "--from", "a", "--out", "b"], "drop --out"),
])
def test_model_formats_refuse_bad_input(argv, message, capsys):
    assert cli.main(["export", *argv]) == 2
    assert message in capsys.readouterr().err


def test_model_formats_name_the_wrong_folder(tmp_path, capsys):
    assert cli.main(["export", "--from", str(tmp_path), "--format", "diffusers"]) == 2
    assert "no condition/metadata.json naming its objective" in capsys.readouterr().err
    assert cli.main(["export", "--from", str(tmp_path / "missing"), "--format", "onnx"]) == 2
    assert "missing" in capsys.readouterr().err


def test_onnx_without_the_extra_says_what_to_install(old_fr_export, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "onnxscript", None)
    assert cli.main(["export", "--from", str(old_fr_export), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert "needs onnxscript: pip install 'synthface-ray[onnx]'" in err and "Traceback" not in err
    assert not (old_fr_export / "model.onnx").exists()
