"""``synthface benchmark``: the utility benchmark. Train the same FR model on each arm (real,
generated, real + generated, ...; equal budgets), several seeds each, as Ray Tune trials; verify
every model on real identities no arm trained on; report accuracy, EER, TAR@FAR with 95%
intervals, paired differences from a reference arm and the gap closed from random init
(docs/BENCHMARKS.md)."""

from __future__ import annotations

import math
import sys

from synthface_ray.benchmark import plan, runner
from synthface_ray.benchmark.config import Config
from synthface_ray.commands.common import print_dry_run

__all__ = ["Config", "run"]


def _notes(spec) -> list[str]:
    cfg, t = spec.cfg, spec.cfg.test
    return [f"train config: {cfg.train.config}" + (f" with {cfg.train.set}" if cfg.train.set else ""),
            f"seeds: {cfg.seeds}; reference arm: {cfg.reference_arm}",
            f"pairs per test set: {t.genuine} genuine + {t.impostor} impostor (seed {t.seed}), "
            f"{t.folds}-fold accuracy", f"folder: {spec.folder}"]


def _print_summary(summary: list[dict], reference: str) -> None:
    for s in summary:
        diff = ""
        if "accuracy_diff" in s:
            lo, hi = s["accuracy_diff_low"], s["accuracy_diff_high"]
            ci = f" [{lo:+.4f}, {hi:+.4f}]" if math.isfinite(lo) else ""
            diff = f"; vs {reference} {s['accuracy_diff']:+.4f}{ci} {s['accuracy_verdict']}"
        gap = s.get("gap_closed", math.nan)
        std = s["accuracy_std"]
        print(f"  {s['test_set']:>12} {s['arm']:<20} accuracy {s['accuracy_mean']:.4f}"
              + (f" ± {std:.4f}" if math.isfinite(std) else "")
              + f" (n={s['seeds']}), EER {s['eer_mean']:.4f}{diff}"
              + (f"; gap closed {gap:.2f}" if math.isfinite(gap) else ""))


def run(cfg: Config, dry_run: bool = False) -> int:
    spec, lines = plan.preflight(cfg)
    if dry_run:
        print_dry_run("benchmark", cfg, lines)
        return 0
    for line in lines:
        print(f"benchmark: {line}", flush=True)
    rows, summary, failures = runner.run(spec, _notes(spec) + [x for x in lines if x.startswith("WARNING")])
    if rows:
        print(f"\n== benchmark {cfg.output.name}: verification on real identities no arm trained on")
        _print_summary(summary, spec.cfg.reference_arm)
        print(f"report: {spec.location().join(runner.REPORT).uri}")
    if failures:
        print(("no trial finished" if not rows else "some trials failed") + " (re-run the same command to "
              "retry them; finished trials are reused; each trial's log is in the Ray session logs):\n  "
              + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0
