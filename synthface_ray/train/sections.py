"""Config sections shared by every training job (generator, FR): the data feed options, the
workers, the run folder and the export destination. One place for their defaults and checks.

:class:`JobConfig` gives a job config built from them its run folder, export folder and the
absolute-path copy that Ray workers (which run in another working directory) need.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from synthface_ray import storage
from synthface_ray.config import ConfigError, check_choice, check_range, check_seed


@dataclass
class FeedSection:
    """How the Ray Data feed reads a faces dataset. Corrupt images are skipped with a warning
    unless ``strict``. A dataset without its manifest (an interrupted run) is refused unless
    ``allow_incomplete`` (then read with a warning naming the rows there). ``cache``: keep the decoded uint8 pixels in Ray's object store after the
    first pass (``auto``: when they take at most ``cache_max_gb``). ``shuffle_buffer``: rows in
    each worker's local shuffle buffer (0 = none). ``deterministic``: the same data order on
    every run of one ``run.seed`` (Ray Data keeps the block order and hands blocks to the workers
    in it, locality ignored, and each worker's local shuffle is seeded from the run seed, its rank,
    the source and the epoch), so a run is reproduced exactly; false lets the fastest block go
    first (no waiting on a slow read task; a large cluster may want that)."""

    shuffle_buffer: int = 1024
    deterministic: bool = True
    strict: bool = False
    allow_incomplete: bool = False
    cache: str = "auto"
    cache_max_gb: float = 2.0

    def __post_init__(self) -> None:
        check_choice("data.cache", self.cache, ("auto", "yes", "no"))
        check_range("data.cache_max_gb", self.cache_max_gb, 0.0)
        check_range("data.shuffle_buffer", self.shuffle_buffer, 0)

    def should_cache(self, rows: int, resolution: int) -> bool:
        """Whether the decoded pixels (``rows`` x ``resolution``\u00b2 x 3 bytes) are cached."""
        size_gb = rows * resolution**2 * 3 / 2**30
        return self.cache == "yes" or (self.cache == "auto" and size_gb <= self.cache_max_gb)


@dataclass
class ScalingSection:
    """Workers and their resources. ``device``: ``auto`` uses GPUs when the cluster has them.
    ``torch_threads`` 0 = one per CPU given to the worker."""

    num_workers: int = 2
    device: str = "auto"
    cpus_per_worker: float = 1.0
    torch_threads: int = 0

    def __post_init__(self) -> None:
        check_range("scaling.num_workers", self.num_workers, 1)
        check_choice("scaling.device", self.device, ("auto", "cpu", "cuda"))
        check_range("scaling.cpus_per_worker", self.cpus_per_worker, 0.0)
        check_range("scaling.torch_threads", self.torch_threads, 0)


@dataclass
class RunSection:
    """The run folder is ``<storage_path>/<name>``; re-running the same name resumes from its
    latest checkpoint. Reports every ``report_every`` steps, checkpoints every
    ``checkpoint_every`` steps (and at the end), keeps the newest ``keep_checkpoints``."""

    name: str = "run"
    storage_path: str = "runs/train"
    max_failures: int = 0
    report_every: int = 20
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"run.name={self.name!r} must be a non-empty name without '/'")
        check_range("run.max_failures", self.max_failures, -1)
        check_range("run.report_every", self.report_every, 1)
        check_range("run.checkpoint_every", self.checkpoint_every, 1)
        check_range("run.keep_checkpoints", self.keep_checkpoints, 1)
        check_seed("run.seed", self.seed)


@dataclass
class ExportSection:
    """Where the trained weights are exported at the end (default: ``<run folder>/export``)."""

    path: str | None = None


def absolute(path: str | None) -> str | None:
    """A local path made absolute (s3:// and None unchanged)."""
    return path if path is None or storage.is_s3(path) else os.path.abspath(path)


class JobConfig:
    """Mixin for training configs with ``run``, ``export`` and ``storage`` sections."""

    def run_dir(self) -> storage.Location:
        return storage.resolve(self.run.storage_path, self.storage).join(self.run.name)

    def export_dir(self) -> storage.Location:
        if self.export.path:
            return storage.resolve(self.export.path, self.storage)
        return self.run_dir().join("export")

    def _with_absolute_run_paths(self, **sections):
        """A copy with ``run.storage_path``, ``export.path`` and the given sections replaced."""
        return dataclasses.replace(
            self,
            run=dataclasses.replace(self.run, storage_path=absolute(self.run.storage_path)),
            export=dataclasses.replace(self.export, path=absolute(self.export.path)),
            **sections,
        )


__all__ = ["ExportSection", "FeedSection", "JobConfig", "RunSection", "ScalingSection", "absolute"]
