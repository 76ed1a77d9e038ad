"""The evaluation suite's config (``synthface evaluate``; tune's and the benchmark's evaluation
reuse its sections): plain typed dataclasses, checked on load, no heavy imports."""

from __future__ import annotations

from dataclasses import dataclass, field

from synthface_ray.config import ConfigError, check_range
from synthface_ray.models.recognition.section import ModelSection
from synthface_ray.storage import FileOutput, StorageConfig


@dataclass
class DataSection:
    """A labelled faces set (real or generated; a ``fr_cosine`` column adds identity consistency).
    Corrupt images are skipped and reported by row, or refused when ``strict``. A set without
    its manifest (an interrupted run) is refused unless ``allow_incomplete``."""

    path: str = ""
    strict: bool = False
    allow_incomplete: bool = False


@dataclass
class SeparabilitySection:
    """NegFaceDiff/AdaptDiff protocol: ``identities`` x ``images_per_identity`` sampled with
    ``seed`` (at most; null or more than there are = all); impostors ``all`` (every cross-identity pair, streamed through a
    65,536-bin histogram in bounded memory) or a number of uniformly sampled pairs."""

    identities: int | None = 1000
    images_per_identity: int | None = 20
    impostor: str | int = "all"
    seed: int = 0


@dataclass
class VerificationSection:
    enabled: bool = True
    genuine: int = 3000
    impostor: int = 3000
    folds: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_range("verification.folds", self.folds, 2)


@dataclass
class DiversitySection:
    max_per_class: int = 50
    pixel_max_per_class: int = 20
    pixel_identities: int | None = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        check_range("diversity.max_per_class", self.max_per_class, 2)
        check_range("diversity.pixel_max_per_class", self.pixel_max_per_class, 2)
        if self.pixel_identities is not None:
            check_range("diversity.pixel_identities", self.pixel_identities, 1)


@dataclass
class UniquenessSection:
    tau: float = 0.3


@dataclass
class LeakageSection:
    """``real``: an identities table of real class centres (null = no leakage check); ``tau``:
    a synthetic centre above this cosine to any real one leaks."""

    real: str | None = None
    tau: float | None = None


@dataclass
class FrechetSection:
    """Fréchet distance (Heusel et al. 2017 eq. 6) between the Gaussians of the data's features and
    a ``reference`` faces set's (e.g. held-out real images; null = off). The features are the
    L2-normalised embeddings of ``model`` (an FR export; null = ``model.path``) of every decoded
    image of each set. Comparable only between reports with the same features and similar counts."""

    reference: str | None = None
    model: str | None = None
    allow_incomplete: bool = False  # read a reference without its manifest, with a warning


@dataclass
class BootstrapSection:
    """Intervals for the set's one-number metrics (EER and FDR of the generated set, Fréchet
    distance): ``replicates`` resamplings of the separability section's identities (with
    replacement, from ``seed``), ``impostor`` sampled impostor pairs each; 0 replicates = off.
    Two sets of the same identities evaluated with the same replicates and seed are paired
    replicate by replicate (``synthface papers`` reads them; see synthface_ray/evaluate/bootstrap.py)."""

    replicates: int = 200
    seed: int = 0
    impostor: int = 20000

    def __post_init__(self) -> None:
        check_range("bootstrap.replicates", self.replicates, 0)
        if self.replicates == 1:
            raise ConfigError("bootstrap.replicates=1 gives no interval: use 0 (off) or >= 2 (e.g. 200)")
        check_range("bootstrap.impostor", self.impostor, 1)


@dataclass
class GridSection:
    identities: int = 8
    images: int = 8


@dataclass
class Config:
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    separability: SeparabilitySection = field(default_factory=SeparabilitySection)
    verification: VerificationSection = field(default_factory=VerificationSection)
    diversity: DiversitySection = field(default_factory=DiversitySection)
    uniqueness: UniquenessSection = field(default_factory=UniquenessSection)
    leakage: LeakageSection = field(default_factory=LeakageSection)
    frechet: FrechetSection = field(default_factory=FrechetSection)
    bootstrap: BootstrapSection = field(default_factory=BootstrapSection)
    grid: GridSection = field(default_factory=GridSection)
    output: FileOutput = field(default_factory=FileOutput)  # the report folder
    storage: StorageConfig = field(default_factory=StorageConfig)


__all__ = ["Config", "DataSection", "DiversitySection", "FrechetSection", "GridSection", "LeakageSection",
           "SeparabilitySection", "UniquenessSection", "VerificationSection"]
