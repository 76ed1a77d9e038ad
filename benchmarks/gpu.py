"""One-GPU benchmark: what one accelerator delivers, every figure measured in the same run.

On the device (one NVIDIA H200, 16 CPU cores), from the repository root, with the project's
dependencies importable there (torch, deepspeed, diffusers, ray[data], faiss; faiss-gpu for the
GPU path of section 4; the package itself needs no install: the script puts the repository on
``sys.path`` and on the Ray workers' ``PYTHONPATH``)::

    PYTHONUNBUFFERED=1 python benchmarks/gpu.py --out $OUT/gpu.md   # budgeted to 450 s (--budget)

On any machine without a GPU, the dry mode runs the same code on tiny sizes (CI's smoke test,
about 30 s on 2 cores; ``--ray-gpus 1`` gives Ray one logical GPU so the pipeline takes its GPU
layout, staged with fractional actors, while the actors compute on CPU: about 70 s)::

    python benchmarks/gpu.py --dry

It prints a markdown report: first the machine (GPU, torch/CUDA, CPU count, library versions) and
the mode (device and precision: CUDA + bf16 when the GPU supports it; on CPU bf16 too, which torch
and DeepSpeed support there, so the dry run takes the GPU run's dtype paths; ``--precision fp32``
forces fp32), then one section each:

1. ``train``: generator training steps/s and images/s, DeepSpeed ZeRO-2 in one process
   (:class:`~synthface_ray.train.generator.GeneratorSession`: the project's model, objective,
   EMA and client AdamW; rank/world in the environment, no comm op or fused Adam to compile) for
   the tiny config of jobs/train_generator.yaml (batch 32 and 256) and a paper-sized UNet (64x64,
   block_out_channels (128, 256, 256, 512), 2 layers per block, cross-attention at 16x16 and 8x8,
   about 108M parameters, printed; batch 32 and 128). Inputs are random uint8 batches already on
   the device: the figure is the training step, not the data feed.
2. ``sampler``: composite-sampler images/s per recipe of ``RECIPES`` at batch 512, 128 and 32 on
   the paper-sized UNet (``--sampler-models tiny,paper`` adds the tiny one), 20 steps, and the
   ratio to NFE x bare forward as benchmarks/sampler.py defines it (ScoreMix pairs and a negative
   per row, for every recipe). Largest batch first; a call that would overrun the section's share
   is skipped and named.
3. ``pipeline``: ``synthface generate``'s steps (prepare, execute, finish) on benchmarks/
   generate.py's inputs (1280 images of the paper-sized UNet, DDIM 10 steps, FR scoring, PNG)
   with 1, 2 and 4 fractional actors (``pool.gpus_per_actor`` 1, 0.5, 0.25; ``pool.fr_gpus`` 0,
   since the generator actors claim the whole GPU) against a bare single-process loop of the
   same per-shard functions on the same device.
4. ``faiss``: the greedy uniqueness filter (synthface_ray.mining.uniqueness.unique_filter, tau
   0.3) on 1M x 512 unit vectors of which 10% are near-copies of others: wall time and kept count
   (checked: exactly the originals). Without faiss-gpu it measures 200k rows on the CPU and says
   what 1M would take.
5. ``projection``: GPU-hours per million images per recipe at its best measured batch size
   (solver and steps named, also scaled to 50 steps), against DCFace's 500k images in ~20 h on
   one A100 (~6.9 images/s).

Each section runs under a guard: an exception, or running past its share of the wall-clock
budget (SIGALRM), prints one ``**ERROR**`` line (traceback on stderr) and the script goes on
with the next; each section ends with its elapsed and the total time. The exit status is 1 when
a section failed. ``--sections sampler,projection`` (or ``2,5``) runs a subset, ``--out FILE``
also writes the report to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import io
import logging
import os
import platform
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)  # benchmarks/ is not a package: sampler.py and generate.py's helpers
if ROOT not in sys.path:
    sys.path.insert(1, ROOT)  # the package without an install (the device machine)

import numpy as np  # noqa: E402
import torch  # noqa: E402

if TYPE_CHECKING:
    from synthface_ray.generate.config import Config
    from synthface_ray.generate.pipeline import Summary
    from synthface_ray.sampling.composite import Conditions
    from synthface_ray.sampling.exported import LoadedGenerator
    from synthface_ray.train.generator import GeneratorSession, TrainGeneratorConfig

JOB = os.path.join(ROOT, "jobs", "train_generator.yaml")
#: the paper-sized generator (IDiff-Face / DCFace scale), as overrides of the tiny job's
PAPER = {"sample_size": 64, "block_out_channels": [128, 256, 256, 512], "layers_per_block": 2,
         "cross_attention_levels": [False, False, True, True], "attention_head_dim": 64,
         "norm_num_groups": 32, "context_dim": 256, "context_tokens": 4, "condition": "class",
         "num_identities": 1024}
DCFACE_IMAGES_PER_S = 500_000 / (20 * 3600)  # DCFace: 500k images in ~20 hours on one A100
PROJECT_STEPS = 50  # the projection also scales the measured cost to this many steps
FAISS_TAU, FAISS_DIM, FAISS_DUPLICATES = 0.3, 512, 0.10


# sizes ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    """How much each section does (full: the GPU run; dry: the CPU smoke test)."""

    train_models: tuple[str, ...]
    train_batches: dict[str, tuple[int, ...]]
    train_warmup: int
    train_steps: int
    sampler_models: tuple[str, ...]
    sampler_batches: tuple[int, ...]
    sampler_steps: int
    forward_repeats: int
    pipeline_model: str
    pipeline_fractions: tuple[float, ...]  # gpus_per_actor; actors = round(1 / fraction)
    pipeline_identities: int
    pipeline_per_identity: int
    pipeline_rows_per_file: int
    pipeline_steps: int
    faiss_rows: int
    faiss_cpu_rows: int  # without faiss-gpu (the cost grows as N x kept)
    budget_s: float
    shares: dict[str, float]  # each section's share of the budget (s)


FULL = Sizes(
    train_models=("tiny", "paper"), train_batches={"tiny": (32, 256), "paper": (32, 128)},
    train_warmup=5, train_steps=20,
    sampler_models=("paper",), sampler_batches=(512, 128, 32), sampler_steps=20, forward_repeats=10,
    pipeline_model="paper", pipeline_fractions=(1.0, 0.5, 0.25), pipeline_identities=128,
    pipeline_per_identity=8, pipeline_rows_per_file=80, pipeline_steps=10,
    faiss_rows=1_000_000, faiss_cpu_rows=200_000,
    budget_s=450.0, shares={"train": 70, "sampler": 160, "pipeline": 150, "faiss": 65, "projection": 5})
DRY = Sizes(
    train_models=("tiny",), train_batches={"tiny": (4,)}, train_warmup=1, train_steps=2,
    sampler_models=("tiny",), sampler_batches=(8, 4), sampler_steps=2, forward_repeats=2,
    pipeline_model="tiny", pipeline_fractions=(0.5,), pipeline_identities=8,  # 2 actors only: CI time
    pipeline_per_identity=1, pipeline_rows_per_file=5, pipeline_steps=2,
    faiss_rows=2_000, faiss_cpu_rows=2_000,
    budget_s=240.0, shares={"train": 40, "sampler": 40, "pipeline": 120, "faiss": 30, "projection": 10})


# report, clock, guards ------------------------------------------------------------------------
class Report:
    """Markdown lines, printed as they come and kept for ``--out``."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, text: str = "") -> None:
        for line in text.split("\n"):
            self.lines.append(line)
            print(line, flush=True)

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.add("| " + " | ".join(headers) + " |")
        self.add("|" + "---|" * len(headers))
        for row in rows:
            self.add("| " + " | ".join(str(c) for c in row) + " |")

    def write(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(self.lines) + "\n")


@dataclass
class Run:
    """What every section gets: the device, precision, sizes, the report and earlier results."""

    device: torch.device
    dtype: torch.dtype
    sizes: Sizes
    report: Report
    dry: bool
    ray_gpus: int = 0
    start: float = field(default_factory=time.monotonic)
    deadline: float = 0.0  # the current section's (monotonic)
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def precision(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "fp32")

    @property
    def unit(self) -> str:
        return "GPU" if self.device.type == "cuda" else "CPU process"

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        """Seconds left to the current section."""
        return self.deadline - time.monotonic()


class SectionTimeout(BaseException):
    """The section ran past its share of the budget (raised by SIGALRM; not an Exception, so a
    library's ``except Exception`` does not swallow it)."""


@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`SectionTimeout` in the main thread after ``seconds``."""
    def fire(signum: int, frame: object) -> None:
        raise SectionTimeout(f"ran past its {seconds:.0f} s share of the budget")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1.0))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def num(x: float) -> str:
    """A measured figure: 3 significant digits (a small dry-run figure never rounds to 0),
    thousands separated from 1000 on."""
    return f"{x:,.0f}" if abs(x) >= 999.5 else f"{x:.3g}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def quiet_deepspeed() -> None:
    """DeepSpeed logs INFO lines to stdout: keep the report readable."""
    from deepspeed.utils import logger

    logger.setLevel(logging.WARNING)


# machine ----------------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_line() -> str:
    """GPU, torch/CUDA versions, CPU count, the libraries the sections use."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = f"{props.name} ({props.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} visible)"
    else:
        gpu = f"no GPU ({platform.processor() or platform.machine()})"
    libs = [f"{dist} {_version(dist) or 'missing'}" for dist in ("deepspeed", "diffusers", "ray")]
    try:
        import faiss

        from synthface_ray.mining.index import gpu_available

        libs.append(f"faiss {faiss.__version__} ({'GPU' if gpu_available() else 'CPU only'})")
    except ImportError:
        libs.append("faiss missing")
    return (f"**machine:** {gpu}; torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}"
            f", cuDNN {torch.backends.cudnn.version() if torch.cuda.is_available() else 'none'}; "
            f"{os.cpu_count()} CPUs; Python {platform.python_version()}; {', '.join(libs)}")


# 1. generator training ----------------------------------------------------------------------------
def train_config(model: str, batch: int, precision: str) -> TrainGeneratorConfig:
    """jobs/train_generator.yaml (``paper``: with :data:`PAPER`'s generator) for one process."""
    from synthface_ray.config import from_dict, load, to_dict
    from synthface_ray.train.generator import TrainGeneratorConfig

    raw = to_dict(load(TrainGeneratorConfig, JOB), redact=False)
    if model == "paper":
        raw["generator"].update(PAPER)
    raw["optim"].update(micro_batch=batch, grad_accum=1, warmup_steps=0)
    raw["deepspeed"].update(zero_stage=2, precision=precision)
    return from_dict(TrainGeneratorConfig, raw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """A one-process torch.distributed group through ``deepspeed.init_distributed`` (rank/world
    in the environment, else DeepSpeed tries MPI discovery; the CPU shm comm op is not built)."""
    from synthface_ray.train.deepspeed import DeepSpeedConfig, init_distributed

    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port())}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        init_distributed(DeepSpeedConfig(), "nccl" if device.type == "cuda" else "gloo")
        yield
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def time_train_steps(session: GeneratorSession, batch: int, warmup: int, steps: int) -> float:
    """Optimizer steps per second of ``session.train_step`` on a fixed random batch."""
    gcfg, device = session.cfg.generator, session.device
    size = gcfg.sample_size
    images = torch.randint(0, 256, (batch, size, size, gcfg.in_channels), dtype=torch.uint8, device=device)
    labels = torch.randint(0, gcfg.num_identities, (batch,), device=device)
    micro = [{"image": images, "label": labels}]
    for _ in range(warmup):
        session.train_step(micro)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = session.train_step(micro)
    sync(device)
    seconds = time.perf_counter() - start
    if not torch.isfinite(loss).all():
        raise FloatingPointError(f"training loss is {loss.item()} after {warmup + steps} steps")
    return steps / seconds


def section_train(run: Run) -> None:
    from synthface_ray.train.generator import GeneratorSession

    s = run.sizes
    rows = []
    if run.device.type == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed finds it anyway, with a warning
    quiet_deepspeed()
    with process_group(run.device):
        for model in s.train_models:
            batches = s.train_batches[model]
            cfg = train_config(model, batches[0], run.precision)
            session = GeneratorSession(cfg, 0, 1, run.device, run.precision)
            params = sum(p.numel() for p in session.model.parameters())
            for batch in batches:
                if run.device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(run.device)
                rate = time_train_steps(session, batch, s.train_warmup, s.train_steps)
                peak = (f"{torch.cuda.max_memory_allocated(run.device) / 2**30:.1f}"
                        if run.device.type == "cuda" else "-")
                rows.append([model, f"{params / 1e6:.2f}M", f"{cfg.generator.sample_size}x{cfg.generator.sample_size}",
                             batch, num(rate), num(rate * batch), peak])
            del session
            free_memory()
    run.report.table(["model", "parameters", "resolution", "batch", "steps/s", "images/s", "peak GiB"], rows)
    run.report.add(f"\n{s.train_warmup} warm-up + {s.train_steps} timed steps each; objective "
                   f"{cfg.objective.name}, EMA update included; paper UNet: block_out_channels "
                   f"{tuple(PAPER['block_out_channels'])}, {PAPER['layers_per_block']} layers per block, "
                   "cross-attention at 16x16 and 8x8, class-conditioned (1024 identities).")


# 2. composite sampler -----------------------------------------------------------------------------
def export_generator(model: str, folder: str) -> str:
    """A generator export with random weights (cost does not depend on weights): the tiny one of
    benchmarks/sampler.py, or :data:`PAPER`'s with the job's objective."""
    from sampler import _tiny_export

    from synthface_ray.models.generator import IdentityGenerator

    if model == "tiny":
        return _tiny_export(folder)
    cfg = train_config("paper", 1, "fp32")
    torch.manual_seed(0)
    objective = {"name": cfg.objective.name, **cfg.objective.settings()}
    IdentityGenerator(cfg.generator).eval().save_pretrained(folder, extra_metadata={"objective": objective})
    return folder


def load_on(model: str, run: Run) -> LoadedGenerator:
    """The exported generator loaded on the run's device in the run's dtype (as the actors do)."""
    from synthface_ray.sampling.exported import load_generator

    with tempfile.TemporaryDirectory() as tmp:
        gen = load_generator(export_generator(model, os.path.join(tmp, "export")), run.device)
    gen.model.to(dtype=run.dtype)
    return gen


def time_sample(gen: LoadedGenerator, cond: Conditions, recipe: str, steps: int, run: Run) -> tuple[float, float]:
    """(seconds, mean NFE per image) of one ``sample()`` call, after a 1-step warm-up call."""
    from synthface_ray.sampling.composite import sample

    for n in (1, steps):  # the timed call is the last one
        sync(run.device)
        start = time.perf_counter()
        out = sample(gen.net, gen.param, cond, {"recipe": recipe, "steps": n}, gen.shape,
                     device=run.device, dtype=run.dtype, unet=gen.unet)
        sync(run.device)
        seconds = time.perf_counter() - start
    if not torch.isfinite(out.images).all():
        raise FloatingPointError(f"recipe {recipe}: non-finite images")
    return seconds, out.nfe.double().mean().item()


def sampler_grid(gen: LoadedGenerator, run: Run, grid: dict, skipped: list[str]) -> None:
    """Fill ``grid`` {recipe: {batch: (images/s, NFE, ratio)}}; the largest batch first, so that
    a short budget loses the small batches; a call that would not fit the section's time is
    skipped (named in ``skipped``)."""
    from sampler import _bare_forward, _conditions

    from synthface_ray.sampling.recipes import RECIPES

    s = run.sizes
    last: tuple[int, float] | None = None  # (batch, seconds) of the last sample() call
    for batch in s.sampler_batches:
        cond = _conditions(gen, batch)
        per_eval = _bare_forward(gen, cond, s.forward_repeats, run.device, run.dtype) / batch
        for name in RECIPES:
            # the next call's cost scaled from the last one (x3: its warm-up, and up to 2x the NFE)
            if last and run.left() < 3 * last[1] * max(batch / last[0], 1.0) + 5:
                skipped.append(f"{name}@{batch}")
                continue
            seconds, nfe = time_sample(gen, cond, name, s.sampler_steps, run)
            last = (batch, seconds)
            grid[name][batch] = (batch / seconds, nfe, seconds / batch / (nfe * per_eval))


def sampler_table(run: Run, grid: dict, skipped: list[str]) -> None:
    from synthface_ray.sampling.recipes import resolve

    batches = sorted(run.sizes.sampler_batches)
    rows = []
    for name, cells in grid.items():
        cfg = resolve({"recipe": name, "steps": run.sizes.sampler_steps})
        nfe = next((v[1] for v in cells.values()), float("nan"))
        rows.append([name, cfg.solver, f"{nfe:.1f}", *[f"{num(cells[b][0])} ({num(cells[b][2])})"
                                                       if b in cells else "not run" for b in batches]])
    run.report.table(["recipe", "solver", "NFE/image", *[f"batch {b}" for b in batches]], rows)
    if skipped:
        run.report.add(f"\nnot run (budget): {', '.join(skipped)}")
    run.report.add("")


def section_sampler(run: Run) -> None:
    from synthface_ray.sampling.recipes import RECIPES

    s = run.sizes
    run.results["sampler"] = {}
    for model in s.sampler_models:
        gen = load_on(model, run)
        params = sum(p.numel() for p in gen.model.parameters())
        grid: dict[str, dict] = {name: {} for name in RECIPES}
        run.results["sampler"][model] = grid  # filled as measured: a timeout keeps what was done
        skipped: list[str] = []
        run.report.add(f"**{model} UNet** ({params / 1e6:.2f}M parameters, {gen.shape[1]}x{gen.shape[2]}), "
                       f"{s.sampler_steps} steps, {run.precision}; images/s (ratio to NFE x bare forward)")
        try:
            sampler_grid(gen, run, grid, skipped)
        finally:
            sampler_table(run, grid, skipped)
            del gen
            free_memory()
    run.report.add("Every recipe samples ScoreMix pairs (0.5/0.5) with a negative per row, as "
                   "benchmarks/sampler.py; ratio = (s/image) / (NFE x bare forward s/image at that batch).")


# 3. Ray Data pipeline -----------------------------------------------------------------------------
def bare_loop(cfg: Config, device: torch.device, dtype: torch.dtype) -> tuple[float, float]:
    """generate.py's bare loop (the pipeline's per-shard functions, one process, no Ray) on
    ``device``: sample -> FR score -> encode -> commit. Returns images/s end to end (loading the
    models included) and images/s while sampling (``sample_batch`` alone)."""
    from synthface_ray.generate import batch as gb
    from synthface_ray.generate import pipeline, shards
    from synthface_ray.models.recognition.embedder import Embedder
    from synthface_ray.sampling.exported import load_generator

    start = time.perf_counter()
    job = pipeline.prepare(cfg)
    pipeline.open_output(job)
    gen = load_generator(cfg.model.generator, device)
    gen.model.to(dtype=dtype)
    fr = Embedder.from_pretrained(cfg.model.fr, device)
    text, sampling = gb.sampler_json(job.sampler), 0.0
    for part in job.plan.shard_tables(cfg.output.rows_per_file):
        begin = time.perf_counter()
        out = gb.sample_batch(gen, part, job.sampler, job.identities, micro_batch=cfg.pool.micro_batch,
                              device=device, dtype=dtype)  # returns host pixels: synchronised
        sampling += time.perf_counter() - begin
        out = gb.score_batch(fr, out, job.identities, job.shape[-1])
        rows = gb.faces_rows(out, size=job.shape[-1], fmt=cfg.output.format, quality=cfg.output.jpeg_quality,
                             sampler_json=text, model_id=job.model_id)
        shards.commit_shard(job.out, int(part.column(shards.SHARD)[0].as_py()), rows)
    sync(device)
    return job.plan.num_rows / (time.perf_counter() - start), job.plan.num_rows / sampling


def pipeline_once(cfg: Config) -> tuple[Summary, str]:
    """``synthface generate``'s steps (prepare, open, execute, finish): its Summary and the pool
    line it prints."""
    from synthface_ray.generate import pipeline

    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        job = pipeline.prepare(cfg)
        pipeline.open_output(job)
        receipts, use_gpu = pipeline.execute(job)
        _, summary = pipeline.finish(job, receipts, time.perf_counter() - start, use_gpu)
    return summary, printed.getvalue().strip().split(";")[0]


def start_ray(run: Run) -> None:
    """A local Ray of this machine's CPUs and GPUs (``--ray-gpus``: logical GPUs on a CPU-only
    machine, so the pool takes its GPU layout; the actors then compute on CPU)."""
    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    gpus = torch.cuda.device_count() if run.device.type == "cuda" else run.ray_gpus
    ray.init(num_cpus=os.cpu_count(), num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False


def section_pipeline(run: Run) -> None:
    import ray
    from generate import _config, _inputs

    s = run.sizes
    args = SimpleNamespace(identities=s.pipeline_identities, per_identity=s.pipeline_per_identity,
                           steps=s.pipeline_steps, rows_per_file=s.pipeline_rows_per_file)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as root:
        inp = _inputs(root, args)
        if s.pipeline_model != "tiny":
            inp["gen"] = export_generator(s.pipeline_model, os.path.join(root, s.pipeline_model))
        bare, sampling = bare_loop(_config(inp, root, "bare", args, 1), run.device, run.dtype)
        rows = [["bare loop (one process, no Ray)", num(bare), "1", num(sampling), "-"]]
        start_ray(run)
        try:
            rows += pipeline_rows(run, inp, root, args, bare)
        finally:
            ray.shutdown()
    run.report.table(["run", "images/s end to end", "ratio to bare", "images/s while sampling",
                      "pool"], rows)
    run.report.add(f"\n{inp['rows']} images of the {s.pipeline_model} generator, scoremix_cfg + AdaptDiff "
                   f"negative, DDIM {s.pipeline_steps} steps, FR scoring (IResNet-18 width 16), PNG, "
                   f"{s.pipeline_rows_per_file} rows per shard and micro-batch, {run.precision}. End to end "
                   "includes loading the models (the pipeline: starting its actors); 'while sampling': "
                   "images / time in the sampler (pipeline: / summed actor sampling time x actors)."
                   + (" pool.fr_gpus=0: the generator actors claim the whole GPU; the FR scorer (staged) "
                      "uses it unclaimed." if run.device.type == "cuda" or run.ray_gpus else ""))


def pipeline_rows(run: Run, inp: dict, root: str, args: SimpleNamespace, bare: float) -> list[list[str]]:
    """One row per actor count; a run that would not fit the section's time is skipped."""
    from generate import _config

    rows, last = [], 0.0
    for fraction in run.sizes.pipeline_fractions:
        actors = round(1 / fraction)
        if last and run.left() < 1.5 * last + 5:
            rows.append([f"pipeline, {actors} actor(s)", "skipped (budget)", "-", "-", "-"])
            continue
        cfg = _config(inp, root, f"actors{actors}", args, actors)
        cfg.pool.gpus_per_actor, cfg.pool.fr_gpus, cfg.pool.precision = fraction, 0.0, run.precision
        start = time.perf_counter()
        summary, pool = pipeline_once(cfg)
        last = time.perf_counter() - start
        each = f"{fraction:g} GPU" if summary.accelerator == "GPU" else "CPU pool"
        rows.append([f"pipeline, {actors} actor(s) x {each}", num(summary.images_per_s),
                     num(summary.images_per_s / bare), num(summary.actor_images_per_s * actors),
                     pool.removeprefix("pool: ")])
    return rows


# 4. faiss uniqueness --------------------------------------------------------------------------------
def near_duplicate_set(n: int, dim: int, fraction: float, seed: int = 0) -> tuple[np.ndarray, int]:
    """``n`` unit rows in random order, ``fraction`` of them near-copies (cosine ~0.9) of distinct
    other rows; returns (rows, the number a greedy filter at tau 0.3 keeps = the originals)."""
    rng = np.random.default_rng(seed)
    copies = int(n * fraction)
    base = rng.standard_normal((n - copies, dim), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    source = rng.choice(len(base), copies, replace=False)
    noise = rng.standard_normal((copies, dim), dtype=np.float32) * np.float32(0.5 / np.sqrt(dim))
    dup = base[source] + noise
    dup /= np.linalg.norm(dup, axis=1, keepdims=True)
    rows = np.concatenate([base, dup])
    return np.ascontiguousarray(rows[rng.permutation(n)]), len(base)


def section_faiss(run: Run) -> None:
    from synthface_ray.mining.index import gpu_available
    from synthface_ray.mining.uniqueness import unique_filter

    s = run.sizes
    on_gpu = gpu_available()
    n = s.faiss_rows if on_gpu or run.dry else s.faiss_cpu_rows
    emb, expected = near_duplicate_set(n, FAISS_DIM, FAISS_DUPLICATES)
    start = time.perf_counter()
    _, report = unique_filter(emb, FAISS_TAU)
    seconds = time.perf_counter() - start
    run.report.table(["rows x dim", "index", "tau", "wall s", "rows/s", "kept", "expected kept", "rejected"],
                     [[f"{n:,} x {FAISS_DIM}", "faiss GPU (GpuIndexFlatIP)" if on_gpu else "faiss CPU (IndexFlatIP)",
                       FAISS_TAU, num(seconds), num(n / seconds), report.kept, expected, report.rejected]])
    run.report.add(f"\n{FAISS_DUPLICATES:.0%} of the rows are near-copies (cosine ~0.9) of other rows: "
                   "exactly one of each pair is kept. Cost grows as N x kept x dim.")
    if not on_gpu and n < s.faiss_rows:
        scale = (s.faiss_rows / n) ** 2
        run.report.add(f"faiss has no GPU support here: measured at {n:,} rows; {s.faiss_rows:,} rows would "
                       f"take about {seconds * scale:,.0f} s on this CPU (x{scale:.0f}, N x kept).")
    if report.kept != expected:
        raise AssertionError(f"kept {report.kept} rows, expected {expected}")


# 5. projection ----------------------------------------------------------------------------------------
def section_projection(run: Run) -> None:
    from synthface_ray.sampling.recipes import RECIPES, resolve

    measured = run.results.get("sampler")
    if not measured:
        raise RuntimeError("needs the sampler section's figures (run it too: --sections sampler,projection)")
    steps, unit = run.sizes.sampler_steps, run.unit
    for model, grid in measured.items():
        rows = []
        for name in RECIPES:
            if not grid[name]:
                rows.append([name, "not measured", *["-"] * 6])
                continue
            batch, (ips, nfe, _) = max(grid[name].items(), key=lambda kv: kv[1][0])
            cfg = resolve({"recipe": name, "steps": steps})
            hours = 1e6 / ips / 3600
            rows.append([name, f"{cfg.solver} {steps} steps ({cfg.spacing} spacing)", f"{nfe:.1f}", batch,
                         num(ips), num(hours), num(hours * PROJECT_STEPS / steps),
                         f"{num(ips / DCFACE_IMAGES_PER_S)}x"])
        run.report.add(f"**{model} UNet**, sampling only (no FR scoring or encoding: see section 3)")
        run.report.table(["recipe", "solver", "NFE/image", "best batch", "images/s",
                          f"{unit}-hours per 1M images", f"at {PROJECT_STEPS} steps", "vs DCFace"], rows)
        run.report.add("")
    run.report.add(f"DCFace: 500k images in ~20 h on one A100 = {DCFACE_IMAGES_PER_S:.1f} images/s = "
                   f"{1e6 / DCFACE_IMAGES_PER_S / 3600:.1f} GPU-hours per 1M images (112x112, its own "
                   f"sampler). 'at {PROJECT_STEPS} steps' scales the measured figure by {PROJECT_STEPS}/{steps} "
                   "(the cost is linear in the step count); 'vs DCFace' compares the measured images/s.")


# driver -----------------------------------------------------------------------------------------------
SECTIONS: dict[str, tuple[str, Callable[[Run], None]]] = {
    "train": ("1. Generator training (DeepSpeed ZeRO-2, one process)", section_train),
    "sampler": ("2. Composite sampler", section_sampler),
    "pipeline": ("3. Ray Data generation pipeline, one device", section_pipeline),
    "faiss": ("4. Uniqueness filter (faiss)", section_faiss),
    "projection": ("5. Projected cost per million images", section_projection),
}


def run_section(run: Run, name: str, later: list[str]) -> bool:
    """Run one section under its guard; returns whether it completed."""
    title, fn = SECTIONS[name]
    s = run.sizes
    left = s.budget_s - run.elapsed()
    # what the later sections' shares leave, but at least this one's share while the budget lasts
    allowed = max(left - sum(s.shares[k] for k in later), min(s.shares[name], left))
    run.report.add(f"\n## {title}\n")
    start = time.monotonic()
    ok = False
    if allowed <= 1:
        run.report.add(f"**SKIPPED** section {name}: the {s.budget_s:.0f} s budget is spent")
    else:
        run.deadline = start + allowed
        try:
            with alarm(allowed):
                fn(run)
            ok = True
        except (Exception, SectionTimeout) as exc:
            traceback.print_exc(file=sys.stderr)
            message = " ".join(str(exc).split())[:400]
            run.report.add(f"\n**ERROR** section {name}: {type(exc).__name__}: {message}")
        free_memory()
    run.report.add(f"\n_section {name}: {time.monotonic() - start:.1f} s; total {run.elapsed():.1f} s "
                   f"of the {s.budget_s:.0f} s budget_")
    return ok


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry", action="store_true", help="tiny sizes on CPU (CI's smoke test)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (or 1-5)")
    parser.add_argument("--out", default=None, help="also write the report to this file")
    parser.add_argument("--budget", type=float, default=None, help="wall-clock budget in seconds")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="auto: bf16 on a GPU that supports it and on CPU (dry), else fp32")
    parser.add_argument("--sampler-models", default=None, help="tiny,paper (default: paper; dry: tiny)")
    parser.add_argument("--ray-gpus", type=int, default=0,
                        help="without a GPU: logical GPUs given to Ray, so the pipeline takes its GPU layout")
    args = parser.parse_args(argv)
    names = list(SECTIONS)
    chosen = [x.strip() for x in args.sections.split(",") if x.strip()]
    chosen = [names[int(x) - 1] if x.isdigit() and 1 <= int(x) <= len(names) else x for x in chosen]
    unknown = [x for x in chosen if x not in SECTIONS]
    if unknown:
        parser.error(f"--sections: unknown {unknown}; choose from {names} or 1-{len(names)}")
    args.sections = [n for n in names if n in chosen]
    return args


def run_dtype(device: torch.device, precision: str) -> torch.dtype:
    """bf16 on a GPU that supports it and on CPU (torch and DeepSpeed support it there, and the dry
    run then takes the GPU run's dtype paths); ``--precision fp32`` forces fp32."""
    if precision == "fp32":
        return torch.float32
    if device.type == "cuda":
        from synthface_ray.models.device import pick_dtype as project_pick

        return project_pick(device, "bf16" if precision == "bf16" else "auto")
    return torch.bfloat16


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from synthface_ray.models.device import pick_device

    device = pick_device("auto")
    sizes = DRY if args.dry else FULL
    if args.sampler_models:
        sizes = _replace(sizes, sampler_models=tuple(m.strip() for m in args.sampler_models.split(",")))
    if args.budget:
        sizes = _replace(sizes, budget_s=args.budget)
    run = Run(device, run_dtype(device, args.precision), sizes, Report(), args.dry, args.ray_gpus)
    run.report.add(machine_line())
    dry = "dry (tiny sizes: the figures only show that the code runs)"
    run.report.add(f"**mode:** benchmarks/gpu.py, {dry if args.dry else 'full'}; device {device.type}; "
                   f"precision {run.precision}; sections {', '.join(args.sections)}")
    failed = [name for i, name in enumerate(args.sections)
              if not run_section(run, name, args.sections[i + 1:])]
    run.report.add(f"\n**done** in {run.elapsed():.1f} s; "
                   + (f"{len(failed)} section(s) failed: {', '.join(failed)}" if failed else "every section completed"))
    if args.out:
        run.report.write(args.out)
    return 1 if failed else 0


def _replace(sizes: Sizes, **changes: Any) -> Sizes:
    import dataclasses

    return dataclasses.replace(sizes, **changes)


if __name__ == "__main__":
    sys.exit(main())
