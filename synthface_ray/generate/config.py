"""Typed configuration of ``synthface generate`` (defaults in one place, checked on load)."""

from __future__ import annotations

from dataclasses import dataclass, field

from synthface_ray.config import ConfigError, check_choice, check_file_name, check_range
from synthface_ray.generate.gate import GateSection
from synthface_ray.models.device import DEVICE_CHOICES, PRECISION_CHOICES
from synthface_ray.sampling.recipes import SamplerConfig, resolve
from synthface_ray.storage import StorageConfig

STAGES_CHOICES = ("auto", "fused", "staged")


@dataclass
class InputSection:
    """``plan``: a ``synthface plan`` table; ``identities``: the identities table the plan was
    built from (needed by embedding-conditioned generators and by FR scoring; null otherwise)."""

    plan: str = ""
    identities: str | None = None


@dataclass
class ModelSection:
    """``generator``: a ``train-generator`` export folder; ``fr``: an exported FR backbone that
    scores every image (``fr_cosine``), or null. Both are local folders present on every node."""

    generator: str = ""
    fr: str | None = None


@dataclass
class PoolSection:
    """The Ray Data actor pools. ``actors``: generator actors (``min_actors``..``actors``; null
    min = fixed size); ``device``: auto = a GPU per actor when the cluster has GPUs
    (``gpus_per_actor`` may be fractional), else CPU actors of ``cpus_per_actor`` CPUs with
    ``torch_threads`` threads; ``micro_batch``: rows per sampler call (fixed: part of the job's
    identity); ``fr_actors`` / ``fr_gpus`` / ``fr_cpus``: the FR scoring pool; ``encode_cpus``:
    CPUs of each encode-and-write task. Leave CPU for those tasks: actors that claim every CPU
    starve them (the pre-flight check refuses that on a single machine). ``stages``: ``staged``
    runs scoring and encoding in their own pools (a GPU actor keeps sampling while they run);
    ``fused`` does all of it in the generator actor (no other processes, no object-store hop:
    the better choice when the actors are CPU processes, whose cores the other stages would
    share anyway); ``auto`` = fused on a CPU pool, staged on GPUs. Both write the same bytes."""

    actors: int = 1
    min_actors: int | None = None
    device: str = "auto"
    precision: str = "auto"
    gpus_per_actor: float = 1.0
    cpus_per_actor: float = 0.5
    torch_threads: int = 1
    micro_batch: int = 32
    fr_actors: int = 1
    fr_gpus: float = 0.25
    fr_cpus: float = 0.25
    encode_cpus: float = 0.5
    stages: str = "auto"

    def __post_init__(self) -> None:
        check_range("pool.actors", self.actors, 1)
        if self.min_actors is not None:
            check_range("pool.min_actors", self.min_actors, 1, self.actors)
        check_choice("pool.device", self.device, DEVICE_CHOICES)
        check_choice("pool.precision", self.precision, PRECISION_CHOICES)
        for key in ("gpus_per_actor", "fr_gpus"):
            check_range(f"pool.{key}", getattr(self, key), 0.0, 1.0)
        for key in ("cpus_per_actor", "fr_cpus", "encode_cpus"):
            check_range(f"pool.{key}", getattr(self, key), 0.0)
        check_range("pool.torch_threads", self.torch_threads, 1)
        check_range("pool.micro_batch", self.micro_batch, 1)
        check_range("pool.fr_actors", self.fr_actors, 1)
        check_choice("pool.stages", self.stages, STAGES_CHOICES)

    def fused(self, use_gpu: bool) -> bool:
        """Whether scoring and encoding run inside the generator actors (see ``stages``)."""
        return self.stages == "fused" or (self.stages == "auto" and not use_gpu)


@dataclass
class OutputSection:
    """The dataset goes to ``<path>/<name>`` (local or s3://) as ``part-NNNNN.parquet`` shards
    of ``rows_per_file`` rows, images encoded as ``format`` (png, or jpeg at ``jpeg_quality``).
    Re-running the same name resumes; a name holding a different job is refused unless
    ``overwrite``, which writes the new dataset beside a complete one and swaps it in once
    complete (an incomplete run is deleted first)."""

    path: str = "runs/generated"
    name: str = "run"
    rows_per_file: int = 256
    format: str = "png"
    jpeg_quality: int = 95
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("output.path is empty: give a local folder or s3://bucket/prefix")
        check_file_name("output.name", self.name, "the dataset's folder and tags its metrics")
        check_range("output.rows_per_file", self.rows_per_file, 1)
        check_choice("output.format", self.format, ("png", "jpeg"))
        check_range("output.jpeg_quality", self.jpeg_quality, 1, 100)


@dataclass
class GridSection:
    """``grid.png``: ``identities`` rows of ``images`` samples, then ``mixes`` rows showing a
    ScoreMix identity's two sources beside its samples."""

    enabled: bool = True
    identities: int = 8
    images: int = 8
    mixes: int = 4

    def __post_init__(self) -> None:
        check_range("grid.identities", self.identities, 0, 64)
        check_range("grid.images", self.images, 1, 32)
        check_range("grid.mixes", self.mixes, 0, 64)


@dataclass
class FaultSection:
    """Fault injection for tests: after ``after_shards`` shards a generator actor raises
    (``mode: raise``) or kills its own process (``mode: kill``, as ``kill -9``); with a
    ``marker`` file path it fires only once (the marker is created when it fires)."""

    after_shards: int | None = None
    mode: str = "raise"
    marker: str | None = None

    def __post_init__(self) -> None:
        check_choice("fault.mode", self.mode, ("raise", "kill"))


@dataclass
class Config:
    input: InputSection = field(default_factory=InputSection)
    model: ModelSection = field(default_factory=ModelSection)
    sampler: SamplerConfig = field(default_factory=lambda: resolve({"recipe": "cfg"}))  # resolved at load, once
    pool: PoolSection = field(default_factory=PoolSection)
    output: OutputSection = field(default_factory=OutputSection)
    grid: GridSection = field(default_factory=GridSection)
    gate: GateSection = field(default_factory=GateSection)
    storage: StorageConfig = field(default_factory=StorageConfig)
    fault: FaultSection = field(default_factory=FaultSection)


__all__ = ["Config", "FaultSection", "GateSection", "GridSection", "InputSection", "ModelSection", "OutputSection",
           "PoolSection"]
