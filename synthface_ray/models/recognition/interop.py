"""The FR backbone for insightface tooling: a state dict in insightface's IResNet names and an ONNX
model checked with onnxruntime.

**Names.** :class:`~synthface_ray.models.recognition.iresnet.IResNet` is insightface's
``arcface_torch`` IResNet block for block (same layers, same order, same BatchNorm eps, the same
downsample rule), only named differently. :func:`to_insightface` renames every tensor
(insightface's ``recognition/arcface_torch/backbones/iresnet.py`` names on the right)::

    stem.0 / stem.1 / stem.2              -> conv1 / bn1 / prelu
    stages.{i}.{j}.body.0 .. body.5       -> layer{i+1}.{j}.bn1, conv1, bn2, prelu, conv2, bn3
    stages.{i}.{j}.shortcut.0 / .1        -> layer{i+1}.{j}.downsample.0 / .1
    head.0 / head.3                       -> bn2 / fc   (head.1 is dropout, head.2 flatten)
    features                              -> features

(insightface flattens before its dropout and we after: with no parameters in either, and
dropout the identity in eval mode, the two compute the same function.)

**What loads where.** insightface's class hard-codes the stage widths 64/128/256/512 and
``fc_scale = 7 * 7`` (a 112x112 input). A backbone trained with ``width: 64`` and
``input_size: 112`` therefore loads with ``strict=True`` into insightface's own
``get_model("r18"|"r34"|"r50"|"r100", fp16=False, num_features=embedding_dim)`` and runs its
evaluation scripts (``eval_ijbc.py`` also hard-codes 512-d features). Narrower or smaller
backbones (the ToyFaces configs: width 32, 32 px) map just as exactly, but need that class built
with widths ``width * (1, 2, 4, 8)`` and ``fc_scale = (input_size // 16) ** 2``;
:func:`insightface_layout` says which case a config is.

**Input.** Both the torch model and the ONNX model take float32 NCHW **RGB** images scaled
``(pixel / 255 - 0.5) / 0.5`` (range [-1, 1]): insightface's own preprocessing, and exactly what
:class:`~synthface_ray.models.recognition.embedder.Embedder` does to uint8 pixels. The output is
the raw ``embedding_dim`` feature (BatchNorm1d output), **not** L2-normalised: insightface's
scripts normalise it themselves, :class:`Embedder` does too.

**ONNX.** ``model.onnx``: input ``data`` of shape ``(batch, 3, S, S)`` with a dynamic batch axis,
output ``embedding`` ``(batch, embedding_dim)``; one file (no external data), float32, made by
``torch.onnx.export`` (the torch.export-based exporter). Next to it ``pixel_norm.txt``
(``127.5`` / ``127.5``) tells insightface's ``onnx_helper.ArcFaceORT`` the normalisation instead
of letting it guess from node names. The exporter needs the optional extra
``pip install 'synthface-ray[onnx]'`` (onnx, onnxscript, onnxruntime); nothing here imports it
before it is used.

**Folder.** :func:`write_interop` adds to an FR export folder ``backbone.insightface.pth``
(``torch.save`` of a plain ``{name: tensor}`` dict, as insightface's ``torch.load`` +
``load_state_dict`` expect), ``model.onnx`` + ``pixel_norm.txt`` and ``interop.json`` (input size,
normalisation, embedding dim, the insightface layout and the onnxruntime-vs-torch max abs
difference measured at export). ``synthface train-fr`` calls it on every export;
:func:`convert_export` does it for an export folder written before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from synthface_ray import storage
from synthface_ray.errors import MissingExtraError
from synthface_ray.models.recognition.embedder import Embedder
from synthface_ray.models.recognition.iresnet import DEPTHS, BackboneConfig
from synthface_ray.models.weights import FIX_FR

log = logging.getLogger(__name__)

INSIGHTFACE_WEIGHTS = "backbone.insightface.pth"
ONNX_FILE = "model.onnx"
PIXEL_NORM_FILE = "pixel_norm.txt"
INTEROP_FILE = "interop.json"
ONNX_INPUT, ONNX_OUTPUT = "data", "embedding"
ONNX_EXTRA = "pip install 'synthface-ray[onnx]'"
#: our depth names -> insightface ``backbones.get_model`` names
INSIGHTFACE_ARCH = {"iresnet18": "r18", "iresnet34": "r34", "iresnet50": "r50", "iresnet100": "r100"}
#: the preprocessing both exports expect (and :class:`Embedder` applies to uint8 pixels)
NORMALISATION = {
    "layout": "NCHW", "dtype": "float32", "channels": "RGB", "formula": "(pixel / 255 - 0.5) / 0.5",
    "mean": 127.5, "std": 127.5, "range": [-1.0, 1.0],
}
#: batch sizes the ONNX model is checked on (the export traces with 2, so both are other sizes)
CHECK_BATCHES = (1, 3)

_BODY = ("bn1", "conv1", "bn2", "prelu", "conv2", "bn3")  # IBasicBlock.body.0 .. body.5
_OURS_BLOCK = re.compile(r"stages\.(\d+)\.(\d+)\.(body|shortcut)\.(\d+)\.(.+)")
_THEIRS_BLOCK = re.compile(r"layer([1-4])\.(\d+)\.(\w+?)\.(?:(\d+)\.)?([^.]+)")
_OURS_FLAT = {"stem.0": "conv1", "stem.1": "bn1", "stem.2": "prelu", "head.0": "bn2",
              "head.3": "fc", "features": "features"}
_THEIRS_FLAT = {v: k for k, v in _OURS_FLAT.items()}


# names -------------------------------------------------------------------------------------------
def to_insightface_key(key: str) -> str:
    """One of our IResNet state-dict names -> insightface's (``stages.0.1.body.3.weight`` ->
    ``layer1.1.prelu.weight``); ``ValueError`` for a name that is not ours."""
    m = _OURS_BLOCK.fullmatch(key)
    if m:
        stage, block, part, index, leaf = m.groups()
        i = int(index)
        if part == "body" and i < len(_BODY):
            return f"layer{int(stage) + 1}.{block}.{_BODY[i]}.{leaf}"
        if part == "shortcut" and i < 2:
            return f"layer{int(stage) + 1}.{block}.downsample.{i}.{leaf}"
    else:
        module, _, leaf = key.rpartition(".")
        if module in _OURS_FLAT and leaf:
            return f"{_OURS_FLAT[module]}.{leaf}"
    raise ValueError(f"{key!r} is not a tensor of synthface's IResNet: cannot name it for insightface")


def from_insightface_key(key: str) -> str:
    """insightface's IResNet state-dict name -> ours (inverse of :func:`to_insightface_key`)."""
    m = _THEIRS_BLOCK.fullmatch(key)
    if m:
        layer, block, module, index, leaf = m.groups()
        if module in _BODY and index is None:
            return f"stages.{int(layer) - 1}.{block}.body.{_BODY.index(module)}.{leaf}"
        if module == "downsample" and index in ("0", "1"):
            return f"stages.{int(layer) - 1}.{block}.shortcut.{index}.{leaf}"
    else:
        module, _, leaf = key.rpartition(".")
        if module in _THEIRS_FLAT and leaf:
            return f"{_THEIRS_FLAT[module]}.{leaf}"
    raise ValueError(f"{key!r} is not a tensor of insightface's IResNet: cannot map it to synthface's")


def to_insightface(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our IResNet ``state_dict()`` under insightface's names (same tensors, same order), ready for
    ``torch.save`` and insightface's ``model.load_state_dict(torch.load(path))``."""
    return {to_insightface_key(k): v for k, v in state.items()}


def from_insightface(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An insightface IResNet state dict under our names: loads into
    :func:`~synthface_ray.models.recognition.iresnet.build_backbone` of the matching config."""
    return {from_insightface_key(k): v for k, v in state.items()}


def insightface_layout(config: BackboneConfig) -> dict[str, Any]:
    """How insightface must build the IResNet that takes :func:`to_insightface` of a backbone
    with ``config``: ``arch`` (``get_model`` name), ``layers``, ``widths``, ``fc_scale``,
    ``num_features``, and ``stock_class`` -- whether insightface's unmodified class fits
    (``width == 64`` and ``input_size == 112``)."""
    w, side = config.width, config.input_size // 16
    stock = w == 64 and config.input_size == 112
    return {
        "arch": INSIGHTFACE_ARCH[config.name], "layers": list(DEPTHS[config.name]),
        "widths": [w, 2 * w, 4 * w, 8 * w], "fc_scale": side * side,
        "num_features": config.embedding_dim, "input_size": config.input_size,
        "stock_class": stock,
        "note": (f"loads with strict=True into insightface's get_model({INSIGHTFACE_ARCH[config.name]!r}, "
                 f"fp16=False, num_features={config.embedding_dim})") if stock else
                (f"insightface's class hard-codes widths 64..512 and fc_scale 7*7 (112 px): build it with "
                 f"widths {[w, 2 * w, 4 * w, 8 * w]} and fc_scale {side * side} ({config.input_size} px) "
                 "to load these names with strict=True"),
    }


# ONNX --------------------------------------------------------------------------------------------
def require_onnx() -> tuple[Any, Any]:
    """``(onnx, onnxruntime)``, imported now; ``ImportError`` naming the extra to install when
    onnx, onnxscript (torch.onnx's exporter needs it) or onnxruntime is missing."""
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtraError(f"ONNX export of the FR backbone needs {', '.join(missing)}: {ONNX_EXTRA}")
    import onnx
    import onnxruntime

    return onnx, onnxruntime


def _cpu_eval(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` itself when it is already on the CPU in eval mode, else a CPU eval-mode copy (the
    caller's model keeps its device and mode)."""
    if not model.training and all(t.device.type == "cpu" for t in model.state_dict().values()):
        return model
    import copy

    return copy.deepcopy(model).cpu().eval()


@contextlib.contextmanager
def _quiet_exporter():
    """Silence torch.onnx's notices that do not concern this model (no torchvision ops, pytree
    deprecations); errors still raise."""
    import warnings

    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def export_onnx(model: torch.nn.Module, config: BackboneConfig, path: str | Path) -> Path:
    """Write ``model`` (an IResNet of ``config``) as ONNX to ``path``: input ``data`` float32
    ``(batch, 3, S, S)`` (dynamic batch, preprocessing :data:`NORMALISATION`), output
    ``embedding`` ``(batch, embedding_dim)``, not normalised. The file carries the preprocessing
    in its metadata (``synthface.*`` keys). Written atomically (:func:`storage.atomic_local_path`)."""
    onnx, _ = require_onnx()
    path = Path(path)
    s = config.input_size
    model = _cpu_eval(model)
    example = torch.zeros(2, 3, s, s)
    meta = {"synthface.backbone": json.dumps({"name": config.name, "input_size": s, "width": config.width,
                                              "embedding_dim": config.embedding_dim}),
            "synthface.input": f"{ONNX_INPUT}: float32 NCHW RGB (batch, 3, {s}, {s}), "
                               f"{NORMALISATION['formula']}",
            "synthface.output": f"{ONNX_OUTPUT}: float32 (batch, {config.embedding_dim}), not L2-normalised"}
    with storage.atomic_local_path(storage.resolve(path)) as tmp:
        with _quiet_exporter(), torch.no_grad():
            torch.onnx.export(model, (example,), tmp, input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                              dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False,
                              verbose=False)
        proto = onnx.load(tmp)
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, tmp)
    return path


def onnx_max_abs_diff(model: torch.nn.Module, config: BackboneConfig, path: str | Path,
                      batches: tuple[int, ...] = CHECK_BATCHES, seed: int = 0) -> dict[str, Any]:
    """Run the ONNX file at ``path`` in onnxruntime (CPU) and ``model`` in torch on the same random
    batches in [-1, 1]: ``{"max_abs_diff": raw outputs, "max_abs_diff_unit": after L2
    normalisation, "max_abs_output": the outputs' scale, "batches": ..., ...}``."""
    _, ort = require_onnx()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(seed)
    s = config.input_size
    raw = unit = scale = 0.0
    model = _cpu_eval(model)
    for b in batches:
        x = torch.rand(b, 3, s, s, generator=g) * 2 - 1
        with torch.no_grad():
            ref = model(x)
        out = torch.from_numpy(session.run([ONNX_OUTPUT], {ONNX_INPUT: x.numpy()})[0])
        if out.shape != ref.shape:
            raise ValueError(f"{path}: onnxruntime returned shape {tuple(out.shape)} for batch {b}, "
                             f"torch {tuple(ref.shape)}")
        raw = max(raw, float((out - ref).abs().max()))
        unit = max(unit, float((torch.nn.functional.normalize(out, dim=1)
                                - torch.nn.functional.normalize(ref, dim=1)).abs().max()))
        scale = max(scale, float(ref.abs().max()))
    return {"max_abs_diff": raw, "max_abs_diff_unit": unit, "max_abs_output": scale,
            "batches": list(batches), "seed": seed, "inputs": "uniform [-1, 1]",
            "onnxruntime": ort.__version__, "provider": "CPUExecutionProvider"}


# export folders ----------------------------------------------------------------------------------
def write_interop(folder: str | Path, model: torch.nn.Module, config: BackboneConfig, *,
                  onnx: bool | None = None) -> dict[str, Any]:
    """Add the insightface and ONNX exports of ``model`` to the FR export ``folder`` and describe
    them in ``interop.json`` (returned as a dict).

    ``onnx``: ``True`` writes ``model.onnx`` or raises (``ImportError`` naming
    ``synthface-ray[onnx]`` when the packages are missing); ``None`` (what train-fr uses) writes
    it when the packages import and otherwise logs a warning, and an exporter failure is logged
    and recorded under ``onnx.error`` instead of raising, so the rest of the export survives;
    ``False`` skips it. Existing files of the same names are replaced."""
    folder = Path(folder)
    model = _cpu_eval(model)
    state = {k: v.detach().contiguous().cpu() for k, v in to_insightface(model.state_dict()).items()}
    with storage.atomic_local_path(storage.resolve(folder / INSIGHTFACE_WEIGHTS)) as tmp:
        torch.save(state, tmp)
    meta: dict[str, Any] = {
        "input": {"name": ONNX_INPUT, "shape": ["batch", 3, config.input_size, config.input_size],
                  **NORMALISATION},
        "input_size": config.input_size, "embedding_dim": config.embedding_dim,
        "output": {"name": ONNX_OUTPUT, "shape": ["batch", config.embedding_dim], "l2_normalised": False},
        "backbone": {"name": config.name, "width": config.width},
        "insightface": {"weights": INSIGHTFACE_WEIGHTS, **insightface_layout(config)},
        "onnx": None, "torch": torch.__version__,
    }
    if onnx is not False:
        try:
            require_onnx()
        except ImportError as exc:
            if onnx:
                raise
            log.warning("%s: %s not written (the safetensors and insightface exports are)", exc, ONNX_FILE)
        else:
            try:
                export_onnx(model, config, folder / ONNX_FILE)
                check = onnx_max_abs_diff(model, config, folder / ONNX_FILE)
            except Exception as exc:
                if onnx:
                    raise
                log.warning("ONNX export of the FR backbone failed (%s: %s): %s not written; retry with "
                            "synthface_ray.models.recognition.interop.convert_export(%r)",
                            type(exc).__name__, exc, ONNX_FILE, str(folder))
                meta["onnx"] = {"error": f"{type(exc).__name__}: {exc}"}
            else:
                storage.atomic_write_text(storage.resolve(folder / PIXEL_NORM_FILE), "127.5\n127.5\n")
                meta["onnx"] = {"file": ONNX_FILE, "opset": _onnx_opset(folder / ONNX_FILE),
                                "pixel_norm": PIXEL_NORM_FILE, "check": check}
    storage.atomic_write_text(storage.resolve(folder / INTEROP_FILE), json.dumps(meta, indent=2) + "\n")
    return meta


def _onnx_opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def convert_export(folder: str | Path, *, onnx: bool = True) -> dict[str, Any]:
    """Write ``backbone.insightface.pth``, ``model.onnx`` (+ ``pixel_norm.txt``) and
    ``interop.json`` into an existing local FR export ``folder`` (what ``synthface train-fr``
    wrote: ``backbone.safetensors`` + ``backbone_config.json``); returns the ``interop.json``
    contents. ``onnx=False`` skips the ONNX model; with ``onnx=True`` missing packages raise
    ``ImportError`` naming ``synthface-ray[onnx]``. A missing folder or config raises
    ``FileNotFoundError``, unreadable or foreign weights ``ValueError``, each naming the file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: {FIX_FR}")
    if onnx:
        require_onnx()  # before loading weights: fail fast on the missing extra
    embedder = Embedder.from_pretrained(folder, device="cpu")
    return write_interop(folder, embedder.model, embedder.config, onnx=onnx)


def read_interop(folder: str | Path) -> dict[str, Any] | None:
    """``interop.json`` of an FR export folder, or ``None`` when it has none."""
    path = Path(folder) / INTEROP_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


__all__ = [
    "CHECK_BATCHES", "INSIGHTFACE_ARCH", "INSIGHTFACE_WEIGHTS", "INTEROP_FILE", "NORMALISATION",
    "ONNX_EXTRA", "ONNX_FILE", "ONNX_INPUT", "ONNX_OUTPUT", "PIXEL_NORM_FILE", "convert_export",
    "export_onnx", "from_insightface", "from_insightface_key", "insightface_layout",
    "onnx_max_abs_diff", "read_interop", "require_onnx", "to_insightface", "to_insightface_key",
    "write_interop",
]
