"""The best trial as ready-to-run jobs: ``best/plan.parquet`` (the trial's whole evaluation plan:
same identities, same per-row seeds), ``best/generate.yaml`` (the base job with the trial's
sampler), ``best/evaluate.yaml`` (the trial's evaluation settings) and ``best/best.json``.
Running the two jobs reproduces the trial's final metrics (bit-for-bit on the same hardware and
software; ``docs/TUNING.md``)."""

from __future__ import annotations

import copy
import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from synthface_ray import config, storage
from synthface_ray.tune import protocol, spaces
from synthface_ray.tune.config import METRICS, Config
from synthface_ray.tune.results import params_of
from synthface_ray.tune.trainable import evaluation_config

BEST = "best"


def trial_plan(job, cfg: Config, params: dict[str, Any]) -> pa.Table:
    """The whole plan a trial with ``params`` generated (every rung, in row order)."""
    _, knobs = spaces.apply_params(job.sampler, cfg.plan, params)
    pool = protocol.trial_pool(protocol.read_pool(job), knobs, cfg.protocol.seed)
    return pa.concat_tables(protocol.rung_plans(pool, knobs, cfg.protocol))


def best_jobs(job, cfg: Config, params: dict[str, Any], folder: storage.Location):
    """``(generate config, evaluate config)`` that regenerate and re-score the trial in ``folder``."""
    sampler, _ = spaces.apply_params(job.sampler, cfg.plan, params)
    gen = copy.deepcopy(job)
    gen.sampler = sampler
    gen.input.plan = folder.join("plan.parquet").uri
    gen.output.path, gen.output.name, gen.output.overwrite = folder.uri, "generated", False
    gen.fault = type(gen.fault)()
    return gen, evaluation_config(cfg, job.model.fr, data=folder.join("generated").uri,
                                  report=folder.join("report").uri)


def export_best(job, cfg: Config, row: dict[str, Any], sweep: storage.Location) -> storage.Location:
    """Write the best trial's jobs under ``<sweep>/best``; returns that folder."""
    folder = sweep.join(BEST)
    params = params_of(row)
    buf = io.BytesIO()
    pq.write_table(trial_plan(job, cfg, params), buf)
    storage.atomic_write_bytes(folder.join("plan.parquet"), buf.getvalue())
    gen, ev = best_jobs(job, cfg, params, folder)
    head = f"# best trial {row['trial_id']} of the sweep {sweep.uri}\n"
    storage.atomic_write_text(folder.join("generate.yaml"),
                              head + f"# synthface generate --config {folder.join('generate.yaml').uri}\n"
                              + config.dump_yaml(gen))
    storage.atomic_write_text(folder.join("evaluate.yaml"),
                              head + f"# synthface evaluate --config {folder.join('evaluate.yaml').uri}\n"
                              + config.dump_yaml(ev))
    storage.atomic_write_json(folder.join("best.json"), {
        "trial_id": row["trial_id"], "params": params, "objective": row["objective"],
        "metrics": {name: row[name] for name in METRICS if row.get(name) is not None},
        "identities": row["identities"], "images": row["images"],
        "reproduce": [f"synthface generate --config {folder.join('generate.yaml').uri}",
                      f"synthface evaluate --config {folder.join('evaluate.yaml').uri}"]})
    return folder


__all__ = ["BEST", "best_jobs", "export_best", "trial_plan"]
