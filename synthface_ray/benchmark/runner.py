"""The Ray Tune edge of ``synthface benchmark``: the unfinished (arm, seed) trials as one fixed
grid on a Tune ``Tuner`` (``resources.concurrent`` at a time, each trial a function trainable
whose Ray Train FR job schedules its own workers), then the outputs from every trial's
``result.json``.

Resume: a trial writes ``result.json`` last, under a folder named by its fingerprint; a re-run
(after a killed driver, a failed trial, or with arms added) schedules only the trials without a
result, and an interrupted trial's FR run resumes from its latest checkpoint. Tune's own
experiment state (``tune/``) is rebuilt on every run: the trial results are the record.
"""

from __future__ import annotations

import io
import time
from typing import Any

from synthface_ray import config, storage
from synthface_ray.benchmark import report
from synthface_ray.benchmark.config import RANDOM_INIT
from synthface_ray.benchmark.trial import TrialSpec, read_result, run_trial
from synthface_ray.ops.local_ray import init_ray

REPORT, CONFIG = "report.md", "config.yaml"


def _flat(result: dict[str, Any]) -> dict[str, Any]:
    out = {"arm": result["arm"], "seed": result["seed"], "train_images": result["train"]["images"]}
    for name, m in result["test"].items():
        out.update({f"{name}/accuracy": m["accuracy"], f"{name}/eer": m["eer"],
                    f"{name}/tar_at_far_1e3": m["tar_at_far_1e3"], f"{name}/tar_at_far_1e4": m["tar_at_far_1e4"]})
    return out


def trainable(spec: TrialSpec):
    """The function trainable (one trial = one arm at one seed) with its resources."""
    from ray import tune

    def trial(params: dict[str, Any]) -> None:
        tune.report(_flat(run_trial(spec, params["trial"]["arm"], int(params["trial"]["seed"]))))

    r = spec.cfg.resources
    return tune.with_resources(trial, {"cpu": r.cpus, "gpu": r.gpus})


def pending(spec: TrialSpec) -> list[dict[str, Any]]:
    """The trials without a finished result, random_init first (it is quick)."""
    cfg = spec.cfg
    order = [RANDOM_INIT] + [a for a in cfg.arm_names if a != RANDOM_INIT] if cfg.random_init else cfg.arm_names
    return [{"arm": arm, "seed": seed} for arm in order for seed in cfg.seeds
            if read_result(spec, arm, seed) is None]


def run_trials(spec: TrialSpec, todo: list[dict[str, Any]]) -> list[str]:
    """Run ``todo`` on Ray Tune; returns one line per failed trial."""
    from ray import tune

    if not todo:
        return []
    exp = spec.location().join("tune")
    if storage.exists(exp):
        exp.fs.delete_dir_contents(exp.path)
    init_ray()  # a cluster if there is one, else a local Ray on loopback
    parent = exp.path.rsplit("/", 1)[0]
    tuner = tune.Tuner(
        trainable(spec), param_space={"trial": tune.grid_search(todo)},
        tune_config=tune.TuneConfig(max_concurrent_trials=spec.cfg.resources.concurrent),
        run_config=tune.RunConfig(name="tune", storage_path=parent,
                                  storage_filesystem=exp.fs if exp.is_s3 else None, verbose=1))
    grid = tuner.fit()
    return [f"{r.config['trial']['arm']} seed {r.config['trial']['seed']}: {r.error}"
            for r in grid if r.error is not None]


def collect(spec: TrialSpec) -> list[dict[str, Any]]:
    """Every finished trial's result, in arm then seed order."""
    out = []
    for arm in spec.cfg.arm_names:
        for seed in spec.cfg.seeds:
            result = read_result(spec, arm, seed)
            if result is not None:
                out.append(result)
    return out


def _table(rows: list[dict[str, Any]]):
    """A table of every key any row has (``from_pylist`` would keep the first row's keys only:
    the reference arm has no difference columns)."""
    import pyarrow as pa

    keys = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows])


def write_outputs(spec: TrialSpec, results: list[dict[str, Any]], notes: list[str],
                  failures: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """results.parquet / .csv, summary.csv, plots/accuracy_<set>.png, then report.md (last)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    cfg, loc = spec.cfg, spec.location()
    rows = report.result_rows(results)
    floor = RANDOM_INIT if cfg.random_init else None
    summary = report.summarise(rows, cfg.arm_names, cfg.reference_arm, floor)
    for name, table, writer in (("results.parquet", _table(rows), pq.write_table),
                                ("results.csv", _table(rows), pacsv.write_csv),
                                ("summary.csv", _table(summary), pacsv.write_csv)):
        buf = io.BytesIO()
        writer(table, buf)
        storage.atomic_write_bytes(loc.join(name), buf.getvalue())
    plots = {}
    for test_set in sorted({r["test_set"] for r in rows}):
        plots[test_set] = f"plots/accuracy_{test_set}.png"
        storage.atomic_write_bytes(loc.join(plots[test_set]), report.accuracy_png(summary, rows, test_set))
    text = report.report_md(cfg.output.name, rows, summary, cfg.reference_arm, plots, notes, failures)
    storage.atomic_write_text(loc.join(REPORT), text)
    return rows, summary


def start_folder(spec: TrialSpec) -> None:
    """``overwrite`` empties the folder; the old report goes first (it marks a finished run)."""
    loc = spec.location()
    if spec.cfg.output.overwrite and storage.exists(loc):
        loc.fs.delete_dir_contents(loc.path)
    storage.delete_file(loc.join(REPORT))
    storage.ensure_dir(loc)
    text = "# resolved config of `synthface benchmark`; re-run with --config this-file\n"
    storage.atomic_write_text(loc.join(CONFIG), text + config.dump_yaml(spec.cfg))


def run(spec: TrialSpec, notes: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Run the unfinished trials and write every output; returns ``(rows, summary, failures)``
    (no outputs and empty rows when no trial finished)."""
    start = time.perf_counter()
    start_folder(spec)
    todo = pending(spec)
    total = len(spec.cfg.arm_names) * len(spec.cfg.seeds)
    print(f"benchmark: {total - len(todo)} of {total} trials already finished (reused); running {len(todo)}",
          flush=True)
    failures = run_trials(spec, todo)
    results = collect(spec)
    missing = total - len(results)
    if missing and not failures:
        failures = [f"{missing} trial(s) reported no result"]
    notes = notes + [f"trials: {len(todo)} run, {total - len(todo)} reused; this run took "
                     f"{time.perf_counter() - start:.0f} s"]
    if not results:  # nothing to report: no report.md (its presence means a finished run)
        return [], [], failures
    rows, summary = write_outputs(spec, results, notes, failures)
    return rows, summary, failures


__all__ = ["collect", "pending", "run", "run_trials", "trainable", "write_outputs"]
