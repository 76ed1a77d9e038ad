"""``synthface tune``: a Ray Tune sweep of sampler and plan knobs on a fixed evaluation set
(common random numbers), ASHA over rungs of growing identities -> results table, one plot per
knob, the best trial as ready-to-run jobs (docs/TUNING.md)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

from synthface_ray import config, storage
from synthface_ray.benchmark.sources import read_facts
from synthface_ray.commands.common import print_dry_run
from synthface_ray.config import ConfigError
from synthface_ray.evaluate.verification import far_resolution_warnings
from synthface_ray.ops.local_ray import init_ray
from synthface_ray.tune import results
from synthface_ray.tune.config import DOWNSTREAM_METRICS, Config
from synthface_ray.tune.plots import knob_png
from synthface_ray.tune.results import trial_row

SWEEP_FILE = "sweep.json"

__all__ = ["Config", "run"]


def _job(cfg: Config):
    from synthface_ray.generate.config import Config as GenerateConfig  # lazy: imports torch

    if not cfg.job:
        raise ConfigError("job is required: the base `synthface generate` YAML (models, identities, "
                          "sampler), e.g. job: synthface_ray/demo_jobs/generate.yaml")
    try:
        job = config.load(GenerateConfig, cfg.job)
    except ConfigError as exc:
        raise ConfigError(f"job {cfg.job}: {exc}") from None
    for key, value in (("model.generator", job.model.generator), ("model.fr", job.model.fr),
                       ("input.identities", job.input.identities)):
        if not value:
            raise ConfigError(f"job {cfg.job}: {key} is required (trials generate with the generator "
                              "and score with the FR model over the identities pool)")
    for key, value in (("model.generator", job.model.generator), ("model.fr", job.model.fr)):
        if not Path(value).is_dir():
            raise FileNotFoundError(f"job {cfg.job}: {key}={value} is not a folder (train and export "
                                    "the model first, e.g. `synthface demo`)")
    return job


def _check_metrics(cfg: Config) -> None:
    names = list(cfg.objective.weights or cfg.objective.multi or [cfg.objective.metric])
    if not cfg.verification.enabled and any(n.startswith("verification") for n in names):
        raise ConfigError(f"objective uses {[n for n in names if n.startswith('verification')]} but "
                          "verification.enabled is false: the trials would not report it")
    if not cfg.downstream.enabled and any(n in DOWNSTREAM_METRICS for n in names):
        raise ConfigError(f"objective uses {[n for n in names if n in DOWNSTREAM_METRICS]} but "
                          "downstream.enabled is false: set it (with downstream.train and downstream.test)")
    if (cfg.downstream.enabled and not cfg.downstream.every_rung and cfg.search.scheduler == "asha"
            and any(n in DOWNSTREAM_METRICS for n in names)):
        raise ConfigError("a downstream objective is measured at the last rung only, but ASHA stops "
                          "trials at earlier rungs: use search.scheduler=fifo or downstream.every_rung=true")


def _check_downstream(cfg: Config) -> list[str]:
    """The downstream FR recipe and real test set, checked before any trial; plan lines."""
    d = cfg.downstream
    if not d.enabled:
        return []
    train = d.train_config()
    facts, _ = read_facts(d.test, cfg.storage)
    if facts.identities < 2:
        raise ConfigError(f"downstream.test {d.test} has {facts.identities} identity: verification needs 2 or more")
    return ([f"downstream: each trial trains {train.backbone.name} (width {train.backbone.width}) for "
             f"{train.optim.max_steps} steps of {train.optim.micro_batch * train.optim.grad_accum} images on its "
             f"generated set, verified on {facts.rows} real images of {facts.identities} unseen identities "
             f"({d.test}) at {'every rung' if d.every_rung else 'the last rung'}"]
            + [f"warning: {w}" for w in far_resolution_warnings(d.impostor)])


def preflight(cfg: Config):
    """Every check that can fail before a trial starts: ``(job, dims, pool size, plan notes)``."""
    from synthface_ray.tune import protocol, spaces  # lazy: imports torch

    job = _job(cfg)
    dims = spaces.parse_space(cfg.space)
    spaces.check_space(dims, job.sampler, cfg.plan)
    _check_metrics(cfg)
    if cfg.search.algorithm == "optuna" and any(d.kind == "grid" for d in dims):
        raise ConfigError("space uses grid with search.algorithm=optuna: Optuna samples every "
                          "dimension; use choice instead of grid, or search.algorithm=random")
    pool = len(protocol.read_pool(job))
    rungs = cfg.protocol.rungs()
    if pool < rungs[-1]:
        raise ConfigError(f"the identities pool {job.input.identities} has {pool} identities but the "
                          f"last rung needs protocol.max_identities={rungs[-1]}: lower it to <= {pool}"
                          " (a budget too small for one rung: lower protocol.min_identities too)")
    return job, dims, pool, _check_downstream(cfg)


def _fingerprint(cfg: Config, job) -> dict[str, Any]:
    """What makes two runs the same sweep (not where it is written nor how fast)."""
    data = config.to_dict(cfg)
    data.pop("output")
    data["search"].pop("concurrent")
    data["job"] = {"path": cfg.job, "config": config.to_dict(job)}
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def _differing(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in sorted(set(a) | set(b)) for k in _differing(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


def open_sweep(cfg: Config, job) -> tuple[storage.Location, bool]:
    """The sweep folder and whether to restore it. A folder of another sweep is refused unless
    ``output.overwrite`` (which starts afresh)."""
    from ray import tune

    exp = storage.resolve(cfg.output.path, cfg.storage).join(cfg.output.name)
    mine = _fingerprint(cfg, job)
    marker = exp.join(SWEEP_FILE)
    if storage.exists(marker) and not cfg.output.overwrite:
        theirs = storage.read_json(marker)
        if theirs != mine:
            raise FileExistsError(f"{exp.uri} holds another sweep (differs in {_differing(theirs, mine)[:8]}); "
                                  "set output.overwrite=true to replace it or choose output.name")
    elif storage.exists(exp) and storage.list_files(exp, recursive=True):
        if not cfg.output.overwrite:
            raise FileExistsError(f"{exp.uri} exists and is not a synthface sweep; set "
                                  "output.overwrite=true to replace it or choose output.name")
        exp.fs.delete_dir_contents(exp.path)
    elif cfg.output.overwrite and storage.exists(exp):
        exp.fs.delete_dir_contents(exp.path)
    restore = storage.exists(marker) and tune.Tuner.can_restore(exp.path, exp.fs if exp.is_s3 else None)
    storage.atomic_write_json(marker, mine)
    return exp, restore


def _rows(grid, last_rung: int) -> list[dict[str, Any]]:
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or Path(str(result.path)).name
        rows.append(trial_row(str(trial_id), dict(result.config or {}), metrics,
                              None if result.error is None else repr(result.error), last_rung))
    return rows


def write_outputs(cfg: Config, job, dims, rows, exp: storage.Location) -> list[str]:
    """results.parquet / .csv, plots/<knob>.png, best/ (and pareto.csv); returns summary lines."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from synthface_ray.tune import export  # lazy: imports torch

    table = results.results_table(rows)
    for name, write in (("results.parquet", pq.write_table), ("results.csv", pacsv.write_csv)):
        buf = io.BytesIO()
        write(table, buf)
        storage.atomic_write_bytes(exp.join(name), buf.getvalue())
    best = results.best_rows(table, cfg)
    ylabel = next(iter(cfg.objective.multi)) if cfg.objective.is_multi else "objective"
    title = ylabel if cfg.objective.is_multi else (
        f"objective: {cfg.objective.metric if not cfg.objective.weights else 'weighted sum'} ({cfg.objective.mode})")
    best_ids = {r["trial_id"] for r in best}
    scored = [r for r in table.to_pylist() if isinstance(r.get(ylabel), (int, float))]
    for dim in dims if scored else []:
        xs = [r[f"param:{dim.path}"] for r in scored]
        kinds = ["best" if r["trial_id"] in best_ids else r["status"] for r in scored]
        kinds = [k if k in ("best", "completed") else "stopped" for k in kinds]
        png = knob_png(xs, [r[ylabel] for r in scored], kinds, dim.path, title, log=dim.kind == "loguniform")
        storage.atomic_write_bytes(exp.join("plots", f"{dim.path}.png"), png)
    lines = results.summary_lines(table, best, cfg)
    if cfg.objective.is_multi and best:
        buf = io.BytesIO()
        pacsv.write_csv(results.results_table(best), buf)
        storage.atomic_write_bytes(exp.join("pareto.csv"), buf.getvalue())
        lines.append(f"pareto front: {exp.join('pareto.csv').uri}")
    if best:
        folder = export.export_best(job, cfg, best[0], exp)
        lines.append(f"best job: synthface generate --config {folder.join('generate.yaml').uri}")
    else:
        lines.append("no trial completed every rung: nothing to export (see results.csv errors)")
    lines += [f"results: {exp.join('results.csv').uri}", f"plots: {exp.join('plots').uri}"]
    return lines


def run(cfg: Config, dry_run: bool = False) -> int:
    from synthface_ray.tune import spaces, trainable  # lazy: imports torch

    job, dims, pool, notes = preflight(cfg)
    rungs = cfg.protocol.rungs()
    if dry_run:
        print_dry_run("tune", cfg, [
            f"{cfg.search.samples * spaces.grid_size(dims)} trials ({cfg.search.algorithm}, "
            f"{cfg.search.scheduler}) over {[d.path for d in dims]}",
            f"rungs of {rungs} identities from a pool of {pool}; objective {cfg.tune_metric} ({cfg.tune_mode})",
            *notes, f"-> {storage.resolve(cfg.output.path, cfg.storage).join(cfg.output.name).uri}"])
        return 0
    for line in notes:
        print(line)
    init_ray()  # a cluster if there is one, else a local Ray on loopback
    exp, restore = open_sweep(cfg, job)
    print(("restoring" if restore else "starting") + f" sweep {exp.uri}: rungs of {rungs} identities, "
          f"{cfg.search.samples * spaces.grid_size(dims)} trials, {cfg.resources.cpus:g} CPU / "
          f"{cfg.resources.gpus:g} GPU each")
    start = time.perf_counter()
    grid = trainable.build_tuner(cfg, trainable.make_spec(cfg, job), exp, restore).fit()
    wall = time.perf_counter() - start
    rows = _rows(grid, len(rungs))
    if rows and all(r["status"] == "error" for r in rows):
        raise RuntimeError(f"all {len(rows)} trials failed; the first: {rows[0]['error']} "
                           f"(error files under {exp.uri})")
    for line in [f"sweep finished in {wall:.0f} s"] + write_outputs(cfg, job, dims, rows, exp):
        print(line)
    return 0
