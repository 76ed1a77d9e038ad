"""``synthface pipeline --config jobs/pipeline.yaml``: the full job chain (train FR, train the
generator, identities, mining, plan, generate, evaluate) as steps of job files. Every step is
loaded into its command's config before the first one runs, so a broken step is refused up
front; a step whose ``done`` marker exists is reused, so a re-run (or a re-submission after a
failure) resumes at the first unfinished step. ``synthface demo`` runs its stages through the
same runner."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from synthface_ray import config, storage
from synthface_ray.commands import catalog
from synthface_ray.storage import StorageConfig

#: commands that cannot be a step (they run or submit steps themselves)
NOT_A_STEP = ("pipeline", "demo", "submit", "papers")


@dataclass
class Step:
    """``command``: a synthface command; ``config``: its job file (relative to the folder the
    pipeline runs in); ``set``: ``--set`` overrides, ``{root}`` replaced by ``pipeline.root``;
    ``done``: a path (``{root}`` allowed, local or s3://) whose presence means the step is
    complete (e.g. its manifest.json); empty = always run."""

    command: str = ""
    config: str = ""
    set: list[str] = field(default_factory=list)
    done: str = ""


@dataclass
class PipelineSection:
    """``root``: where the steps write (substituted for ``{root}``); ``steps``: in order."""

    root: str = "runs/pipeline"
    steps: list[Step] = field(default_factory=list)


@dataclass
class Config:
    pipeline: PipelineSection = field(default_factory=PipelineSection)
    storage: StorageConfig = field(default_factory=StorageConfig)


def resolved(step: Step, root: str) -> Step:
    r = root.rstrip("/")
    return Step(step.command, step.config, [s.replace("{root}", r) for s in step.set], step.done.replace("{root}", r))


def load_steps(steps: list[Step], root: str) -> list[tuple[Step, object]]:
    """Each step with its command's config loaded (all checked before anything runs)."""

    if not steps:
        raise config.ConfigError("pipeline.steps is empty: list the steps (command, config, set, done)")
    out = []
    for i, raw in enumerate(steps):
        step = resolved(raw, root)
        where = f"pipeline.steps[{i}] ({step.command or '?'})"
        if step.command not in catalog.COMMANDS or step.command in NOT_A_STEP:
            raise config.ConfigError(f"{where}: command must be one of "
                                     f"{sorted(set(catalog.COMMANDS) - set(NOT_A_STEP))}")
        try:
            cfg = config.load(catalog.module(step.command).Config, step.config or None, step.set)
        except config.ConfigError as exc:
            raise config.ConfigError(f"{where}: {exc}") from exc
        out.append((step, cfg))
    return out


def run_steps(loaded: list[tuple[Step, object]], store: StorageConfig | None, title: str,
              on_step: Callable[[int, str, float], None] | None = None) -> list[tuple[str, float]]:
    """Run the steps in order, skipping those whose ``done`` marker exists; (command, seconds).
    ``on_step(index, command, seconds)`` (index from 1) is called as each step finishes, so a
    caller can keep the time of the finished steps of a run that later fails or is stopped."""

    start, timings = time.perf_counter(), []
    for i, (step, cfg) in enumerate(loaded, 1):
        head = f"\n== {title} {i}/{len(loaded)}: {step.command}"
        if step.done and storage.exists(storage.resolve(step.done, store)):
            print(f"{head}: complete, reused ({step.done})", flush=True)
            continue
        print(f"{head} ({time.perf_counter() - start:.0f} s so far)", flush=True)
        t0 = time.perf_counter()
        code = int(catalog.module(step.command).run(cfg) or 0)
        if code:
            raise RuntimeError(f"{title} step {i} ({step.command}) failed with exit code {code}; "
                               f"fix it and re-run: finished steps are reused")
        timings.append((step.command, time.perf_counter() - t0))
        if on_step:
            on_step(i, *timings[-1])
    return timings


def run(cfg: Config, dry_run: bool = False) -> int:
    p = cfg.pipeline
    loaded = load_steps(p.steps, p.root)
    if dry_run:
        print(f"# dry run of `synthface pipeline`: {len(loaded)} steps under {p.root}; nothing is written")
        for step, _ in loaded:
            sets = " ".join(f"--set {config.redact_override(s)}" for s in step.set)
            print(f"synthface {step.command}" + (f" --config {step.config}" if step.config else "")
                  + (f" {sets}" if sets else "") + (f"   # done when {step.done} exists" if step.done else ""))
        return 0
    start = time.perf_counter()
    timings = run_steps(loaded, cfg.storage, "pipeline")
    total = time.perf_counter() - start
    print(f"\n== pipeline finished in {total / 60:.1f} min: "
          + (", ".join(f"{c} {t:.0f} s" for c, t in timings) or "every step was already complete"))
    return 0
