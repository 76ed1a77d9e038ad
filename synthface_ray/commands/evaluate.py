"""``synthface evaluate``: the evaluation suite on a labelled faces set under an FR model ->
``report.md``, ``metrics.json``, ``histogram.png``, ``det.png``, ``grid.png``, ``config.yaml``."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from synthface_ray import storage
from synthface_ray.commands.common import (
    CONFIG_FILE,
    print_dry_run,
    resolved_config_text,
)
from synthface_ray.commands.fr_common import embed_faces
from synthface_ray.config import ConfigError
from synthface_ray.data import faces
from synthface_ray.data.loader import iter_training_batches
from synthface_ray.data.transforms import DecodeReport, from_model_range
from synthface_ray.evaluate.config import Config
from synthface_ray.evaluate.frechet import frechet_distance_of
from synthface_ray.evaluate.report import (
    EvaluationInputs,
    bootstrap_section,
    compute_metrics,
    first_per_label,
    write_report,
)
from synthface_ray.models.recognition.section import ModelSection
from synthface_ray.progress import progress_bar

__all__ = ["Config", "REPORT_MARKER", "bootstrap", "collect", "frechet", "frechet_features", "run"]

REPORT_MARKER = "report.md"


def collect(cfg: Config, embedder):
    """One pass over the data: embeddings and labels of every image, pixels of at most
    ``diversity.pixel_max_per_class`` images per identity of the first ``diversity.pixel_identities``, and ``fr_cosine`` if present (rows
    of corrupt images dropped); returns ``(inputs, decode report)``."""
    cap, taken, report = cfg.diversity.pixel_max_per_class, {}, DecodeReport()
    embs, labels, pixels, pixel_labels = [], [], [], []
    with progress_bar(None, "evaluate") as bar:
        for batch in iter_training_batches(cfg.data.path, cfg.model.batch_size, embedder.config.input_size,
                                           cfg=cfg.storage, strict=cfg.data.strict, report=report,
                                           allow_incomplete=cfg.data.allow_incomplete, key="data.allow_incomplete"):
            embs.append(embedder(batch["image"], cfg.model.batch_size))
            lab = batch["label"].numpy()
            labels.append(lab)
            keep = first_per_label(lab, taken, cap, cfg.diversity.pixel_identities)
            pixels.append(from_model_range(batch["image"][keep].numpy()))
            pixel_labels.append(lab[keep])
            bar.update(len(lab))
    if not embs:
        raise ValueError(f"{cfg.data.path} has no decodable images")
    # the same files as the pass above, which refused an incomplete set or warned about it
    dataset = faces.open_faces(cfg.data.path, cfg.storage, allow_incomplete=True)
    fr_cos = (np.delete(dataset.to_table(columns=["fr_cosine"]).column("fr_cosine").to_numpy(), report.rows)
              if "fr_cosine" in dataset.schema.names else None)
    if report.skipped:
        print(f"WARNING: {cfg.data.path}: {report.summary()}\n(the report covers the decoded images; "
              "data.strict: true refuses a set with corrupt images)", flush=True)
    return EvaluationInputs(np.concatenate(embs), np.concatenate(labels), np.concatenate(pixels),
                            np.concatenate(pixel_labels), fr_cos), report


def frechet_features(cfg: Config, inputs, embedder) -> tuple[np.ndarray, np.ndarray]:
    """The data's Fréchet features row for row with ``inputs`` (its embeddings, or ``frechet.model``'s
    embeddings of the same images) and the reference set's."""
    f = cfg.frechet
    if f.model:  # other features than the report's: embed the data again with that model
        embedder = ModelSection(f.model, cfg.model.device, cfg.model.batch_size).load()
        data, labels = embed_faces(embedder, cfg.data.path, cfg.storage, cfg.model.batch_size,
                                   cfg.data.allow_incomplete, "data.allow_incomplete")
        if not np.array_equal(labels, inputs.labels):
            raise ConfigError(f"frechet.model={f.model} read other images of {cfg.data.path} than "
                              "model.path did (the set changed during the run?): re-run the evaluation")
    else:
        data = inputs.embeddings
    ref, _ = embed_faces(embedder, f.reference, cfg.storage, cfg.model.batch_size, f.allow_incomplete,
                         "frechet.allow_incomplete")
    return data, ref


def frechet(cfg: Config, data: np.ndarray, ref: np.ndarray) -> dict:
    """``metrics["frechet"]``: the distance, what the features are, the image counts, and a
    warning when a set has fewer images than feature dimensions (singular covariance estimates)."""
    dim = data.shape[1]
    out = {"distance": frechet_distance_of(data, ref), "reference": cfg.frechet.reference,
           "features": f"{cfg.frechet.model or cfg.model.path} embeddings ({dim}-d, L2-normalised)",
           "images": int(len(data)), "reference_images": int(len(ref))}
    if min(len(data), len(ref)) <= dim:
        out["warning"] = (f"{min(len(data), len(ref))} images for {dim}-d features: the covariance estimates "
                          "are singular and the distance biased upward; compare only at equal image counts")
    return out


def bootstrap(cfg: Config, inputs, features) -> dict | None:
    """``metrics["bootstrap"]`` (see :func:`bootstrap_section`), with a progress bar."""
    b = cfg.bootstrap
    total = b.replicates * (2 if features is not None else 1)
    with progress_bar(total, "bootstrap", unit="replicate") as bar:
        return bootstrap_section(inputs, cfg, features, on_replicate=lambda: bar.update(1))


def _check(cfg: Config) -> None:
    if not cfg.data.path or not cfg.model.path:
        raise ConfigError("data.path and model.path are required (--data, --model)")
    if cfg.leakage.real and cfg.leakage.tau is None:
        raise ConfigError("leakage.real is set but leakage.tau is not: give the cosine above which "
                          "a synthetic identity counts as leaked (e.g. 0.4)")
    ref = cfg.frechet.reference
    if ref and not storage.exists(storage.resolve(ref, cfg.storage)):
        raise ConfigError(f"frechet.reference={ref} does not exist: give a faces dataset (e.g. held-out real "
                          "images written by `synthface toyfaces` or `synthface import`)")


def run(cfg: Config, dry_run: bool = False) -> int:
    _check(cfg)
    out = cfg.output.location(cfg.storage, "output.path (--out, the report folder)")
    if dry_run:
        fd = ([f"Frechet distance to {cfg.frechet.reference} in the embeddings of "
               f"{cfg.frechet.model or cfg.model.path}"] if cfg.frechet.reference else [])
        bs = ([f"{cfg.bootstrap.replicates} bootstrap replicates over the identities (EER, FDR"
               + (", Fréchet distance)" if fd else ")")] if cfg.bootstrap.replicates else [])
        print_dry_run("evaluate", cfg, [f"embed {cfg.data.path} with {cfg.model.path}", *fd, *bs,
                                        f"write report.md, metrics.json, histogram.png, det.png, grid.png, "
                                        f"config.yaml to {out.uri}"])
        return 0
    embedder = cfg.model.load()
    inputs, decoded = collect(cfg, embedder)
    metrics, sep = compute_metrics(inputs, cfg)
    features = frechet_features(cfg, inputs, embedder) if cfg.frechet.reference else None
    if features is not None:
        metrics["frechet"] = frechet(cfg, *features)
    if cfg.bootstrap.replicates and (b := bootstrap(cfg, inputs, features)):
        metrics["bootstrap"] = b
    metrics["skipped_images"] = decoded.skipped
    metrics["skipped_rows"] = decoded.rows
    with tempfile.TemporaryDirectory(prefix="synthface-eval-") as tmp:
        write_report(Path(tmp), metrics, sep, inputs, cfg.data.path, cfg.model.path,
                     (cfg.grid.identities, cfg.grid.images))
        (Path(tmp) / CONFIG_FILE).write_text(resolved_config_text(cfg, "evaluate"), encoding="utf-8")
        storage.publish_dir(tmp, out, marker=REPORT_MARKER)
    print(sep.summary())
    if "verification" in metrics:
        v = metrics["verification"]
        print(f"verification: accuracy {v['accuracy']:.4f} +- {v['accuracy_std']:.4f}, EER {v['eer']:.4f}")
    if "frechet" in metrics:
        fd = metrics["frechet"]
        print(f"Frechet distance to {fd['reference']}: {fd['distance']:.4f} ({fd['features']}; "
              f"{fd['images']} vs {fd['reference_images']} images)")
    print(f"report: {out.join(REPORT_MARKER).uri}")
    return 0
