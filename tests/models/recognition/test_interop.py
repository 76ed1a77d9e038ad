"""The FR backbone for insightface tooling: the key map loads with strict=True into an independent
insightface-layout IResNet and gives the same embeddings; the ONNX model run by onnxruntime
matches torch; the optional extra missing and bad export folders give errors that say what to do."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
import torch
from insightface_reference import get_model

from synthface_ray.models.recognition import interop
from synthface_ray.models.recognition.embedder import CONFIG, WEIGHTS, Embedder, save_backbone
from synthface_ray.models.recognition.iresnet import BackboneConfig, build_backbone

TINY = BackboneConfig(input_size=32, width=4, embedding_dim=16)


def scrambled(config: BackboneConfig, seed: int = 0) -> torch.nn.Module:
    """A backbone whose every tensor (BN statistics and scales, PReLU slopes included) differs from
    its neighbours', so a swapped or misnamed tensor changes the output."""
    torch.manual_seed(seed)
    net = build_backbone(config)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand_like(t))
            else:
                t.add_(0.1 * torch.randn_like(t))
    return net.eval()


def reference_for(config: BackboneConfig, stock: bool = False) -> torch.nn.Module:
    """The insightface-layout IResNet a config maps to; ``stock``: insightface's hard-coded sizes."""
    arch = interop.INSIGHTFACE_ARCH[config.name]
    if stock:
        return get_model(arch, num_features=config.embedding_dim).eval()
    layout = interop.insightface_layout(config)
    return get_model(arch, num_features=config.embedding_dim, width=config.width,
                     fc_scale=layout["fc_scale"]).eval()


def images(batch: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


CONFIGS = [
    pytest.param(TINY, False, id="r18-w4-32px"),
    pytest.param(BackboneConfig(name="iresnet34", input_size=48, width=8, embedding_dim=32), False,
                 id="r34-w8-48px"),
    pytest.param(BackboneConfig(name="iresnet18", input_size=112, width=64, embedding_dim=512), True,
                 id="r18-stock-112px"),
]


@pytest.mark.parametrize(("config", "stock"), CONFIGS)
def test_state_dict_loads_strict_into_insightface_iresnet_with_equal_embeddings(config, stock):
    ours = scrambled(config)
    theirs = reference_for(config, stock)
    mapped = interop.to_insightface(ours.state_dict())
    assert set(mapped) == set(theirs.state_dict())
    theirs.load_state_dict(mapped, strict=True)
    x = images(3, config.input_size)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    diff = float((a - b).abs().max())
    print(f"{config.name} w{config.width} {config.input_size}px: insightface-layout vs ours max abs diff {diff:.3g}")
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), diff
    # and back: insightface names load into ours
    again = build_backbone(config).eval()
    again.load_state_dict(interop.from_insightface(theirs.state_dict()), strict=True)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in ours.state_dict().items())
    assert interop.insightface_layout(config)["stock_class"] is stock


def test_key_names():
    assert interop.to_insightface_key("stem.0.weight") == "conv1.weight"
    assert interop.to_insightface_key("stages.0.1.body.3.weight") == "layer1.1.prelu.weight"
    assert interop.to_insightface_key("stages.3.0.shortcut.1.running_var") == "layer4.0.downsample.1.running_var"
    assert interop.to_insightface_key("head.0.num_batches_tracked") == "bn2.num_batches_tracked"
    assert interop.to_insightface_key("head.3.bias") == "fc.bias"
    assert interop.from_insightface_key("layer2.0.downsample.0.weight") == "stages.1.0.shortcut.0.weight"
    assert interop.from_insightface_key("layer3.5.bn3.bias") == "stages.2.5.body.5.bias"
    for bad in ("head.1.weight", "stages.0.0.body.6.weight", "backbone.stem.0.weight", "stem.0"):
        with pytest.raises(ValueError, match="not a tensor of synthface's IResNet"):
            interop.to_insightface_key(bad)
    for bad in ("layer5.0.bn1.weight", "layer1.0.bn1.0.weight", "head.3.weight", "module.fc.weight"):
        with pytest.raises(ValueError, match="not a tensor of insightface's IResNet"):
            interop.from_insightface_key(bad)


def test_layout_of_the_stock_and_tiny_configs():
    stock = interop.insightface_layout(BackboneConfig(name="iresnet50", input_size=112, width=64))
    assert stock["stock_class"] and stock["arch"] == "r50" and stock["fc_scale"] == 49
    assert "get_model('r50', fp16=False, num_features=512)" in stock["note"]
    tiny = interop.insightface_layout(TINY)
    assert not tiny["stock_class"] and tiny["widths"] == [4, 8, 16, 32] and tiny["fc_scale"] == 4
    assert "fc_scale 4" in tiny["note"]


def test_onnx_in_onnxruntime_matches_torch(tmp_path):
    import onnxruntime as ort

    net = scrambled(TINY)
    path = interop.export_onnx(net, TINY, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "data" and isinstance(inp.shape[0], str) and inp.shape[1:] == [3, 32, 32]
    assert out.name == "embedding" and out.shape[1] == 16
    for batch in (1, 3):
        x = images(batch, 32, seed=batch)
        got = session.run(None, {"data": x.numpy()})[0]
        with torch.no_grad():
            want = net(x).numpy()
        diff = float(np.abs(got - want).max())
        print(f"onnxruntime vs torch, batch {batch}: max abs diff {diff:.3g} (outputs up to {np.abs(want).max():.3g})")
        assert got.shape == want.shape and diff < 1e-4
    # the documented preprocessing is exactly what `embed` does to uint8 RGB pixels
    pixels = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    blob = ((pixels.astype(np.float32) / 255 - 0.5) / 0.5).transpose(0, 3, 1, 2)
    onnx_emb = session.run(None, {"data": np.ascontiguousarray(blob)})[0]
    onnx_emb /= np.linalg.norm(onnx_emb, axis=1, keepdims=True)
    assert np.allclose(onnx_emb, Embedder(net, TINY, device="cpu")(pixels), atol=1e-5)
    meta = {p.key: p.value for p in __import__("onnx").load(str(path)).metadata_props}
    assert "(pixel / 255 - 0.5) / 0.5" in meta["synthface.input"]


def _arcface_ort_rules(folder) -> None:
    """What insightface's onnx_helper.ArcFaceORT.check demands of a model folder, restated:
    one .onnx file, 4-d input with a named (dynamic) batch axis, one output, at least 8 nodes,
    no initializer narrower than 4 bytes, and the input normalisation (pixel_norm.txt, else
    mean/std 127.5 unless Sub and Mul nodes open the graph)."""
    import onnx
    from onnx import numpy_helper

    files = sorted(p for p in folder.iterdir() if p.suffix == ".onnx")
    assert [p.name for p in files] == ["model.onnx"]
    model = onnx.load(str(files[0]))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert len(dims) == 4 and dims[0].dim_param and len(model.graph.output) == 1
    assert len(model.graph.node) >= 8
    assert all(numpy_helper.to_array(t).dtype.itemsize >= 4 for t in model.graph.initializer)
    assert (folder / "pixel_norm.txt").read_text().splitlines() == ["127.5", "127.5"]
    first = [n.name for n in model.graph.node[:8]]
    assert not (any(n.startswith(("Sub", "_minus")) for n in first)
                and any(n.startswith(("Mul", "_mul")) for n in first))


def test_convert_export_writes_both_and_describes_them(tmp_path):
    net = scrambled(TINY)
    folder = save_backbone(net, TINY, tmp_path / "export")
    meta = interop.convert_export(folder)
    assert meta == json.loads((folder / "interop.json").read_text()) == interop.read_interop(folder)
    assert meta["input_size"] == 32 and meta["embedding_dim"] == 16
    assert meta["input"]["formula"] == "(pixel / 255 - 0.5) / 0.5" and meta["input"]["channels"] == "RGB"
    assert meta["input"]["shape"] == ["batch", 3, 32, 32] and meta["output"]["l2_normalised"] is False
    check = meta["onnx"]["check"]
    print(f"convert_export: onnxruntime vs torch max abs diff {check['max_abs_diff']:.3g} "
          f"(unit-norm {check['max_abs_diff_unit']:.3g}, outputs up to {check['max_abs_output']:.3g})")
    assert check["batches"] == [1, 3] and 0 <= check["max_abs_diff"] < 1e-4
    assert meta["onnx"]["file"] == "model.onnx" and meta["onnx"]["opset"] >= 17
    assert meta["insightface"]["weights"] == "backbone.insightface.pth" and not meta["insightface"]["stock_class"]
    _arcface_ort_rules(folder)
    # the .pth is what insightface's scripts torch.load + load_state_dict
    theirs = reference_for(TINY)
    theirs.load_state_dict(torch.load(folder / "backbone.insightface.pth"), strict=True)
    x = images(2, 32)
    with torch.no_grad():
        assert torch.allclose(theirs(x), net(x), atol=1e-5, rtol=1e-5)
    # converting again replaces the files and leaves no temporaries
    interop.convert_export(folder, onnx=False)
    assert interop.read_interop(folder)["onnx"] is None
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_missing_onnx_packages_give_the_install_command(tmp_path, monkeypatch, caplog):
    folder = save_backbone(scrambled(TINY), TINY, tmp_path / "export")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    hint = r"needs onnxruntime: pip install 'synthface-ray\[onnx\]'"
    with pytest.raises(ImportError, match=hint):
        interop.require_onnx()
    with pytest.raises(ImportError, match=hint):
        interop.export_onnx(scrambled(TINY), TINY, tmp_path / "m.onnx")
    with pytest.raises(ImportError, match=hint):
        interop.convert_export(folder)
    assert not (folder / "interop.json").exists()
    # best effort (what train-fr does): a warning, and the insightface weights still written
    with caplog.at_level(logging.WARNING, logger=interop.__name__):
        meta = interop.write_interop(folder, scrambled(TINY), TINY, onnx=None)
    assert "pip install 'synthface-ray[onnx]'" in caplog.text and "model.onnx not written" in caplog.text
    assert meta["onnx"] is None and (folder / "backbone.insightface.pth").is_file()
    assert not (folder / "model.onnx").exists()
    assert interop.convert_export(folder, onnx=False)["onnx"] is None


def test_bad_export_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere is not a folder.*train-fr"):
        interop.convert_export(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="is .*empty an exported FR backbone"):
        interop.convert_export(empty)
    folder = save_backbone(scrambled(TINY), TINY, tmp_path / "export")
    (folder / WEIGHTS).write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="backbone.safetensors is not a readable safetensors file"):
        interop.convert_export(folder)
    (folder / WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match="backbone.safetensors is missing"):
        interop.convert_export(folder)
    other = save_backbone(scrambled(TINY), TINY, tmp_path / "other")
    (other / CONFIG).write_text(json.dumps({"name": "iresnet18", "input_size": 32, "width": 8,
                                            "embedding_dim": 16}))
    with pytest.raises(ValueError, match="does not hold weights of the model its config describes"):
        interop.convert_export(other)
    (other / CONFIG).write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        interop.convert_export(other)
    assert not any((p / "interop.json").exists() for p in (empty, folder, other))


def test_writing_leaves_the_callers_model_as_it_was(tmp_path):
    net = scrambled(TINY).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    meta = interop.write_interop(tmp_path, net, TINY, onnx=False)
    assert net.training and meta["onnx"] is None
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    saved = torch.load(tmp_path / "backbone.insightface.pth")
    assert all(torch.equal(saved[interop.to_insightface_key(k)], v) for k, v in before.items())
