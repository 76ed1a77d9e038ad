"""``synthface export``: faces table -> image folders or insightface RecordIO; or, in place, a
model export -> its ONNX / insightface files (FR) or diffusers pipeline files (generator)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Literal

from synthface_ray import config, storage
from synthface_ray.commands.common import print_dry_run, write_resolved_config
from synthface_ray.data.formats import EXPORTERS
from synthface_ray.storage import StorageConfig


def _fr_onnx(folder: str) -> str:
    """An FR export (train-fr) gains backbone.insightface.pth, model.onnx and interop.json."""
    from synthface_ray.models.recognition.interop import convert_export  # lazy: imports torch

    meta = convert_export(folder, onnx=True)
    check = (meta.get("onnx") or {}).get("check") or {}
    diff = f" (onnxruntime vs torch: max abs diff {check['max_abs_diff']:.2g})" if "max_abs_diff" in check else ""
    return f"backbone.insightface.pth, model.onnx{diff} and interop.json"


def _generator_diffusers(folder: str) -> str:
    """A generator export (train-generator) gains its diffusers pipeline files."""
    from synthface_ray.models.generator import (  # lazy: imports torch
        load_metadata,
        write_diffusers_files,
    )

    meta = load_metadata(folder)
    if not meta or not isinstance(meta.get("objective"), dict):
        raise FileNotFoundError(f"{folder} has no condition/metadata.json naming its objective: give the "
                                "export folder of synthface train-generator (<run folder>/export)")
    write_diffusers_files(folder, meta["objective"])
    return "model_index.json, scheduler/, synthface_pipeline.py and condition/synthface_condition.py"


#: formats that add files to a model export folder in place (--from only; no --out)
MODEL_FORMATS = {"onnx": _fr_onnx, "diffusers": _generator_diffusers}


@dataclass
class InputConfig:
    path: str = ""
    allow_incomplete: bool = False  # read a dataset without its manifest (an interrupted run), with a warning


@dataclass
class OutputConfig:
    format: Literal["folders", "recordio", "onnx", "diffusers"] = "recordio"
    path: str = ""
    overwrite: bool = False
    verify: bool = True  # decode every image and skip (or, strict, refuse) corrupt ones
    strict: bool = False
    # number the labels 0..K-1 (ascending order kept) and write labels.csv (label,original_label)
    # beside the export; off: the true labels, and recordio's `property` says max label + 1 classes
    relabel: bool = False

    def __post_init__(self) -> None:
        config.check_choice("output.format", self.format, [*sorted(EXPORTERS), *MODEL_FORMATS])


@dataclass
class Config:
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)


def _run_model_format(cfg: Config, dry_run: bool) -> int:
    """``onnx`` / ``diffusers``: write into the local model export named by --from."""
    if not cfg.input.path:
        raise config.ConfigError("input.path is not set: pass --from MODEL_EXPORT_FOLDER")
    if storage.is_s3(cfg.input.path) or (cfg.output.path and cfg.output.path != cfg.input.path):
        raise config.ConfigError(f"--format {cfg.output.format} writes into a local model export folder "
                                 "(--from), not to --out: copy an s3:// export down first, and drop --out")
    if dry_run:
        print_dry_run("export", cfg, [f"add the {cfg.output.format} files to {cfg.input.path}"])
        return 0
    written = MODEL_FORMATS[cfg.output.format](cfg.input.path)
    print(f"wrote {written} into {cfg.input.path}")
    return 0


def run(cfg: Config, dry_run: bool = False) -> int:
    if cfg.output.format in MODEL_FORMATS:
        return _run_model_format(cfg, dry_run)
    for key, value, flag in (("input.path", cfg.input.path, "--from"), ("output.path", cfg.output.path, "--out")):
        if not value:
            raise config.ConfigError(f"{key} is not set: pass {flag} PATH")
    src = storage.resolve(cfg.input.path, cfg.storage)
    out = storage.resolve(cfg.output.path, cfg.storage)
    if dry_run:
        relabel = " with labels numbered 0..K-1 and labels.csv (their original labels)" if cfg.output.relabel else ""
        print_dry_run("export", cfg, [f"read faces from {src.uri}", f"write {cfg.output.format} to {out.uri}{relabel}"])
        return 0
    exporter = EXPORTERS[cfg.output.format]
    summary, report = exporter(src.uri, out.uri, cfg.storage, overwrite=cfg.output.overwrite,
                               verify=cfg.output.verify, strict=cfg.output.strict,
                               allow_incomplete=cfg.input.allow_incomplete, relabel=cfg.output.relabel)
    write_resolved_config(out, cfg, "export")
    print(f"exported {summary} from {src.uri} to {out.uri}")
    if report.skipped:
        print(report.summary(), file=sys.stderr)
    return 0
