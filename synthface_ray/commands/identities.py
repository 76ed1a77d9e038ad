"""``synthface identities``: make identity embeddings from a source, keep the unique ones, reject
the ones that leak real identities, write an identities table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synthface_ray.commands.common import print_dry_run, write_parquet
from synthface_ray.commands.fr_common import embed_faces
from synthface_ray.config import ConfigError, check_choice, check_range, check_seed
from synthface_ray.data.identities import class_centers, identities_table, read_identities
from synthface_ray.limits import check_count
from synthface_ray.mining import sources
from synthface_ray.mining.uniqueness import leakage_mask, unique_filter
from synthface_ray.models.recognition.section import ModelSection
from synthface_ray.sampling.exported import load_generator
from synthface_ray.sampling.recipes import SamplerConfig
from synthface_ray.storage import FileOutput, StorageConfig

KINDS = ("random", "pca_gaussian", "class_centers", "uncond_fr")
#: measured peak memory per embedding value while drawing (float64 draws normalised to float32)
VALUE_BYTES = 20


@dataclass
class SourceSection:
    """``random``: ``count`` unit Gaussian directions of ``dim``; ``pca_gaussian``: ``count``
    samples of a Gaussian in the PCA space of the ``real`` identities table (Vec2Face);
    ``class_centers``: the class centres of the labelled ``faces`` set under ``fr_model``;
    ``uncond_fr``: FR embeddings (``fr_model``) of ``count`` images sampled from ``generator``
    with the empty context (``sampler`` section, default conditional DDIM 50 steps)."""

    kind: str = "random"
    count: int = 1000
    dim: int = 512
    real: str | None = None
    faces: str | None = None
    allow_incomplete: bool = False  # read source.faces without its manifest (an interrupted run), with a warning
    fr_model: str | None = None
    generator: str | None = None
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    components: int | None = None
    seed: int = 0
    id_offset: int = 0

    def __post_init__(self) -> None:
        check_choice("source.kind", self.kind, KINDS)
        check_range("source.count", self.count, 1)
        check_range("source.dim", self.dim, 1)
        check_range("source.id_offset", self.id_offset, 0)
        check_seed("source.seed", self.seed)


@dataclass
class FilterSection:
    """``tau``: greedy uniqueness filter, no two kept identities above this cosine (DCFace 0.3,
    Vec2Face 0.4; null = off). ``leakage_tau``: reject identities closer than this to any
    identity of ``source.real`` (null = off)."""

    tau: float | None = 0.3
    leakage_tau: float | None = None
    use_gpu: str = "auto"

    def __post_init__(self) -> None:
        check_choice("filter.use_gpu", self.use_gpu, ("auto", "yes", "no"))


@dataclass
class Config:
    source: SourceSection = field(default_factory=SourceSection)
    filter: FilterSection = field(default_factory=FilterSection)
    output: FileOutput = field(default_factory=FileOutput)
    storage: StorageConfig = field(default_factory=StorageConfig)


def _need(value, key: str, kind: str):
    if not value:
        raise ConfigError(f"source.kind={kind} needs {key}")
    return value


def _make(cfg: Config) -> tuple[np.ndarray, np.ndarray, str]:
    """The candidates' ids, embeddings and origin tag, from ``source.kind`` (class centres keep
    their labels as ids; the others are numbered from ``source.id_offset``)."""
    emb, origin, ids = _embeddings(cfg)
    return (cfg.source.id_offset + np.arange(len(emb)) if ids is None else ids), emb, origin


def _check_fits(count: int, dim: int) -> None:
    """Refuse ``count`` embeddings of ``dim`` values that cannot be held in memory here."""
    check_count(f"source.count={count} identities x {dim} dimensions", count * dim, "values", VALUE_BYTES,
                "lower source.count (for more identities, make several tables with different "
                "source.seed and source.id_offset)")


def _embeddings(cfg: Config) -> tuple[np.ndarray, str, np.ndarray | None]:
    s = cfg.source
    if s.kind == "random":
        _check_fits(s.count, s.dim)
        return sources.random_unit(s.count, s.dim, s.seed), "random", None
    if s.kind == "pca_gaussian":
        _, real = read_identities(_need(s.real, "source.real (an identities table)", s.kind), cfg.storage)
        _check_fits(s.count, real.shape[1])
        return sources.pca_gaussian(real, s.count, s.seed, s.components), "pca_gaussian", None
    embedder = ModelSection(path=_need(s.fr_model, "source.fr_model (an FR export)", s.kind)).load()
    if s.kind == "class_centers":
        emb, labels = embed_faces(embedder, _need(s.faces, "source.faces", s.kind), cfg.storage, 256,
                                   s.allow_incomplete, "source.allow_incomplete")
        ids, centres = class_centers(emb, labels)
        return centres, "class_center", ids
    gen = load_generator(_need(s.generator, "source.generator (a generator export)", s.kind))
    return sources.uncond_fr_embeddings(gen, embedder, s.count, s.seed, s.sampler), "uncond_fr", None


def _filter(cfg: Config, emb: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Keep mask after the uniqueness filter and the leakage check, and report lines."""
    keep, lines = np.ones(len(emb), bool), []
    if cfg.filter.leakage_tau is not None:
        _, real = read_identities(_need(cfg.source.real, "source.real (the real identities)",
                                        "filter.leakage_tau"), cfg.storage)
        reject, _ = leakage_mask(emb, real, cfg.filter.leakage_tau, use_gpu=cfg.filter.use_gpu)
        keep &= ~reject
        lines.append(f"leakage check (cosine > {cfg.filter.leakage_tau} to {len(real)} real "
                     f"identities): rejected {int(reject.sum())}")
    if cfg.filter.tau is not None:
        idx = np.flatnonzero(keep)
        unique, report = unique_filter(emb[idx], cfg.filter.tau, use_gpu=cfg.filter.use_gpu)
        keep[idx[~unique]] = False
        lines.append(f"uniqueness filter (cosine <= {cfg.filter.tau}): kept {report.kept}, "
                     f"rejected {report.rejected}")
    return keep, lines


def run(cfg: Config, dry_run: bool = False) -> int:
    out = cfg.output.location(cfg.storage, "output.path (--out)")
    if dry_run:
        print_dry_run("identities", cfg, [
            f"make {cfg.source.count if cfg.source.kind != 'class_centers' else 'the'} "
            f"{cfg.source.kind} identities", f"filter: tau={cfg.filter.tau}, "
            f"leakage_tau={cfg.filter.leakage_tau}", f"write {out.uri}"])
        return 0
    ids, emb, origin = _make(cfg)
    keep, lines = _filter(cfg, emb)
    table = identities_table(ids[keep], emb[keep], origin)
    write_parquet(table, out, cfg, "identities")
    for line in lines:
        print(line)
    print(f"wrote {table.num_rows} of {len(emb)} {origin} identities ({emb.shape[1]}-d) to {out.uri}")
    return 0
