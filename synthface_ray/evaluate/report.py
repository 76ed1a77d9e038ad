"""The evaluation report of a labelled (real or generated) faces set under an FR model: all the
suite's metrics in one dict, and the report folder (``metrics.json``, ``report.md``,
``histogram.png``, ``det.png``, ``grid.png``)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthface_ray.data.identities import read_identities
from synthface_ray.data.transforms import to_grid
from synthface_ray.evaluate import diversity
from synthface_ray.evaluate.bootstrap import basic_interval, bootstrap_metrics
from synthface_ray.evaluate.det import det_curve_png
from synthface_ray.evaluate.histogram import score_histogram_png
from synthface_ray.evaluate.separability import sample_identities, separability
from synthface_ray.evaluate.verification import cosine_scores, make_pairs, verify


@dataclass
class EvaluationInputs:
    """What one pass over the data collected: unit FR embeddings and labels of every image, a
    capped sample of pixels per identity (uint8 NHWC, with their labels) and ``fr_cosine`` when
    the set is generated."""

    embeddings: np.ndarray
    labels: np.ndarray
    pixels: np.ndarray
    pixel_labels: np.ndarray
    fr_cosine: np.ndarray | None = None


def first_per_label(labels, taken: dict, cap: int, identities: int | None = None) -> list[int]:
    """Positions of ``labels`` among the first ``cap`` images of their identity, counting in
    ``taken`` (updated) across calls, for the first ``identities`` identities met (None: all): the
    pixel sample the diversity metrics use, in row order; its size is bounded by cap x identities
    whatever the size of the set (at 1M images of 112x112 pixels and 20k identities, holding 20 of
    every identity's images would take 15 GB)."""
    keep = []
    for i, label in enumerate(labels.tolist()):
        if label not in taken and identities is not None and len(taken) >= identities:
            continue
        if taken.get(label, 0) < cap:
            taken[label] = taken.get(label, 0) + 1
            keep.append(i)
    return keep


def _finite(value: Any) -> Any:
    """JSON-safe: infinities and NaN become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def per_identity(fr_ids, fr_div, px_ids, px_div, inp: EvaluationInputs) -> dict[str, dict[str, float]]:
    """Each identity's own figures, keyed by its label (as text): FR-space and pixel-space
    intra-class diversity and, for generated sets, the mean ``fr_cosine`` of its images, so that
    two sets of the same identities (e.g. two samplers on one plan) can be compared identity by
    identity, with an interval (``synthface papers`` does)."""
    out = {"diversity_fr": dict(zip(map(str, fr_ids.tolist()), fr_div.tolist())),
           "diversity_pixel": dict(zip(map(str, px_ids.tolist()), px_div.tolist()))}
    if inp.fr_cosine is not None:
        ids, codes = np.unique(inp.labels, return_inverse=True)
        sums = np.bincount(codes.ravel(), weights=np.asarray(inp.fr_cosine, np.float64), minlength=len(ids))
        out["consistency"] = dict(zip(map(str, ids.tolist()), (sums / np.bincount(codes.ravel())).tolist()))
    return out


def separability_rows(labels, s) -> np.ndarray:
    """The rows the separability section ``s`` samples: up to ``s.identities`` identities x
    ``s.images_per_identity`` images (all when there are fewer), from ``s.seed``."""
    available = len(np.unique(labels))  # "up to" this many identities: all when fewer
    n = None if s.identities is None or s.identities >= available else s.identities
    return sample_identities(labels, n, s.images_per_identity, s.seed)


def bootstrap_section(inp: EvaluationInputs, cfg, frechet_features: tuple[np.ndarray, np.ndarray] | None,
                      on_replicate=None) -> dict[str, Any] | None:
    """``metrics["bootstrap"]``: replicates of EER, FDR and (given ``frechet_features`` = the
    data's Fréchet features row for row, the reference's) the Fréchet distance, resampling the
    identities of the separability rows (:mod:`synthface_ray.evaluate.bootstrap`); None when
    off or when the set has fewer than 2 identities."""
    b = cfg.bootstrap
    rows = separability_rows(inp.labels, cfg.separability)
    if not b.replicates or len(np.unique(inp.labels[rows])) < 2:
        return None
    fr = None if frechet_features is None else (frechet_features[0][rows], frechet_features[1])
    return bootstrap_metrics(inp.embeddings[rows], inp.labels[rows], b.replicates, b.seed, b.impostor,
                             fr, on_replicate)


def compute_metrics(inp: EvaluationInputs, cfg) -> tuple[dict[str, Any], Any]:
    """Every metric of the suite (``cfg``: :class:`synthface_ray.evaluate.config.Config`) but the
    Fréchet distance and the bootstrap (the command adds them); returns the metrics dict and the
    separability result (for the histogram)."""
    s = cfg.separability
    rows = separability_rows(inp.labels, s)
    sep = separability(inp.embeddings[rows], inp.labels[rows], impostor=s.impostor, seed=s.seed)
    out: dict[str, Any] = {"images": int(len(inp.labels)),
                           "identities": int(len(np.unique(inp.labels))),
                           "separability": {k: v for k, v in asdict(sep).items()
                                            if not isinstance(v, np.ndarray)}}
    v = cfg.verification
    if v.enabled:
        pairs, same = make_pairs(inp.labels, v.genuine, v.impostor, v.seed)
        out["verification"] = asdict(verify(cosine_scores(inp.embeddings, pairs), same, v.folds))
    d = cfg.diversity
    fr_ids, fr_div = diversity.intra_class_diversity_by_identity(inp.embeddings, inp.labels, d.max_per_class, d.seed)
    px_ids, px_div = diversity.pixel_diversity_by_identity(inp.pixels, inp.pixel_labels, d.pixel_max_per_class, d.seed)
    out["diversity"] = {"fr": float(fr_div.mean()), "pixel": float(px_div.mean()),
                        "pixel_identities": int(len(px_ids))}
    out["per_identity"] = per_identity(fr_ids, fr_div, px_ids, px_div, inp)
    if inp.fr_cosine is not None:
        out["identity_consistency"] = diversity.identity_consistency(inp.fr_cosine)
    _, centres = diversity.class_centres(inp.embeddings, inp.labels)
    uq = diversity.uniqueness(centres, cfg.uniqueness.tau)
    out["uniqueness"] = {"unique": uq.n_unique, "total": uq.n_total, "tau": uq.tau, "fraction": uq.fraction}
    if cfg.leakage.real:
        _, real = read_identities(cfg.leakage.real, cfg.storage)
        lk = diversity.leakage(centres, real, cfg.leakage.tau)
        out["leakage"] = {"leaked": lk.n_leaked, "total": lk.n_total, "tau": lk.tau_leak,
                          "fraction": lk.fraction}
    return json.loads(json.dumps(out, default=_finite)), sep


def _bootstrap_lines(metrics: dict[str, Any]) -> list[str]:
    """The 95% intervals of the set's EER, FDR and Fréchet distance over its identities."""
    b = metrics.get("bootstrap")
    if not b:
        return []
    points = {"EER": ("generated_eer", metrics["separability"]["eer"]),
              "FDR": ("fdr", float(metrics["separability"]["fdr"])),
              "Fréchet distance": ("frechet", b.get("frechet_point"))}
    parts = [f"{name} [{lo:.4f}, {hi:.4f}]" for name, (key, point) in points.items() if key in b
             for lo, hi in [basic_interval(point, b[key])]]
    note = (" (a resample repeats identities, which raises a Fréchet distance; the basic interval takes "
            "that bias back out, so it can lie below the distance measured on the set itself)"
            if "frechet" in b else "")
    return [f"95% intervals over the identities ({b['identities']} identities resampled, "
            f"{b['replicates']} bootstrap replicates, basic interval): " + ", ".join(parts) + note, ""]


def report_markdown(metrics: dict[str, Any], data: str, model: str) -> str:
    """A human-readable summary of ``metrics``."""
    s = metrics["separability"]
    lines = [
        "# Evaluation report", "", f"- data: `{data}` ({metrics['images']} images, "
        f"{metrics['identities']} identities)", f"- FR model: `{model}`",
        *([f"- **{metrics['skipped_images']} corrupt image(s) skipped** (rows "
           f"{', '.join(map(str, metrics['skipped_rows'][:20]))}"
           f"{', ...' if len(metrics['skipped_rows']) > 20 else ''}): not in these figures"]
          if metrics.get("skipped_images") else []), "",
        f"## Identity separability ({s['n_identities']} identities, {s['n_genuine']} genuine / "
        f"{s['n_impostor']} impostor pairs, impostors {s['impostor_mode']})", "",
        "| EER | FMR100 | FMR1000 | genuine mean +- std | impostor mean +- std | FDR | d' |",
        "|---|---|---|---|---|---|---|",
        f"| {s['eer']:.4f} | {s['fmr100']:.4f} | {s['fmr1000']:.4f} | {s['genuine_mean']:.4f} +- "
        f"{s['genuine_std']:.4f} | {s['impostor_mean']:.4f} +- {s['impostor_std']:.4f} | "
        f"{float(s['fdr']):.3f} | {float(s['d_prime']):.3f} |", "",
        *_bootstrap_lines(metrics),
        "![score histograms](histogram.png) ![DET curve](det.png)", "",
    ]
    if "verification" in metrics:
        v = metrics["verification"]
        lines += ["## Verification", "", f"{v['folds']}-fold accuracy {v['accuracy']:.4f} +- "
                  f"{v['accuracy_std']:.4f}, EER {v['eer']:.4f}, TAR@FAR=1e-3 {v['tar_at_far_1e3']:.4f},"
                  f" TAR@FAR=1e-4 {v['tar_at_far_1e4']:.4f} ({v['pairs']} pairs)", ""]
    d = metrics["diversity"]
    lines += ["## Consistency, diversity, uniqueness, leakage", "",
              f"- intra-class diversity: FR space {d['fr']:.4f} (mean 1 - cosine), pixel space "
              f"{d['pixel']:.4f} (mean RMS difference in [0, 1], over {d['pixel_identities']} identities)"]
    if "identity_consistency" in metrics:
        lines.append(f"- identity consistency: mean fr_cosine {metrics['identity_consistency']:.4f}")
    u = metrics["uniqueness"]
    lines.append(f"- uniqueness: {u['unique']} of {u['total']} class centres distinct at cosine "
                 f"{u['tau']}")
    if "leakage" in metrics:
        lk = metrics["leakage"]
        lines.append(f"- leakage: {lk['leaked']} of {lk['total']} class centres above cosine "
                     f"{lk['tau']} to a real identity")
    if "frechet" in metrics:
        fd = metrics["frechet"]
        lines.append(f"- Fréchet distance to `{fd['reference']}`: {fd['distance']:.4f} ({fd['features']}; "
                     f"{fd['images']} vs {fd['reference_images']} images)"
                     + (f". **{fd['warning']}**" if "warning" in fd else ""))
    return "\n".join(lines + ["", "![samples](grid.png)", ""])


def write_report(folder: Path, metrics: dict[str, Any], sep, inp: EvaluationInputs, data: str,
                 model: str, grid: tuple[int, int]) -> None:
    """``metrics.json``, ``histogram.png``, ``det.png``, ``grid.png`` and ``report.md`` into ``folder``."""
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    score_histogram_png(sep.genuine_counts, sep.impostor_counts, folder / "histogram.png",
                        title="genuine vs impostor cosine scores")
    det_curve_png(sep.genuine_counts, sep.impostor_counts, folder / "det.png",
                  title=f"DET curve ({sep.n_genuine} genuine / {sep.n_impostor} impostor pairs)")
    rows, cols = grid
    picks = [np.flatnonzero(inp.pixel_labels == i)[:cols] for i in np.unique(inp.pixel_labels)[:rows]]
    cells = np.zeros((rows * cols, *inp.pixels.shape[1:]), np.uint8)
    for r, idx in enumerate(picks):
        cells[r * cols: r * cols + len(idx)] = inp.pixels[idx]
    images = cells.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1
    to_grid(images, rows, cols).save(folder / "grid.png")
    (folder / "report.md").write_text(report_markdown(metrics, data, model), encoding="utf-8")


__all__ = ["EvaluationInputs", "bootstrap_section", "compute_metrics", "report_markdown",
           "separability_rows", "write_report"]
