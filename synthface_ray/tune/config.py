"""Typed configuration of ``synthface tune`` (defaults in one place, checked on load).

A sweep is a base generation job (models, identity pool, sampler, precision) plus a search space
over dotted paths of its ``sampler`` section and of the trial plan's knobs (:class:`PlanKnobs`),
a fixed evaluation protocol (:class:`ProtocolSection`, the same identities and per-row seeds in
every trial), an objective over the metrics a trial reports (:data:`METRICS`), and the search
(algorithm, scheduler, samples) with its per-trial resources.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synthface_ray.config import (
    ConfigError,
    apply_dotted,
    check_choice,
    check_range,
    check_seed,
    from_dict,
    read_yaml,
)
from synthface_ray.evaluate.config import (
    DiversitySection,
    SeparabilitySection,
    UniquenessSection,
    VerificationSection,
)
from synthface_ray.storage import StorageConfig

#: metric a trial reports -> where it sits in the evaluation suite's metrics (evaluate/report.py)
METRICS: dict[str, str] = {
    "eer": "separability.eer",
    "fmr100": "separability.fmr100",
    "fmr1000": "separability.fmr1000",
    "fdr": "separability.fdr",
    "d_prime": "separability.d_prime",
    "genuine_mean": "separability.genuine_mean",
    "impostor_mean": "separability.impostor_mean",
    "verification_accuracy": "verification.accuracy",
    "verification_eer": "verification.eer",
    "diversity_fr": "diversity.fr",
    "diversity_pixel": "diversity.pixel",
    "consistency": "identity_consistency",
    "uniqueness": "uniqueness.fraction",
    "downstream_accuracy": "downstream.accuracy",
    "downstream_eer": "downstream.eer",
    "downstream_tar_far_1e3": "downstream.tar_at_far_1e3",
}
#: metrics only a trial with ``downstream.enabled`` reports
DOWNSTREAM_METRICS = ("downstream_accuracy", "downstream_eer", "downstream_tar_far_1e3")
MODES = ("min", "max")
NEGATIVES = ("far", "close", "mid", "random", "null")


@dataclass
class PlanKnobs:
    """Knobs of the trial plan (searchable as ``plan.<knob>``): ``mix_lambda`` ScoreMix's
    lambda (the first source's weight, the second gets 1 - lambda; eq. 3 of ScoreMix),
    ``negative`` the NegFaceDiff negative strategy over the identity pool (``null``: no
    negatives), ``tau`` a uniqueness threshold applied to the pool before the evaluation
    identities are drawn (DCFace/Vec2Face filtering; null = keep the pool as it is)."""

    mix_lambda: float = 0.5
    negative: str = "far"
    tau: float | None = None

    def __post_init__(self) -> None:
        check_range("plan.mix_lambda", self.mix_lambda, 0.0, 1.0)
        check_choice("plan.negative", self.negative, NEGATIVES)
        if self.tau is not None:
            check_range("plan.tau", self.tau, -1.0, 1.0)


@dataclass
class ProtocolSection:
    """The evaluation set, identical in every trial (common random numbers): identities drawn
    from the pool in a fixed ``seed``-ed order, ``images_per_identity`` each with per-row seeds
    keyed by (identity, image index). Rung k (ASHA) evaluates the first
    ``min_identities * growth**k`` identities (the last rung: ``max_identities``); each rung only
    generates its new identities. ``mix_fraction`` of each rung's new identities are paired
    (far apart in FR space) into ScoreMix mixes of ``images_per_mix`` images."""

    min_identities: int = 8
    max_identities: int = 32
    growth: int = 2
    images_per_identity: int = 4
    mix_fraction: float = 0.5
    images_per_mix: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        check_range("protocol.growth", self.growth, 2)
        check_range("protocol.mix_fraction", self.mix_fraction, 0.0, 1.0)
        check_range("protocol.images_per_mix", self.images_per_mix, 0)
        check_seed("protocol.seed", self.seed)
        if self.images_per_identity < 2:
            raise ConfigError(f"protocol.images_per_identity={self.images_per_identity}: the "
                              "separability metrics need at least 2 images per identity")
        if self.min_identities < 2:
            raise ConfigError(f"protocol.min_identities={self.min_identities}: a rung needs at least 2 "
                              "identities (EER compares identities)")
        if self.max_identities < self.min_identities:
            raise ConfigError(f"protocol.max_identities={self.max_identities} is below "
                              f"protocol.min_identities={self.min_identities}: the budget is too small "
                              "for one rung; raise max_identities or lower min_identities")

    def rungs(self) -> list[int]:
        """Identities evaluated at each rung: min, min*growth, ... capped at max (the last)."""
        out = [self.min_identities]
        while out[-1] < self.max_identities:
            out.append(min(out[-1] * self.growth, self.max_identities))
        return out


@dataclass
class ObjectiveSection:
    """``metric`` + ``mode``; or ``weights`` (metric -> weight) whose weighted sum is the
    objective, with ``mode``; or ``multi`` (metric -> min|max): a multi-objective Optuna sweep
    whose Pareto front is reported. ``metric`` is ignored when ``weights`` or ``multi`` is given."""

    metric: str | None = "eer"
    mode: str = "min"
    weights: dict[str, float] | None = None
    multi: dict[str, str] | None = None

    def __post_init__(self) -> None:
        check_choice("objective.mode", self.mode, MODES)
        given = [k for k in ("weights", "multi") if getattr(self, k)]
        if len(given) > 1:
            raise ConfigError("objective: give weights or multi, not both")
        if not given and self.metric is None:
            raise ConfigError("objective: give metric (with mode), weights or multi")
        names = list(self.weights or self.multi or [self.metric])
        for name in names:
            if name not in METRICS:
                raise ConfigError(f"objective: {name!r} is not a metric the trials report; "
                                  f"choose from {sorted(METRICS)}")
        for name, mode in (self.multi or {}).items():
            check_choice(f"objective.multi.{name}", mode, MODES)
        if self.multi is not None and len(self.multi) < 2:
            raise ConfigError("objective.multi needs at least 2 metrics (use metric + mode for one)")

    @property
    def is_multi(self) -> bool:
        return bool(self.multi)

    def value(self, metrics: dict[str, float]) -> float:
        """The scalar objective of a trial's metrics: the metric itself, the weighted sum, or
        (``multi``) the first objective, for display; the Pareto front uses all of them."""
        if self.weights:
            return float(sum(w * metrics[name] for name, w in self.weights.items()))
        return float(metrics[next(iter(self.multi)) if self.multi else self.metric])


@dataclass
class SearchSection:
    """``samples`` trials (each crossed with every grid value), ``algorithm`` random or optuna
    (TPE, or NSGA-II for ``objective.multi``), ``scheduler`` asha (stops poor trials at each
    rung) or fifo, ``concurrent`` trials at once, ``time_budget_s`` for the whole sweep."""

    samples: int = 8
    algorithm: str = "random"
    scheduler: str = "asha"
    concurrent: int = 2
    seed: int = 0
    time_budget_s: float | None = None

    def __post_init__(self) -> None:
        check_range("search.samples", self.samples, 1)
        check_choice("search.algorithm", self.algorithm, ("random", "optuna"))
        check_choice("search.scheduler", self.scheduler, ("asha", "fifo"))
        check_range("search.concurrent", self.concurrent, 1)
        check_range("search.seed", self.seed, 0, 2**32 - 1)  # optuna's samplers seed numpy's 32-bit RandomState
        if self.time_budget_s is not None:
            check_range("search.time_budget_s", self.time_budget_s, 1.0)


@dataclass
class ResourcesSection:
    """Per trial: ``cpus`` and ``gpus`` (fractions allowed) reserved by its placement group;
    sampling and scoring run in the trial's own process with ``torch_threads`` (default: the
    whole CPUs reserved). Device and precision come from the job's ``pool`` section."""

    cpus: float = 1.0
    gpus: float = 0.0
    torch_threads: int | None = None

    def __post_init__(self) -> None:
        check_range("resources.cpus", self.cpus, 0.0)
        check_range("resources.gpus", self.gpus, 0.0)
        if self.cpus == 0 and self.gpus == 0:
            raise ConfigError("resources: a trial needs cpus > 0 or gpus > 0")
        if self.torch_threads is not None:
            check_range("resources.torch_threads", self.torch_threads, 1)

    def threads(self) -> int:
        return self.torch_threads or max(1, int(self.cpus))


@dataclass
class DownstreamSection:
    """The objective that matters: train a small FR model on the trial's generated images (the
    ``train`` YAML of ``synthface train-fr`` plus dotted ``set`` keys; trained in the trial's
    own process at world size 1 for ``optim.max_steps``) and verify it on ``test``, a real faces
    set of identities that neither the generator nor the FR models trained on, with
    ``genuine`` + ``impostor`` pairs drawn with ``seed``. Reports ``downstream_accuracy``,
    ``downstream_eer``, ``downstream_tar_far_1e3`` at the last rung (``every_rung``: at every
    rung, so ASHA can stop on it; each rung then trains a model)."""

    enabled: bool = False
    train: str = ""
    set: dict = field(default_factory=dict)
    test: str = ""
    genuine: int = 3000
    impostor: int = 3000
    folds: int = 10
    seed: int = 0
    every_rung: bool = False

    def __post_init__(self) -> None:
        check_range("downstream.genuine", self.genuine, 1)
        check_range("downstream.impostor", self.impostor, 1)
        check_range("downstream.folds", self.folds, 2)
        if self.enabled and not (self.train and self.test):
            raise ConfigError("downstream.enabled needs downstream.train (a train-fr YAML, e.g. "
                              "synthface_ray/demo_jobs/train_fr.yaml) and downstream.test (a real faces set "
                              "of identities no model trained on, e.g. runs/demo/toyfaces-unseen)")

    def train_config(self):
        """The FR recipe: ``train`` + ``set``, no held-out split, classes from the data."""
        from synthface_ray.train.recognition import TrainFRConfig  # lazy: imports torch

        data = apply_dotted(read_yaml(self.train), self.set, "downstream.set key")
        data = apply_dotted(data, {"holdout.identities": 0, "num_classes": None, "data.path": None,
                                   "data.sources": []})
        try:
            return from_dict(TrainFRConfig, data)
        except ConfigError as exc:
            raise ConfigError(f"downstream.train ({self.train}): {exc}") from None


@dataclass
class OutputSection:
    """The sweep folder is ``path/name`` (local or s3://): Tune's experiment, ``results.parquet``,
    ``results.csv``, ``plots/``, ``best/``. An unfinished sweep there is restored; a finished one
    is reported again; ``overwrite`` starts afresh."""

    path: str = "runs/tune"
    name: str = "sweep"
    overwrite: bool = False


def _sweep_separability() -> SeparabilitySection:
    return SeparabilitySection(identities=None, images_per_identity=None)


def _sweep_verification() -> VerificationSection:
    return VerificationSection(genuine=1000, impostor=1000)


@dataclass
class Config:
    """``job``: the base ``synthface generate`` YAML (models, identities pool, sampler, pool
    device/precision/micro_batch). Evaluation sections are the ``synthface evaluate`` ones."""

    job: str = ""
    space: dict = field(default_factory=dict)
    plan: PlanKnobs = field(default_factory=PlanKnobs)
    protocol: ProtocolSection = field(default_factory=ProtocolSection)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    search: SearchSection = field(default_factory=SearchSection)
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    separability: SeparabilitySection = field(default_factory=_sweep_separability)
    verification: VerificationSection = field(default_factory=_sweep_verification)
    diversity: DiversitySection = field(default_factory=DiversitySection)
    uniqueness: UniquenessSection = field(default_factory=UniquenessSection)
    downstream: DownstreamSection = field(default_factory=DownstreamSection)
    output: OutputSection = field(default_factory=OutputSection)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        if self.objective.is_multi and self.search.scheduler == "asha":
            raise ConfigError("objective.multi with search.scheduler=asha: ASHA ranks trials by one "
                              "metric; use search.scheduler=fifo for a multi-objective (Pareto) sweep")
        if self.objective.is_multi and self.search.algorithm != "optuna":
            raise ConfigError("objective.multi needs search.algorithm=optuna (multi-objective NSGA-II)")

    @property
    def tune_metric(self) -> str | list[str]:
        return list(self.objective.multi) if self.objective.is_multi else "objective"

    @property
    def tune_mode(self) -> str | list[str]:
        return list(self.objective.multi.values()) if self.objective.is_multi else self.objective.mode


__all__ = ["DOWNSTREAM_METRICS", "METRICS", "Config", "DownstreamSection", "ObjectiveSection", "OutputSection", "PlanKnobs", "ProtocolSection",
           "ResourcesSection", "SearchSection"]
