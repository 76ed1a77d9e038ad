"""Shared by the training benchmarks: run the same job at several ZeRO stages in one process and
print a table of steady-state rates (``python benchmarks/train_generator.py`` / ``train_fr.py``).

The rate is measured over the steady-state reports only (the first report window, which holds
worker start-up and the first data blocks, is dropped); steps/s and samples/s are global (all
workers), read from the run's ``metrics.jsonl``.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import Any

from synthface_ray.train.monitor import read_metrics


def steady_rate(cfg) -> tuple[float, float]:
    """Mean steps/s and samples/s over all report windows but the first."""
    history = read_metrics(cfg.run_dir())[1:]
    if not history:
        raise RuntimeError("too few reports: raise --steps or lower --report-every")
    steps = sum(m["steps_per_s"] for m in history) / len(history)
    samples = sum(m["samples_per_s"] for m in history) / len(history)
    return steps, samples


def compare_stages(fit: Callable[[Any], Any], config_for: Callable[[int], Any], title: str,
                   stages: tuple[int, ...] = (0, 2)) -> None:
    """``fit(config_for(stage))`` for each stage, then the table and the last/first ratio."""
    rows = {}
    for stage in stages:
        cfg = config_for(stage)
        start = time.perf_counter()
        fit(cfg)
        rows[stage] = (*steady_rate(cfg), time.perf_counter() - start)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {title}")
    print("| ZeRO stage | steps/s | samples/s | wall s (incl. start-up) |")
    print("|---|---|---|---|")
    for stage, (steps, samples, wall) in rows.items():
        print(f"| {stage} | {steps:.2f} | {samples:.0f} | {wall:.0f} |")
    first, last = stages[0], stages[-1]
    print(f"ZeRO-{last} / ZeRO-{first} steps/s ratio: {rows[last][0] / rows[first][0]:.2f}")
