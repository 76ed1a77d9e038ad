"""Typed configuration of ``synthface benchmark`` (defaults in one place, checked on load).

A benchmark trains the same FR model (one ``synthface train-fr`` config and step budget) on each
*arm*, a named list of faces sources with weights and optional budgets, once per seed, and
verifies every trained backbone on real *test sets* whose identities no arm trained on. A
``random_init`` arm (the untrained backbone, the floor) is built in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from synthface_ray.config import ConfigError, check_file_name, check_range, check_seed
from synthface_ray.storage import StorageConfig

RANDOM_INIT = "random_init"  # the built-in arm: the backbone as initialised, not trained
#: train-fr keys the benchmark sets for every trial (refused in train.set and arms[].train)
OWNED_TRAIN_KEYS = ("data.path", "data.sources", "holdout", "run.seed", "run.storage_path", "run.name",
                    "export", "num_classes", "storage")


def check_train_keys(where: str, keys) -> None:
    """Refuse overrides of what the benchmark decides per trial (they would be silently lost)."""
    for key in keys:
        if any(key == owned or key.startswith(owned + ".") for owned in OWNED_TRAIN_KEYS):
            raise ConfigError(f"{where} {key!r}: the benchmark sets it for every trial (sources -> "
                              "arms[].sources, seed -> seeds, the test sets replace holdout, runs go under "
                              "output.path); remove it")


def check_name(key: str, name: str) -> None:
    """Arm and test-set names become folder names and table keys: a short safe alphabet."""
    check_file_name(key, name, "folders and table rows")


@dataclass
class SourceSection:
    """One faces dataset of an arm (local or s3://) and its share of every training batch
    (``weight``; weights are normalised). Budgets, drawn with the trial's seed: at most
    ``identities`` identities (chosen at random), at most ``images`` images spread evenly over
    the kept identities (null: all)."""

    path: str = ""
    weight: float = 1.0
    images: int | None = None
    identities: int | None = None

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("arms[].sources[].path is empty: give a faces dataset (local or s3://)")
        if not self.weight > 0:
            raise ConfigError(f"arms[].sources[].weight={self.weight} for {self.path} must be > 0")
        if self.images is not None:
            check_range("arms[].sources[].images", self.images, 1)
        if self.identities is not None:
            check_range("arms[].sources[].identities", self.identities, 2)

    @property
    def budgeted(self) -> bool:
        return self.images is not None or self.identities is not None


@dataclass
class ArmSection:
    """A named training set: ``sources`` mixed by weight in every batch, and ``train``: dotted
    ``synthface train-fr`` keys overriding the benchmark's train config for this arm only.
    ``match``: another arm's name; this arm's first source is then budgeted to that arm's
    total identities and images, measured before training (e.g. as many real images and
    identities as a generated set holds, whatever its size turned out to be)."""

    name: str = ""
    sources: list[SourceSection] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)
    match: str | None = None

    def __post_init__(self) -> None:
        check_name("arms[].name", self.name)
        if self.name == RANDOM_INIT:
            raise ConfigError(f"arms[].name={RANDOM_INIT!r} is the built-in untrained arm: it needs no "
                              "entry (random_init: true adds it); name your arm otherwise")
        if not self.sources:
            raise ConfigError(f"arm {self.name!r} has no sources: give at least one faces dataset")
        check_train_keys(f"arm {self.name} train key", self.train)


@dataclass
class TestSetSection:
    """A real faces set of identities that no arm trains on."""

    name: str = ""
    path: str = ""

    def __post_init__(self) -> None:
        check_name("test.sets[].name", self.name)
        if not self.path:
            raise ConfigError(f"test set {self.name!r} has no path: give a faces dataset of real "
                              "identities no arm trains on")


@dataclass
class TestSection:
    """The real test sets and their verification protocol: ``genuine`` + ``impostor`` pairs
    drawn once with ``seed`` (the same pairs for every trial), ``folds``-fold accuracy (LFW
    protocol). ``check_bytes``: refuse test images whose exact bytes appear in a training source
    (reads every source once; turn off for very large remote sources)."""

    sets: list[TestSetSection] = field(default_factory=list)
    genuine: int = 3000
    impostor: int = 3000
    folds: int = 10
    seed: int = 0
    check_bytes: bool = True

    def __post_init__(self) -> None:
        check_range("test.genuine", self.genuine, 1)
        check_range("test.impostor", self.impostor, 1)
        check_range("test.folds", self.folds, 2)
        names = [s.name for s in self.sets]
        if len(set(names)) != len(names):
            raise ConfigError(f"test.sets names repeat: {names}")


@dataclass
class TrainSection:
    """``config``: the ``synthface train-fr`` YAML every arm trains with (model, margin,
    optimizer, step budget, scaling); ``set``: dotted keys overriding it for every arm. The
    benchmark sets the data sources, ``run.seed``, the run folder and ``holdout.identities: 0``
    (the test sets replace the held-out split)."""

    config: str = ""
    set: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_train_keys("train.set key", self.set)


@dataclass
class ResourcesSection:
    """``concurrent`` trials at once (each trains with the train config's ``scaling``: Ray
    schedules its workers); ``cpus`` / ``gpus`` reserved for a trial's own process, which reads
    the test sets and embeds them with the trained backbone."""

    concurrent: int = 1
    cpus: float = 0.25
    gpus: float = 0.0

    def __post_init__(self) -> None:
        check_range("resources.concurrent", self.concurrent, 1)
        check_range("resources.cpus", self.cpus, 0.0)
        check_range("resources.gpus", self.gpus, 0.0)
        if self.cpus == 0 and self.gpus == 0:
            raise ConfigError("resources: a trial needs cpus > 0 or gpus > 0")


@dataclass
class OutputSection:
    """The benchmark folder is ``path/name`` (local or s3://): ``results.parquet`` / ``.csv``,
    ``summary.csv``, ``report.md`` (written last), ``accuracy.png``, ``config.yaml``, and
    ``trials/`` (each trial's subsets, FR run and ``result.json``). A re-run reuses every trial
    whose result is there for the same arm, seed, train config and test sets; ``overwrite``
    deletes the folder first."""

    path: str = "runs/benchmark"
    name: str = "benchmark"
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("output.path is empty: give a local folder or s3://bucket/prefix")
        check_name("output.name", self.name)


@dataclass
class Config:
    """``reference``: the arm every other is compared with (paired by seed) and the denominator
    of the gap-closed ratio (default: the first arm)."""

    train: TrainSection = field(default_factory=TrainSection)
    test: TestSection = field(default_factory=TestSection)
    arms: list[ArmSection] = field(default_factory=list)
    random_init: bool = True
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    reference: str | None = None
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    output: OutputSection = field(default_factory=OutputSection)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        if not self.test.sets:
            raise ConfigError("test.sets is empty: give at least one real faces set of identities "
                              "no arm trains on, e.g. [{name: unseen, path: runs/unseen}]")
        if not self.arms:
            raise ConfigError("arms is empty: give at least one arm, e.g. [{name: real, sources: "
                              "[{path: runs/demo/toyfaces}]}]")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ConfigError(f"arm names repeat: {names}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ConfigError(f"seeds={self.seeds}: give distinct seeds >= 0 (3 or more to get a "
                              "95% interval worth reading)")
        for seed in self.seeds:
            check_seed("seeds[]", seed)
        for arm in self.arms:
            self._check_match(arm)
        if self.reference is not None and self.reference not in self.arm_names:
            raise ConfigError(f"reference={self.reference!r} is not an arm; choose one of {self.arm_names}")

    def _check_match(self, arm: ArmSection) -> None:
        if arm.match is None:
            return
        other = self.arm(arm.match)
        if other is None or other.name == arm.name:
            raise ConfigError(f"arm {arm.name!r}: match={arm.match!r} must name another configured arm: "
                              f"one of {[a.name for a in self.arms if a.name != arm.name]}")
        if other.match is not None:
            raise ConfigError(f"arm {arm.name!r} matches {other.name!r}, which matches {other.match!r} "
                              "itself: match an arm with fixed sizes")
        if arm.sources[0].budgeted:
            raise ConfigError(f"arm {arm.name!r}: match sizes the first source, which must have no "
                              "images/identities budgets (match sets them)")

    @property
    def arm_names(self) -> list[str]:
        """Every arm that runs: the configured ones, then ``random_init`` when enabled."""
        return [a.name for a in self.arms] + ([RANDOM_INIT] if self.random_init else [])

    @property
    def reference_arm(self) -> str:
        return self.reference or self.arms[0].name

    def arm(self, name: str) -> ArmSection | None:
        """The configured arm ``name`` (None for ``random_init``)."""
        return next((a for a in self.arms if a.name == name), None)


__all__ = ["ArmSection", "Config", "OWNED_TRAIN_KEYS", "OutputSection", "RANDOM_INIT", "ResourcesSection", "SourceSection",
           "TestSection", "TestSetSection", "TrainSection", "check_name"]
