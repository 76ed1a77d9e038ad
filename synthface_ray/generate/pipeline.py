"""The generation job: pre-flight checks on the driver, then one Ray Data pipeline

    plan shards -> GeneratorActor pool -> [FRScorer pool] -> encode + commit tasks -> receipts

(``pool.stages: staged``) or, fused (the default on CPU pools), ``plan shards -> GeneratorActor
pool (sample, score, encode, commit) -> receipts``;

and, once every shard is committed, ``manifest.json`` and ``grid.png``. Exactly-once and resume
are shard-level idempotent commits (:mod:`synthface_ray.generate.shards`)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from synthface_ray import storage
from synthface_ray.config import ConfigError, to_dict
from synthface_ray.data.faces import MANIFEST, publish_manifest, shard_name
from synthface_ray.data.identities import read_identities
from synthface_ray.generate import batch as gb
from synthface_ray.generate import shards
from synthface_ray.generate.actor import ActorSettings, FRScorer, GeneratorActor, encode_and_commit
from synthface_ray.generate.config import Config
from synthface_ray.generate.gate import ATTEMPTS, GATE_PASSED, gate_counts
from synthface_ray.generate.plan_source import Plan, legacy_fingerprint, open_plan
from synthface_ray.models.recognition.embedder import Embedder
from synthface_ray.ops.local_ray import init_ray
from synthface_ray.sampling.exported import load_generator
from synthface_ray.sampling.recipes import SamplerConfig
from synthface_ray.storage import Location

log = logging.getLogger(__name__)


@dataclass
class Job:
    """Everything the driver resolved before starting Ray."""

    cfg: Config
    out: Location
    plan: Plan  # checked, summarised; its rows are read where they are needed, a shard at a time
    identities: gb.IdentityTable | None
    shape: tuple[int, int, int]
    content: dict[str, Any]
    model_id: str
    resumed: bool = False
    todo: list[int] = field(default_factory=list)
    dest: Location | None = None  # where the dataset ends up; ``out`` is where it is written:
    # ``dest`` itself, or while overwriting a complete dataset its replacement (see open_output)

    def __post_init__(self) -> None:
        self.dest = self.dest or self.out

    @property
    def sampler(self) -> SamplerConfig:
        """The sampler settings, resolved once when the config loaded: the object shipped to every
        actor, fingerprinted, and stamped into every row."""
        return self.cfg.sampler

    @property
    def shard_count(self) -> int:
        return self.plan.shard_count(self.cfg.output.rows_per_file)

    @property
    def fingerprint(self) -> str:
        return shards.fingerprint(self.content)


# pre-flight ---------------------------------------------------------------------------------
def read_plan(cfg: Config) -> Plan:
    """The plan, checked in one pass (the columns of ``synthface plan`` with their types, unique
    row ids, no missing values) and summarised; held in memory only when not in row_id order."""
    if not cfg.input.plan:
        raise ConfigError("input.plan is required: a plan table from `synthface plan` (--plan)")
    return open_plan(cfg.input.plan, cfg.storage)


def _model_folder(path: str | None, key: str):
    from pathlib import Path

    if path is None:
        return None
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{key}: model folder {path} not found (an export folder of "
                                f"`synthface {'train-generator' if key.endswith('generator') else 'train-fr'}`)")
    return str(folder.resolve())


def _check_generator(cfg: Config, ids, identities):
    """Load the generator once on the driver: its shape, and the ids it can condition on."""
    gen = load_generator(cfg.model.generator, "cpu")
    gcfg = gen.model.config
    if gcfg.condition == "class":
        bad = ids[(ids < 0) | (ids >= gcfg.num_identities)]
        if bad.size:
            raise ValueError(f"plan identities {bad[:10].tolist()} are outside the class-conditioned "
                             f"generator's table (0..{gcfg.num_identities - 1}): plan from identities "
                             "made with `synthface identities --kind class_centers` on its training faces")
    else:
        if identities is None:
            raise ConfigError("input.identities is required: the generator is conditioned on "
                              "identity embeddings, looked up by the plan's identity ids")
        if identities.embeddings.shape[1] != gcfg.embedding_dim:
            raise ValueError(f"identities are {identities.embeddings.shape[1]}-d but the generator "
                             f"takes {gcfg.embedding_dim}-d embeddings")
    return gen


def _check_identities(cfg: Config, ids) -> gb.IdentityTable | None:
    if not cfg.input.identities:
        if cfg.model.fr:
            raise ConfigError("model.fr scores each image against its identity's embedding: "
                              "set input.identities (the table the plan was made from)")
        return None
    table = gb.IdentityTable.build(*read_identities(cfg.input.identities, cfg.storage))
    absent = table.missing(ids)
    if absent.size:
        raise ValueError(f"plan identities {absent[:10].tolist()} ({absent.size} in all) are not in "
                         f"input.identities {cfg.input.identities}: plan and identities must match")
    return table


def _check_fr(cfg: Config, identities: gb.IdentityTable | None) -> None:
    if cfg.model.fr is None:
        return
    dim = Embedder.from_pretrained(cfg.model.fr, "cpu").config.embedding_dim
    if identities.embeddings.shape[1] != dim:
        raise ValueError(f"model.fr embeds to {dim}-d but input.identities are "
                         f"{identities.embeddings.shape[1]}-d: score with the FR model that made them")


def prepare(cfg: Config) -> Job:
    """Check every input and build the job's content identity (no Ray, nothing written)."""
    if not isinstance(cfg.sampler, SamplerConfig):  # a config built in code with a section: as at load
        cfg.sampler = SamplerConfig.from_section(cfg.sampler)
    cfg.model.generator = _model_folder(cfg.model.generator or None, "model.generator") or ""
    if not cfg.model.generator:
        raise ConfigError("model.generator is required: a `synthface train-generator` export (--generator)")
    cfg.model.fr = _model_folder(cfg.model.fr, "model.fr")
    if cfg.gate.enabled and cfg.model.fr is None:
        raise ConfigError("gate.min_fr_cosine / min_mix_cosine / max_other_cosine judge each image with the FR model: "
                          "set model.fr (an exported FR backbone) and input.identities, or unset the gate")
    plan = read_plan(cfg)
    ids = plan.summary.referenced
    identities = _check_identities(cfg, ids)
    gen = _check_generator(cfg, ids, identities)
    _check_fr(cfg, identities)
    content = {
        "plan": plan.fingerprint,
        "identities": None if identities is None else hashlib.sha256(
            identities.ids.tobytes() + identities.embeddings.tobytes()).hexdigest(),
        "generator": shards.folder_fingerprint(cfg.model.generator),
        "fr": None if cfg.model.fr is None else shards.folder_fingerprint(cfg.model.fr),
        "sampler": to_dict(cfg.sampler, redact=False),
        "rows_per_file": cfg.output.rows_per_file, "format": cfg.output.format,
        "jpeg_quality": cfg.output.jpeg_quality if cfg.output.format == "jpeg" else None,
        "micro_batch": cfg.pool.micro_batch, "precision": cfg.pool.precision,
    }
    if cfg.gate.enabled:  # only then: an ungated job keeps the fingerprint it always had
        content["gate"] = to_dict(cfg.gate)
    out = storage.resolve(cfg.output.path, cfg.storage).join(cfg.output.name)
    return Job(cfg, out, plan, identities, gen.shape, content, "generator:" + content["generator"][:16])


def adopt_earlier_plan_hash(job: Job, loc: Location) -> None:
    """A run that recorded its plan by the hash used before plans were streamed (the whole
    table's) is resumed as that run: the plan is read whole once to check it, and the job keeps
    the content (and fingerprint) that run wrote."""
    path = loc.join(shards.JOB_FILE)
    if not storage.exists(path):
        return
    previous = storage.read_json(path)
    earlier = previous.get("content", {}).get("plan")
    if previous.get("fingerprint") == job.fingerprint or not isinstance(earlier, str) or ":" in earlier:
        return
    content = {**job.content, "plan": legacy_fingerprint(job.cfg.input.plan, job.cfg.storage)}
    if shards.fingerprint(content) == previous.get("fingerprint"):
        job.content = content


def open_output(job: Job) -> None:
    """Claim or resume the output folder (``job.json``) and list what is left to do. S3 errors
    (unreachable endpoint, wrong credentials) surface here, before Ray starts.

    ``output.overwrite`` of a complete dataset writes the new one in its hidden replacement
    folder (resumed there when killed) and swaps it in at the end, so the old one stays whole
    until the new one exists; a replacement completed by a run killed during its swap is swapped
    in first."""
    overwrite = job.cfg.output.overwrite
    try:
        storage.finish_replacement(job.dest, MANIFEST)
        if overwrite and storage.exists(job.dest.join(MANIFEST)):
            job.out = storage.replacement_of(job.dest)
        if not overwrite or job.out.path != job.dest.path:  # a run that may be resumed
            adopt_earlier_plan_hash(job, job.out)
        record = {"format": "synthface-generate", "version": 1, "fingerprint": job.fingerprint,
                  "content": job.content, "config": to_dict(job.cfg)}
        if job.out.path != job.dest.path:
            overwrite = not shards.same_job(job.out, record)
        job.resumed = shards.check_job(job.out, record, overwrite)
        done = shards.committed(job.out)
    except OSError as exc:
        if not job.out.is_s3 or isinstance(exc, FileExistsError):
            raise
        raise OSError(f"cannot write to {job.out.uri}: {exc}. Check that storage.endpoint_url is "
                      "reachable and the credentials (storage.profile, AWS_ACCESS_KEY_ID/"
                      "AWS_SECRET_ACCESS_KEY or the instance role) may write to the bucket") from None
    job.todo = sorted(set(range(job.shard_count)) - done)


def check_resources(cfg: Config, use_gpu: bool, cluster: dict[str, float], single_node: bool) -> None:
    """Refuse pools that cannot run: GPUs asked for but absent, or (on one machine) actors that
    claim every CPU and starve the encode/write tasks (a Ray Data deadlock)."""
    pool = cfg.pool
    if pool.device == "cuda" and not cluster.get("GPU"):
        raise ConfigError("pool.device=cuda but the Ray cluster has no GPU: use device auto or cpu")
    if not single_node:
        return
    cpus = cluster.get("CPU", 0)
    actors = pool.actors * (0 if use_gpu else pool.cpus_per_actor)
    if pool.fused(use_gpu):
        if actors > cpus + 1e-9:
            raise ConfigError(f"the generator actors claim {actors:g} CPUs (pool.actors x pool.cpus_per_actor) "
                              f"of the cluster's {cpus:g}: lower pool.actors or pool.cpus_per_actor")
        return
    fr = pool.fr_actors * (0 if use_gpu else pool.fr_cpus) if cfg.model.fr else 0
    if actors + fr + pool.encode_cpus > cpus + 1e-9:
        raise ConfigError(
            f"the pools claim {actors + fr:g} CPUs (pool.actors x pool.cpus_per_actor"
            f"{' + pool.fr_actors x pool.fr_cpus' if fr else ''}) and each encode task "
            f"{pool.encode_cpus:g} of the cluster's {cpus:g}: lower pool.actors or pool.cpus_per_actor "
            "so an encode task always fits, or the pipeline stalls")


def _settings(job: Job, identities_ref) -> Any:
    cfg = job.cfg
    fault = {**to_dict(cfg.fault), "out": job.out} if cfg.fault.after_shards is not None else None
    return ActorSettings(run=cfg.output.name, generator=cfg.model.generator, fr=cfg.model.fr,
                         sampler=cfg.sampler, identities_ref=identities_ref,
                         micro_batch=cfg.pool.micro_batch, device=cfg.pool.device,
                         precision=cfg.pool.precision, torch_threads=cfg.pool.torch_threads, fault=fault,
                         gate=cfg.gate if cfg.gate.enabled else None)


def build_dataset(job: Job, use_gpu: bool, driver_node_only: bool = False):
    """The Ray Data pipeline over the shards left to do (one block per shard, kept whole; read
    from the plan file by read tasks, on the driver's node only with ``driver_node_only``)."""
    import ray

    cfg, pool = job.cfg, job.cfg.pool
    ref = [ray.put(job.identities)] if job.identities is not None else None
    settings = _settings(job, ref)
    if not use_gpu:
        settings.device = "cpu"
    rows = cfg.output.rows_per_file
    commit = {"out_uri": job.out.uri, "storage_cfg": to_dict(cfg.storage, redact=False),
              "size": job.shape[-1], "fmt": cfg.output.format, "quality": cfg.output.jpeg_quality,
              "sampler_json": gb.sampler_json(job.sampler), "model_id": job.model_id,
              "expected": {k: job.plan.shard_rows(k, rows) for k in job.todo},
              "run": cfg.output.name, "drop_failed": cfg.gate.enabled and cfg.gate.on_fail == "drop"}
    fused = pool.fused(use_gpu)
    gpu = {"num_gpus": pool.gpus_per_actor} if use_gpu else {"num_cpus": pool.cpus_per_actor}
    # Ray Data refuses batch_size=None (whole blocks) with GPUs: there a batch is up to one shard's
    # rows, and the dataset keeps its order, so the one short shard (the last) comes last to every
    # stage and no batch mixes two shards
    batch_size = rows if use_gpu else None
    ds = job.plan.dataset(rows, job.todo, driver_node_only)
    if use_gpu:
        ds.context.execution_options.preserve_order = True  # this dataset's own copy of the context
    ds = ds.map_batches(
        GeneratorActor, fn_constructor_kwargs={"settings": settings, "commit": commit if fused else None},
        batch_size=batch_size, batch_format="pyarrow", zero_copy_batch=True,
        compute=ray.data.ActorPoolStrategy(min_size=pool.min_actors or pool.actors, max_size=pool.actors), **gpu)
    if fused:
        return ds
    if cfg.model.fr and not cfg.gate.enabled:  # the gate scored every row already
        fr_res = {"num_gpus": pool.fr_gpus} if use_gpu else {"num_cpus": pool.fr_cpus}
        ds = ds.map_batches(FRScorer, fn_constructor_kwargs={"settings": settings, "size": job.shape[-1]},
                            batch_size=batch_size, batch_format="pyarrow",
                            compute=ray.data.ActorPoolStrategy(size=pool.fr_actors), **fr_res)
    return ds.map_batches(encode_and_commit, batch_size=None, batch_format="pyarrow", num_cpus=pool.encode_cpus,
                          fn_kwargs=commit)


def resolve_use_gpu(cfg: Config, cluster: dict[str, float]) -> bool:
    return cfg.pool.device == "cuda" or (cfg.pool.device == "auto" and bool(cluster.get("GPU")))


def layout(cfg: Config, use_gpu: bool) -> str:
    """One line naming the pool the run uses (printed at its start)."""
    pool = cfg.pool
    each = f"{pool.gpus_per_actor:g} GPU" if use_gpu else f"{pool.cpus_per_actor:g} CPU, {pool.torch_threads} thread(s)"
    actors = f"{pool.actors} generator actor(s) of {each}"
    if pool.min_actors:
        actors = f"{pool.min_actors}..{actors}"
    gate = f"; {describe_gate(cfg.gate)}" if cfg.gate.enabled else ""
    if pool.fused(use_gpu):
        return f"pool: {actors}, fused (each samples, {'FR-scores, ' if cfg.model.fr else ''}encodes and commits){gate}"
    scorer = f"{pool.fr_actors} FR scoring actor(s), " if cfg.model.fr and not cfg.gate.enabled else ""
    return f"pool: {actors}, staged ({scorer}encode tasks of {pool.encode_cpus:g} CPU){gate}"


def describe_gate(gate) -> str:
    """The consistency gate in words, e.g. for the run's first line."""
    plain = " (single-identity rows)" if gate.min_mix_cosine is None else ""
    tests = [f"fr_cosine >= {gate.min_fr_cosine:g}{plain}" if gate.min_fr_cosine is not None else "",
             f"a mix's fr_cosine >= {gate.min_mix_cosine:g}" if gate.min_mix_cosine is not None else "",
             f"cosine to any other identity <= {gate.max_other_cosine:g}" if gate.max_other_cosine is not None else ""]
    return (f"consistency gate: {' and '.join(t for t in tests if t)}, up to {gate.attempts} draw(s) per row, "
            f"{gate.on_fail} rows that never pass")


def execute(job: Job) -> tuple[list[dict[str, Any]], bool]:
    """Run the pipeline over ``job.todo``; returns this run's shard receipts and whether the
    generator pool ran on GPUs."""
    import ray

    init_ray()  # a cluster if there is one, else a local Ray on loopback (docs/RELIABILITY.md)
    cluster = ray.cluster_resources()
    use_gpu = resolve_use_gpu(job.cfg, cluster)
    nodes = len([n for n in ray.nodes() if n.get("Alive")])
    check_resources(job.cfg, use_gpu, cluster, nodes == 1)
    print(f"{layout(job.cfg, use_gpu)}; {len(job.todo)} shard(s) to generate", flush=True)
    receipts = []
    # a local plan path is read where the driver runs: other nodes may not see it
    driver_node_only = nodes > 1 and not storage.is_s3(job.plan.uri)
    for block in build_dataset(job, use_gpu, driver_node_only).iter_batches(batch_size=None, batch_format="pyarrow"):
        receipts.extend(block.to_pylist())
    return receipts, use_gpu


@dataclass
class Summary:
    """A run's figures: ``images`` generated by this run in ``wall_s``; ``busy_s`` summed over
    the actors' sampling time; ``total`` rows in the dataset; ``accelerators`` per actor (its
    GPU share, or on a CPU pool its torch threads = cores busy)."""

    images: int
    wall_s: float
    busy_s: float
    total: int
    shards: int
    accelerators: float
    accelerator: str
    gate: dict[str, int] | None = None

    @property
    def images_per_s(self) -> float:
        return self.images / self.wall_s if self.wall_s else 0.0

    @property
    def actor_images_per_s(self) -> float:
        return self.images / self.busy_s if self.busy_s else 0.0

    @property
    def hours_per_million(self) -> float:
        """Projected accelerator-hours (GPU, or CPU cores on a CPU pool) per 1M images at the
        measured per-actor rate."""
        rate = self.actor_images_per_s
        return 1e6 / rate / 3600 * self.accelerators if rate else float("nan")

    def lines(self) -> list[str]:
        return [
            f"generated {self.images} images this run in {self.wall_s:.1f} s ({self.images_per_s:.2f} images/s "
            f"end to end; {self.actor_images_per_s:.2f} images/s per actor while sampling)",
            f"dataset: {self.total} images in {self.shards} shards",
            f"projected {self.hours_per_million:.1f} {self.accelerator}-hours per million images at the "
            f"measured per-actor rate ({self.accelerators:g} {self.accelerator} per actor)",
        ] + ([gate_line(self.gate)] if self.gate else [])


def gate_line(c: dict[str, int]) -> str:
    """The consistency gate's counts in words."""
    return (f"consistency gate: of {c['planned']} planned rows {c['passed_first_draw']} passed at the first "
            f"draw, {c['passed_after_redraw']} after re-draws; {c['dropped']} dropped, "
            f"{c['kept_failing']} kept failing (gate_passed = false); {c['written']} written")


def read_gate_counts(job: Job, shard_count: int) -> dict[str, int]:
    """:func:`~synthface_ray.generate.gate.gate_counts` over every committed shard."""
    import io

    import numpy as np
    import pyarrow.parquet as pq

    cols = [pq.read_table(io.BytesIO(storage.read_bytes(job.out.join(shard_name(k)))), columns=[ATTEMPTS, GATE_PASSED])
            for k in range(shard_count)]
    attempts = np.concatenate([t.column(ATTEMPTS).to_numpy(zero_copy_only=False) for t in cols])
    passed = np.concatenate([t.column(GATE_PASSED).to_numpy(zero_copy_only=False) for t in cols])
    return gate_counts(attempts, passed, job.plan.num_rows)


def check_complete(job: Job) -> int:
    """The number of shards, once every one is committed."""
    total = job.shard_count
    missing = set(range(total)) - shards.committed(job.out)
    if missing:
        raise RuntimeError(f"{len(missing)} shard(s) are still missing after the run (e.g. "
                           f"{shard_name(min(missing))}); re-run the same command to complete them")
    return total


def finish(job: Job, receipts: list[dict[str, Any]], wall_s: float, use_gpu: bool) -> tuple[dict, Summary]:
    """Check every shard is committed, then publish ``manifest.json`` (last)."""
    import pyarrow.parquet as pq

    total = check_complete(job)
    mine = {r["shard"]: r for r in receipts}
    files = [mine.get(k) or shards.read_receipt(job.out, k) for k in range(total)]
    with job.out.fs.open_input_file(job.out.join(shard_name(0)).path) as fh:
        schema = pq.read_schema(fh)
    pool = job.cfg.pool
    summary = Summary(images=sum(r["rows"] for r in receipts), wall_s=wall_s,
                      busy_s=sum(r.get("gen_seconds", 0.0) for r in receipts),
                      total=sum(f["rows"] for f in files), shards=total,
                      accelerators=pool.gpus_per_actor if use_gpu else pool.torch_threads,
                      accelerator="GPU" if use_gpu else "CPU",
                      gate=read_gate_counts(job, total) if job.cfg.gate.enabled else None)
    counts = {"planned": job.plan.num_rows, "rows": summary.total, "shards": total,
              "identities": job.plan.summary.identities}
    if summary.gate:
        counts["gate"] = summary.gate
    manifest = publish_manifest(
        job.out, files, schema, kind="generated", job_fingerprint=job.fingerprint, content=job.content,
        models={"generator": job.cfg.model.generator, "generator_id": job.model_id, "fr": job.cfg.model.fr},
        counts=counts,
        config=to_dict(job.cfg), last_run={"images": summary.images, "wall_s": round(wall_s, 3),
                                           "busy_s": round(summary.busy_s, 3)})
    return manifest, summary
