"""The Ray Tune edge: the function trainable, the searcher and scheduler, and the Tuner (fresh
or restored). Everything a trial computes is in :mod:`synthface_ray.tune.protocol`.

Resources: each trial is one placement-group bundle of ``resources.cpus`` / ``resources.gpus``
and samples and scores in its own process (no Ray tasks or actors inside a trial), so nothing
it launches can wait forever for CPUs its own placement group holds (the nested-task trap:
tasks started inside a trial are scheduled into the trial's group by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synthface_ray.evaluate.config import Config as EvaluateConfig
from synthface_ray.evaluate.downstream import PairProtocol
from synthface_ray.storage import is_s3
from synthface_ray.tune import spaces
from synthface_ray.tune.config import Config, PlanKnobs, ProtocolSection
from synthface_ray.tune.protocol import Downstream, Models, run_trial


@dataclass
class TrialSpec:
    """What every trial needs (small and picklable)."""

    job: Any  # synthface_ray.generate.config.Config
    plan: PlanKnobs
    protocol: ProtocolSection
    evaluation: Any  # synthface_ray.evaluate.config.Config
    objective: Any
    threads: int
    downstream: Any = None  # synthface_ray.tune.protocol.Downstream, when enabled

    def run(self, params: dict[str, Any], report) -> None:
        """One trial with ``params`` (dotted path -> value); ``report`` receives each rung's
        metrics plus ``objective``."""
        sampler, knobs = spaces.apply_params(self.job.sampler, self.plan, params)
        models = Models.load(self.job, self.threads)

        def with_objective(metrics: dict[str, Any]) -> None:
            report({**metrics, "objective": self.objective.value(metrics)})

        run_trial(models, sampler, knobs, self.protocol, self.evaluation, with_objective,
                  self.downstream)


def evaluation_config(cfg: Config, model: str, data: str = "", report: str = ""):
    """The ``synthface evaluate`` config a trial scores with (and the exported job uses)."""
    ev = EvaluateConfig(separability=cfg.separability, verification=cfg.verification,
                        diversity=cfg.diversity, uniqueness=cfg.uniqueness, storage=cfg.storage)
    ev.model.path, ev.data.path, ev.output.path, ev.output.overwrite = model, data, report, True
    return ev


def _absolute(path: str | None) -> str | None:
    import os

    return path if not path or is_s3(path) else os.path.abspath(path)


def make_spec(cfg: Config, job) -> TrialSpec:
    """The trials' spec; local paths made absolute (Tune runs each trial in its own directory)."""
    import copy

    job = copy.deepcopy(job)
    job.model.generator, job.model.fr = _absolute(job.model.generator), _absolute(job.model.fr)
    job.input.identities = _absolute(job.input.identities)
    return TrialSpec(job, cfg.plan, cfg.protocol, evaluation_config(cfg, job.model.fr), cfg.objective,
                     cfg.resources.threads(), downstream_of(cfg))


def downstream_of(cfg: Config):
    """The resolved downstream objective (test path absolute), or None when disabled."""
    d = cfg.downstream
    if not d.enabled:
        return None
    return Downstream(d.train_config(), _absolute(d.test), PairProtocol(d.genuine, d.impostor, d.folds, d.seed),
                      d.every_rung, cfg.storage)


def _report(metrics: dict[str, Any]) -> None:
    from ray import tune

    tune.report(metrics)


def trainable(cfg: Config, spec: TrialSpec):
    """The function trainable with its per-trial resources."""
    from ray import tune

    def trial(params: dict[str, Any]) -> None:
        spec.run(params, _report)

    resources = {"cpu": cfg.resources.cpus, "gpu": cfg.resources.gpus}
    return tune.with_resources(trial, resources)


def _searcher(cfg: Config):
    if cfg.search.algorithm == "random":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(random_state=cfg.search.seed)  # seeded: the same trials every run
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    sampler = (optuna.samplers.NSGAIISampler(seed=cfg.search.seed) if cfg.objective.is_multi
               else optuna.samplers.TPESampler(seed=cfg.search.seed))
    return OptunaSearch(metric=cfg.tune_metric, mode=cfg.tune_mode, sampler=sampler)


def _scheduler(cfg: Config):
    if cfg.search.scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", max_t=len(cfg.protocol.rungs()),
                         grace_period=1, reduction_factor=cfg.protocol.growth)


def tune_config(cfg: Config):
    from ray import tune

    searcher, multi = _searcher(cfg), cfg.objective.is_multi
    return tune.TuneConfig(
        metric=None if multi else cfg.tune_metric, mode=None if multi else cfg.tune_mode,
        search_alg=searcher, scheduler=_scheduler(cfg), num_samples=cfg.search.samples,
        max_concurrent_trials=cfg.search.concurrent, time_budget_s=cfg.search.time_budget_s)


def build_tuner(cfg: Config, spec: TrialSpec, experiment, restore: bool):
    """A fresh :class:`ray.tune.Tuner`, or the sweep at ``experiment`` restored (finished trials
    are kept; unfinished and errored ones run again)."""
    from ray import tune

    fs = experiment.fs if experiment.is_s3 else None
    if restore:
        return tune.Tuner.restore(experiment.path, trainable(cfg, spec), resume_errored=False,
                                  restart_errored=True, storage_filesystem=fs)
    parent, name = experiment.path.rsplit("/", 1)
    run = tune.RunConfig(name=name, storage_path=parent, storage_filesystem=fs, verbose=1)
    return tune.Tuner(trainable(cfg, spec), param_space=spaces.param_space(spaces.parse_space(cfg.space)),
                      tune_config=tune_config(cfg), run_config=run)


__all__ = ["TrialSpec", "build_tuner", "evaluation_config", "make_spec", "trainable", "tune_config"]
