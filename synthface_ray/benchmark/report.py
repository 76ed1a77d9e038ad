"""A benchmark's outputs from its trials' results: the per-trial table (``results.parquet``),
the per-arm summary over seeds with intervals and paired differences (``summary.csv``), the
accuracy bar chart with 95% intervals (PIL, no matplotlib) and ``report.md``. Pure functions of
the results; the command writes the files (``report.md`` last)."""

from __future__ import annotations

import io
import math
from typing import Any

from PIL import Image, ImageDraw

from synthface_ray.benchmark.stats import gap_closed, paired_difference, t_interval, verdict
from synthface_ray.evaluate.histogram import (
    AXIS_RGB,
    GRID_RGB,
    load_font,
    nice_ticks,
    vertical_text,
)

#: per-trial metric -> (result key in a test set's metrics, higher is better)
METRICS = {
    "accuracy": ("accuracy", True),
    "eer": ("eer", False),
    "tar_far_1e3": ("tar_at_far_1e3", True),
    "tar_far_1e4": ("tar_at_far_1e4", True),
}


def result_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (arm, seed, test set) of the trials' results."""
    rows = []
    for r in results:
        for name, m in r["test"].items():
            row = {"arm": r["arm"], "seed": int(r["seed"]), "test_set": name}
            row.update({k: float(m[key]) for k, (key, _) in METRICS.items()})
            row.update({"accuracy_fold_std": float(m["accuracy_std"]), "pairs": int(m["pairs"]),
                        "test_images": int(m["images"]), "test_skipped": int(m.get("skipped", 0)),
                        "train_images": int(r["train"]["images"]),
                        "train_identities": int(r["train"]["identities"]),
                        "train_steps": int(r["train"]["steps"]),
                        "train_loss": float("nan") if r["train"]["loss"] is None else float(r["train"]["loss"]),
                        "wall_s": float(r["wall_s"]), "reused": bool(r.get("reused", False)),
                        "folder": r["folder"]})
            rows.append(row)
    return sorted(rows, key=lambda x: (x["test_set"], x["arm"], x["seed"]))


def _by_seed(rows: list[dict[str, Any]], test_set: str, arm: str, metric: str) -> dict[int, float]:
    return {r["seed"]: r[metric] for r in rows if r["test_set"] == test_set and r["arm"] == arm}


def summarise(rows: list[dict[str, Any]], arms: list[str], reference: str,
              floor: str | None) -> list[dict[str, Any]]:
    """Per (test set, arm): mean, std and 95% interval of each metric over seeds; the paired
    difference from ``reference`` with its interval and verdict; the gap closed between the
    ``floor`` arm (random init) and the reference, on accuracy."""
    out = []
    for test_set in sorted({r["test_set"] for r in rows}):
        for arm in arms:
            own = [r for r in rows if r["test_set"] == test_set and r["arm"] == arm]
            if not own:
                continue
            s: dict[str, Any] = {"test_set": test_set, "arm": arm, "seeds": len(own),
                                 "train_images": own[0]["train_images"],
                                 "train_identities": own[0]["train_identities"]}
            for metric, (_, higher) in METRICS.items():
                iv = t_interval([r[metric] for r in own])
                s.update({f"{metric}_mean": iv.mean, f"{metric}_std": iv.std,
                          f"{metric}_ci_low": iv.low, f"{metric}_ci_high": iv.high})
                ref = _by_seed(rows, test_set, reference, metric)
                if arm != reference and set(ref) & {r["seed"] for r in own}:
                    d = paired_difference(_by_seed(rows, test_set, arm, metric), ref)
                    s.update({f"{metric}_diff": d.mean, f"{metric}_diff_low": d.low,
                              f"{metric}_diff_high": d.high, f"{metric}_verdict": verdict(d, higher)})
            out.append(s)
        ref_mean = next((s["accuracy_mean"] for s in out if s["test_set"] == test_set and s["arm"] == reference), None)
        low = next((s["accuracy_mean"] for s in out if s["test_set"] == test_set and s["arm"] == floor), None)
        for s in out:
            if s["test_set"] == test_set and ref_mean is not None and low is not None:
                s["gap_closed"] = gap_closed(s["accuracy_mean"], low, ref_mean)
    return out


# the chart -----------------------------------------------------------------------------------
SIZE, MARGIN = (720, 440), (84, 44, 24, 92)  # left, top, right, bottom
BAR_RGB, DOT_RGB, ERR_RGB = (120, 160, 220), (30, 30, 30), (200, 40, 40)


def accuracy_png(summary: list[dict[str, Any]], rows: list[dict[str, Any]], test_set: str) -> bytes:
    """Bars of mean accuracy per arm with their 95% interval (red) and each seed's value (dots)."""
    arms = [s for s in summary if s["test_set"] == test_set]
    values = [r["accuracy"] for r in rows if r["test_set"] == test_set]
    bounds = values + [v for s in arms for v in (s["accuracy_ci_low"], s["accuracy_ci_high"]) if math.isfinite(v)]
    lo, hi = min(bounds), max(bounds)
    pad = max((hi - lo) * 0.15, 0.01)
    ylo, yhi = max(0.0, lo - pad), min(1.0, hi + pad)
    img = Image.new("RGB", SIZE, (255, 255, 255))
    draw, font = ImageDraw.Draw(img), load_font(13)
    x0, y0, x1, y1 = MARGIN[0], MARGIN[1], SIZE[0] - MARGIN[2], SIZE[1] - MARGIN[3]
    sy = lambda v: y1 - (v - ylo) / (yhi - ylo) * (y1 - y0)  # noqa: E731
    for v in nice_ticks(ylo, yhi):
        draw.line([(x0, sy(v)), (x1, sy(v))], fill=GRID_RGB)
        draw.text((x0 - 8, sy(v)), f"{v:g}", fill=AXIS_RGB, font=font, anchor="rm")
    width = (x1 - x0) / max(len(arms), 1)
    for i, s in enumerate(arms):
        cx = x0 + (i + 0.5) * width
        draw.rectangle([cx - width * 0.3, sy(s["accuracy_mean"]), cx + width * 0.3, y1], fill=BAR_RGB)
        if math.isfinite(s["accuracy_ci_low"]):
            top, bottom = sy(s["accuracy_ci_high"]), sy(s["accuracy_ci_low"])
            draw.line([(cx, top), (cx, bottom)], fill=ERR_RGB, width=2)
            for y in (top, bottom):
                draw.line([(cx - 8, y), (cx + 8, y)], fill=ERR_RGB, width=2)
        for r in rows:
            if r["test_set"] == test_set and r["arm"] == s["arm"]:
                draw.ellipse([cx + 12 - 3, sy(r["accuracy"]) - 3, cx + 12 + 3, sy(r["accuracy"]) + 3], fill=DOT_RGB)
        draw.text((cx, y1 + 8), s["arm"], fill=AXIS_RGB, font=font, anchor="mt")
        draw.text((cx, y1 + 26), f"{s['accuracy_mean']:.3f}", fill=AXIS_RGB, font=font, anchor="mt")
    draw.line([(x0, y0), (x0, y1), (x1, y1)], fill=AXIS_RGB)
    draw.text(((x0 + x1) / 2, 14), f"verification accuracy on {test_set} (bars: mean over seeds, red: "
              "95% interval, dots: seeds)", fill=AXIS_RGB, font=font, anchor="mt")
    vertical_text(img, (18, (y0 + y1) / 2), "accuracy", font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# report.md -----------------------------------------------------------------------------------
def _pm(s: dict[str, Any], metric: str) -> str:
    std = s[f"{metric}_std"]
    return f"{s[f'{metric}_mean']:.4f}" + (f" ± {std:.4f}" if math.isfinite(std) else "")


def _ci(s: dict[str, Any], metric: str) -> str:
    low, high = s[f"{metric}_ci_low"], s[f"{metric}_ci_high"]
    return f"[{low:.4f}, {high:.4f}]" if math.isfinite(low) else "n/a"


def _diff(s: dict[str, Any], metric: str) -> str:
    if f"{metric}_diff" not in s:
        return "(reference)" if metric == "accuracy" else ""
    low, high = s[f"{metric}_diff_low"], s[f"{metric}_diff_high"]
    ci = f" [{low:+.4f}, {high:+.4f}]" if math.isfinite(low) else ""
    return f"{s[f'{metric}_diff']:+.4f}{ci} {s[f'{metric}_verdict']}"


def _set_section(test_set: str, summary, rows, reference: str, plot: str) -> list[str]:
    arms = [s for s in summary if s["test_set"] == test_set]
    first = next(r for r in rows if r["test_set"] == test_set)
    lines = [f"## Test set `{test_set}`: {first['test_images']} images, {first['pairs']} pairs", "",
             f"Mean ± std over seeds, the 95% Student-t interval of the mean, and each arm's paired "
             f"difference from `{reference}` (seed by seed) with its 95% interval: *within noise* "
             "when that interval holds 0. Gap closed = (arm − random_init) / (reference − random_init) "
             "on mean accuracy.", "",
             "| arm | seeds | train images | identities | accuracy | 95% CI | Δ accuracy vs reference | "
             "gap closed | EER | Δ EER | TAR@FAR=1e-3 | TAR@FAR=1e-4 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in arms:
        gap = s.get("gap_closed", math.nan)
        lines.append(f"| {s['arm']} | {s['seeds']} | {s['train_images']} | {s['train_identities']} | "
                     f"{_pm(s, 'accuracy')} | {_ci(s, 'accuracy')} | {_diff(s, 'accuracy')} | "
                     f"{'' if not math.isfinite(gap) else f'{gap:.2f}'} | {_pm(s, 'eer')} | {_diff(s, 'eer')} | "
                     f"{_pm(s, 'tar_far_1e3')} | {_pm(s, 'tar_far_1e4')} |")
    lines += ["", f"![accuracy on {test_set}]({plot})", ""]
    return lines


def _seed_table(rows) -> list[str]:
    lines = ["## Every trial", "", "| test set | arm | seed | accuracy (± fold std) | EER | TAR@FAR=1e-3 | "
             "TAR@FAR=1e-4 | train steps | final loss | wall s | reused |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        loss = "" if not math.isfinite(r["train_loss"]) else f"{r['train_loss']:.3f}"
        lines.append(f"| {r['test_set']} | {r['arm']} | {r['seed']} | {r['accuracy']:.4f} ± "
                     f"{r['accuracy_fold_std']:.4f} | {r['eer']:.4f} | {r['tar_far_1e3']:.4f} | "
                     f"{r['tar_far_1e4']:.4f} | {r['train_steps']} | {loss} | {r['wall_s']:.0f} | "
                     f"{'yes' if r['reused'] else 'no'} |")
    return lines


def report_md(title: str, rows, summary, reference: str, plots: dict[str, str], notes: list[str],
              failures: list[str]) -> str:
    """The benchmark's ``report.md``."""
    lines = [f"# Benchmark `{title}`: FR trained on each arm, verified on real identities it never saw", ""]
    lines += [f"- {n}" for n in notes] + [""]
    if failures:
        lines += ["**Failed trials** (re-run the same command to retry them; finished trials are reused):", ""]
        lines += [f"- {f}" for f in failures] + [""]
    for test_set in sorted({r["test_set"] for r in rows}):
        lines += _set_section(test_set, summary, rows, reference, plots[test_set])
    lines += _seed_table(rows)
    return "\n".join(lines) + "\n"


__all__ = ["METRICS", "accuracy_png", "report_md", "result_rows", "summarise"]
