"""A finished sweep's outputs (pure except for writing): the results table, the Pareto front,
the best trial and its export as ready-to-run ``synthface generate`` / ``synthface evaluate``
jobs that reproduce its metrics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from synthface_ray.tune.config import METRICS, Config

COMPLETED, STOPPED, ERROR = "completed", "stopped", "error"


def trial_row(trial_id: str, params: dict[str, Any], metrics: dict[str, Any] | None, error: str | None,
              last_rung: int) -> dict[str, Any]:
    """One results row: id, status (completed = reached the last rung; stopped = by ASHA or the
    time budget), the rung reached, the final metrics and every searched parameter."""
    metrics = metrics or {}
    rung = int(metrics.get("rung") or 0)
    status = ERROR if error else COMPLETED if rung >= last_rung else STOPPED
    row: dict[str, Any] = {"trial_id": trial_id, "status": status, "rung": rung,
                           "identities": metrics.get("identities"), "images": metrics.get("images"),
                           "objective": metrics.get("objective")}
    row.update({name: metrics.get(name) for name in METRICS})
    row.update({f"param:{path}": value for path, value in params.items()})
    row["error"] = (error or "")[:500]
    return row


def results_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows sorted by trial id; parameters as ``param:<path>`` columns (choice values as text
    when the candidates mix types)."""
    rows = sorted(rows, key=lambda r: r["trial_id"])
    columns = list(dict.fromkeys(k for r in rows for k in r))
    data = {}
    for col in columns:
        values = [r.get(col) for r in rows]
        kinds = {type(v) for v in values if v is not None}
        if len(kinds) > 1 and not kinds <= {int, float}:
            values = [None if v is None else str(v) for v in values]
        data[col] = pa.array(values)
    return pa.table(data)


def pareto_front(values: np.ndarray, modes: list[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (n, k) under ``modes`` (min/max per
    column): no other row is at least as good in every objective and better in one."""
    v = np.asarray(values, np.float64) * np.array([1.0 if m == "min" else -1.0 for m in modes])
    keep = np.ones(len(v), bool)
    for i in range(len(v)):
        dominated = (v <= v[i]).all(1) & (v < v[i]).any(1)
        keep[i] = not dominated.any()
    return keep


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def best_rows(table: pa.Table, cfg: Config) -> list[dict[str, Any]]:
    """The completed trials that are best: one (objective) or the Pareto front (``multi``),
    best first (by the first objective)."""
    rows = [r for r in table.to_pylist() if r["status"] == COMPLETED]
    names = list(cfg.objective.multi) if cfg.objective.is_multi else ["objective"]
    modes = list(cfg.objective.multi.values()) if cfg.objective.is_multi else [cfg.objective.mode]
    rows = [r for r in rows if all(_finite(r[n]) for n in names)]
    if not rows:
        return []
    sign = 1.0 if modes[0] == "min" else -1.0
    if cfg.objective.is_multi:
        mask = pareto_front(np.array([[r[n] for n in names] for r in rows]), modes)
        rows = [r for r, keep in zip(rows, mask, strict=True) if keep]
    rows.sort(key=lambda r: (sign * r[names[0]], r["trial_id"]))
    return rows if cfg.objective.is_multi else rows[:1]


def params_of(row: dict[str, Any]) -> dict[str, Any]:
    return {k.split(":", 1)[1]: v for k, v in row.items() if k.startswith("param:")}


def summary_lines(table: pa.Table, best: list[dict[str, Any]], cfg: Config) -> list[str]:
    statuses = table.column("status").to_pylist()
    lines = [f"{len(statuses)} trials: {statuses.count(COMPLETED)} completed every rung, "
             f"{statuses.count(STOPPED)} stopped early, {statuses.count(ERROR)} failed"]
    shown = list(cfg.objective.multi) if cfg.objective.is_multi else ["objective"]
    for row in best:
        metric = ", ".join(f"{n} {row[n]:.4f}" for n in shown)
        knobs = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params_of(row).items())
        lines.append(f"{'pareto' if cfg.objective.is_multi else 'best'} {row['trial_id']}: {metric} ({knobs})")
    return lines


__all__ = ["COMPLETED", "ERROR", "STOPPED", "best_rows", "params_of", "pareto_front", "results_table",
           "summary_lines", "trial_row"]
