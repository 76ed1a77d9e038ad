"""What the training commands (train-generator, train-fr) share: the dry-run plan after the
pre-flight checks, running the job, and the failure message that says how to resume."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from synthface_ray.commands.common import print_dry_run, write_resolved_config


def global_batch_line(cfg) -> str:
    opt, sc = cfg.optim, cfg.scaling
    global_batch = opt.micro_batch * opt.grad_accum * sc.num_workers
    return (f"train {opt.max_steps} steps x {global_batch} images ({sc.num_workers} workers x "
            f"{opt.micro_batch} x {opt.grad_accum} accumulation), DeepSpeed ZeRO-"
            f"{cfg.deepspeed.zero_stage}, precision {cfg.deepspeed.precision}, device {sc.device}")


def run_folder_line(cfg) -> str:
    return (f"run folder {cfg.run_dir().uri} (re-running the same run.name resumes from its "
            f"latest checkpoint; checkpoint every {cfg.run.checkpoint_every} steps)")


def run_training(command: str, task_name: str, cfg, dry_run: bool,
                 plan: Callable[[Any, Any], list[str]]) -> tuple[int, Any]:
    """Dry run: the pre-flight checks and ``plan(cfg, facts)``; else train the task registered
    as ``task_name`` in :data:`synthface_ray.train.job.TASKS`. Returns ``(exit code, Ray Result
    or None)``."""
    from synthface_ray.train import job  # lazy: imports torch

    task = job.get_task(task_name)
    if dry_run:  # the checks that need no cluster, then the plan (fit runs them itself)
        checked, facts = job.preflight(task, cfg)
        print_dry_run(command, cfg, plan(checked, facts))
        return 0, None
    import ray.train

    def save_config(checked) -> None:  # once the checks passed: the run folder's config.yaml (a resume rewrites it)
        write_resolved_config(checked.run_dir(), cfg, command)

    try:
        return 0, job.fit(task, cfg, on_ready=save_config)
    except ray.train.TrainingFailedError as exc:
        print(f"synthface {command}: training failed: {exc}\nCheckpoints so far are in "
              f"{cfg.run_dir().uri}; run the same command again to resume from the latest one.",
              file=sys.stderr)
        return 1, None


def trained_line(cfg, result) -> str:
    metrics = (result.metrics if result is not None else None) or {}
    if "step" in metrics:
        return f"trained to step {metrics['step']} (loss {metrics['loss']:.4f})"
    # the latest checkpoint was already at optim.max_steps: nothing to train
    return f"the run was already at optim.max_steps={cfg.optim.max_steps}; re-exported it"
