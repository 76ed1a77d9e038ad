"""How cost grows with the work: generation, evaluation and mining from 10k rows upward (issue 24).

    python benchmarks/scale.py generate --sizes 10000,100000,1000000 [--root /tmp/synthface-scale]
    python benchmarks/scale.py evaluate --sizes 10000,100000,1000000
    python benchmarks/scale.py mining --sizes 10000,30000,100000
    python benchmarks/scale.py report [--plot docs/scale_loglog.png]

Each part appends one JSON line per size to ``--results`` (default runs/scale/results.jsonl; a size
already there is skipped unless ``--again``) and prints it; ``report`` prints the tables, the growth
from the smallest to the largest size, and draws the log-log plot.

``generate``: the real chain with the network made negligible. The generator is a *trivial
export made for this benchmark*: the project's IdentityGenerator (embedding-conditioned, 32x32 RGB)
with 4 channels per level (about 14k parameters, random weights), sampled with the
``conditional`` recipe at 1 DDIM step; no FR scoring. Everything else is what a user runs:
``synthface plan`` (10,000 random identities from ``synthface identities``, N / 10,000 images
each, no mixes) and ``synthface generate`` (PNG, 256 rows per file, 2 fused CPU actors) as
subprocesses joining a local Ray started by this script (bound to the node address: see
``part_generate``), so Ray's start is not in the
timings. Per size it measures
  * the full run: wall time and rows/s (process start to exit), shards, the driver's peak RSS
    (VmHWM of the ``synthface generate`` process, polled) and the object store's peak (the
    raylet's ``object_store_bytes_used``, polled every 0.5 s);
  * re-running the finished job (the whole command: it finds the manifest and stops);
  * a second output killed with SIGKILL (the driver) once half its shards are committed, then
    re-run: the time until it prints ``resuming`` (the resume check: plan, fingerprints, listing
    the committed shards) and the time to complete.
The bare network rate (1 process, 1 thread, batch 256) is measured once, to split each row's
wall time into network and everything else (``overhead``).

``evaluate``: the metrics of ``synthface evaluate`` (``compute_metrics`` with jobs/evaluate.yaml's
settings) on synthetic clustered embeddings, 50 images per identity, and the uint8 32x32 pixels
``collect`` keeps (at most ``diversity.pixel_max_per_class`` per identity of the first
``diversity.pixel_identities``): the inputs' size,
the time, and the process's peak RSS (each size in a fresh process). Embedding the images with
the FR network is not included (its cost is the network's, linear in N).

``mining``: ``unique_filter`` (tau 0.3), Far negatives (k = 1) and ScoreMix ``dist`` pairs (one per
identity) on N random 512-d identities, each size in a fresh process; the CPU time at 1M is
extrapolated from the measured exponent, and the GPU time estimated from the flop count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IDENTITIES = 10_000
TRIVIAL = dict(condition="embedding", block_out_channels=(4, 4, 4, 4), cross_attention_levels=(False, False, False, True),
               norm_num_groups=4, attention_head_dim=4, context_dim=4)
SAMPLER = {"recipe": "conditional", "solver": "ddim", "steps": 1}


# results file ----------------------------------------------------------------------------------
def load_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_result(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def machine() -> dict:
    import torch

    return {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
                       f"torch {torch.__version__}", "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}


# generate -----------------------------------------------------------------------------------------
def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "synthface_ray.cli", *args]


def trivial_export(folder: Path) -> Path:
    """The benchmark's generator: the project's model at 4 channels per level, random weights."""
    import torch

    from synthface_ray.models.generator import GeneratorConfig, IdentityGenerator

    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        IdentityGenerator(GeneratorConfig(**TRIVIAL)).eval().save_pretrained(
            str(folder), extra_metadata={"objective": {"name": "edm"}})
    return folder


def bare_rate(export: Path, batch: int = 256) -> float:
    """Rows/s of the composite sampler alone on one thread (median of 3 batches)."""
    import torch

    from synthface_ray.sampling.composite import Conditions, sample
    from synthface_ray.sampling.exported import load_generator

    torch.set_num_threads(1)
    gen = load_generator(str(export), "cpu")
    emb = torch.nn.functional.normalize(torch.randn(batch, 512), dim=1)
    ids = torch.arange(batch)
    cond = Conditions(contexts=gen.contexts(emb), empty=gen.empty, mix_ids=ids[:, None],
                      mix_weights=torch.ones(batch, 1), negative_ids=torch.full((batch,), -1), seeds=ids)
    times = []
    for _ in range(4):
        start = time.perf_counter()
        sample(gen.net, gen.param, cond, SAMPLER, gen.shape, unet=gen.unet)
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times[1:]))


class Watch:
    """Runs a command, timestamping its output lines, polling its peak RSS, the object store and
    (optionally) a folder's committed shards; ``kill_at`` shards -> SIGKILL."""

    def __init__(self, cmd: list[str], log: Path, state=None, folder: Path | None = None,
                 kill_at: int | None = None) -> None:
        self.cmd, self.log, self.state, self.folder, self.kill_at = cmd, log, state, folder, kill_at
        self.lines: list[tuple[float, str]] = []
        self.hwm_kib = 0
        self.store_peak = 0
        self.killed = False

    def _read(self, proc, start: float) -> None:
        with self.log.open("w") as fh:
            for line in proc.stdout:
                self.lines.append((time.perf_counter() - start, line.rstrip()))
                fh.write(line)
                fh.flush()

    def _poll(self, pid: int) -> None:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            self.hwm_kib = max(self.hwm_kib, int(re.search(r"VmHWM:\s+(\d+)", status).group(1)))
        except (OSError, AttributeError):
            pass
        if self.state is not None:
            import ray._private.internal_api as ia

            try:
                used = ia.get_memory_info_reply(self.state, timeout_seconds=5).store_stats.object_store_bytes_used
                self.store_peak = max(self.store_peak, int(used))
            except Exception:  # noqa: BLE001 - a missed poll is not a failure of the run
                pass
        if self.kill_at is not None and not self.killed and self.folder is not None and self.folder.exists():
            done = sum(1 for e in os.scandir(self.folder) if e.name.startswith("part-"))
            if done >= self.kill_at:
                os.kill(pid, signal.SIGKILL)
                self.killed = True

    def run(self) -> float:
        start = time.perf_counter()
        proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        reader = threading.Thread(target=self._read, args=(proc, start), daemon=True)
        reader.start()
        while proc.poll() is None:
            self._poll(proc.pid)
            time.sleep(0.5)
        wall = time.perf_counter() - start
        reader.join()
        if proc.returncode != 0 and not self.killed:
            tail = "\n".join(line for _, line in self.lines[-20:])
            raise RuntimeError(f"{' '.join(self.cmd[2:5])} failed ({proc.returncode}); log {self.log}:\n{tail}")
        return wall

    def first(self, pattern: str) -> float | None:
        return next((t for t, line in self.lines if re.search(pattern, line)), None)


def make_inputs(root: Path) -> tuple[Path, Path]:
    export = trivial_export(root / "generator")
    ids = root / "identities.parquet"
    if not ids.exists():
        subprocess.run(cli("identities", "--out", str(ids), "--set", f"source.count={IDENTITIES}",
                           "--set", "filter.tau=null"), check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return export, ids


def generate_cmd(plan: Path, ids: Path, export: Path, root: Path, name: str) -> list[str]:
    sets = [f"sampler.{k}={v}" for k, v in SAMPLER.items()] + [
        "pool.actors=2", "output.rows_per_file=256", "grid.enabled=false"]
    return cli("generate", "--plan", str(plan), "--set", f"input.identities={ids}", "--generator", str(export),
               "--out", str(root / "out"), "--name", name, *[a for s in sets for a in ("--set", s)])


def generate_size(n: int, root: Path, state, rate: float) -> dict:
    export, ids = make_inputs(root)
    plan = root / f"plan-{n}.parquet"
    start = time.perf_counter()
    subprocess.run(cli("plan", "--identities", str(ids), "--out", str(plan), "--set", "input.mining=null",
                       "--set", f"plan.images_per_identity={n // IDENTITIES}", "--set", "output.overwrite=true"),
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    plan_s = time.perf_counter() - start
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    full = Watch(generate_cmd(plan, ids, export, root, f"n{n}"), logs / f"generate-{n}.log", state)
    wall = full.run()
    manifest = json.loads((root / "out" / f"n{n}" / "manifest.json").read_text())
    again = Watch(generate_cmd(plan, ids, export, root, f"n{n}"), logs / f"rerun-{n}.log")
    rerun_s = again.run()
    shards = len(manifest["files"])
    folder = root / "out" / f"k{n}"
    killed = Watch(generate_cmd(plan, ids, export, root, f"k{n}"), logs / f"kill-{n}.log", None, folder,
                   kill_at=shards // 2)
    killed.run()
    resume = Watch(generate_cmd(plan, ids, export, root, f"k{n}"), logs / f"resume-{n}.log")
    resume_s = resume.run()
    row = {"part": "generate", "size": n, "rows": manifest["rows"], "shards": shards, "plan_s": round(plan_s, 2),
           "wall_s": round(wall, 2), "rows_per_s": round(manifest["rows"] / wall, 1),
           "bare_rows_per_s_1thread": round(rate, 1),
           "overhead_ms_per_row": round((wall / manifest["rows"] - 1 / (2 * rate)) * 1e3, 4),
           "driver_peak_rss_mib": round(full.hwm_kib / 1024, 1), "object_store_peak_mib": round(full.store_peak / 2**20, 1),
           "rerun_finished_s": round(rerun_s, 2), "killed_at_shards": shards // 2,
           "resume_check_s": resume.first(r"^resuming "), "resume_complete_s": round(resume_s, 2),
           "resume_note": next((line for _, line in resume.lines if line.startswith("resuming ")), None)}
    shutil.rmtree(root / "out" / f"k{n}", ignore_errors=True)
    shutil.rmtree(root / "out" / f"n{n}", ignore_errors=True)
    return row


def part_generate(args, done: set[int]) -> None:
    import ray
    import ray._private.internal_api as ia

    from synthface_ray.ops.local_ray import init_ray

    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    rate = bare_rate(trivial_export(root / "generator"))
    print(f"bare sampler, 1 thread: {rate:.0f} rows/s", flush=True)
    # the commands join this Ray as clients; Ray on Linux turns a client's 127.0.0.1 into the routable
    # address, so a Ray pinned to loopback (the default local start) cannot be joined: bind to the node's
    os.environ["SYNTHFACE_RAY_HOST"] = "node"
    init_ray(num_cpus=os.cpu_count(), include_dashboard=False)
    address = ray.get_runtime_context().gcs_address
    os.environ["RAY_ADDRESS"] = address  # the commands join this Ray instead of starting their own
    state = ia.get_state_from_address(address)
    for n in args.sizes:
        if n in done:
            continue
        if n % IDENTITIES:
            raise SystemExit(f"--sizes: {n} is not a multiple of the {IDENTITIES} identities")
        save_result(args.results, {**machine(), **generate_size(n, root, state, rate)})


# evaluate -----------------------------------------------------------------------------------------
def evaluate_one(n: int) -> dict:
    """``compute_metrics`` on n synthetic embeddings (called in a fresh process)."""
    import resource

    sys.path.insert(0, str(HERE))
    from evaluation import clustered

    from synthface_ray.config import load
    from synthface_ray.evaluate.config import Config
    from synthface_ray.evaluate.report import EvaluationInputs, compute_metrics, first_per_label

    cfg = load(Config, str(REPO / "jobs" / "evaluate.yaml"))
    per = 50
    emb, labels = clustered(n // per, per, 512, seed=0)
    keep = first_per_label(labels, {}, cfg.diversity.pixel_max_per_class, cfg.diversity.pixel_identities)
    pixels = np.random.default_rng(0).integers(0, 256, (len(keep), 32, 32, 3), dtype=np.uint8)
    inputs = EvaluationInputs(emb, labels, pixels, labels[keep], np.random.default_rng(1).random(n, np.float32))
    held = emb.nbytes + pixels.nbytes + labels.nbytes
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    metrics, _ = compute_metrics(inputs, cfg)
    wall = time.perf_counter() - start
    return {"part": "evaluate", "size": n, "identities": n // per, "inputs_mib": round(held / 2**20, 1),
            "metrics_s": round(wall, 2), "rss_before_mib": round(rss_before, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "uniqueness": metrics["uniqueness"]["unique"], "eer": round(metrics["separability"]["eer"], 4)}


# mining -------------------------------------------------------------------------------------------
def mining_one(n: int) -> dict:
    import resource

    import faiss

    from synthface_ray.mining.negatives import negatives
    from synthface_ray.mining.pairs import select_pairs
    from synthface_ray.mining.uniqueness import unique_filter

    faiss.omp_set_num_threads(os.cpu_count())
    z = np.random.default_rng(0).standard_normal((n, 512), dtype=np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    times = {}
    start = time.perf_counter()
    keep, report = unique_filter(z, 0.3)
    times["filter_s"] = time.perf_counter() - start
    ids = z[keep]
    start = time.perf_counter()
    negatives(ids, "far", 1)
    times["negatives_s"] = time.perf_counter() - start
    start = time.perf_counter()
    select_pairs(ids, len(ids) // 2, "dist", 1)
    times["pairs_s"] = time.perf_counter() - start
    return {"part": "mining", "size": n, "kept": int(report.kept), **{k: round(v, 2) for k, v in times.items()},
            "total_s": round(sum(times.values()), 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def part_in_fresh_processes(args, done: set[int]) -> None:
    for n in args.sizes:
        if n in done:
            continue
        out = subprocess.run([sys.executable, __file__, f"_{args.part}-one", "--sizes", str(n)], cwd=REPO,
                             check=True, capture_output=True, text=True).stdout
        save_result(args.results, {**machine(), **json.loads(out.strip().splitlines()[-1])})


# report -------------------------------------------------------------------------------------------
def growth(rows: list[dict], key: str) -> str:
    a, b = rows[0], rows[-1]
    if not a.get(key) or b.get(key) is None:
        return "n/a"
    ratio = b[key] / a[key]
    exponent = np.log(ratio) / np.log(b["size"] / a["size"])
    return f"x{ratio:.2f} from {a['size']:,} to {b['size']:,} (N^{exponent:.2f})"


H200_FP32_TFLOPS = 67.0  # NVIDIA H200 SXM datasheet, FP32 (non-tensor-core) peak
GPU_EFFICIENCY = 0.6  # assumed fraction of peak for faiss flat searches (GEMM + k-select)


def mining_estimate(last: dict, n: int = 1_000_000, dim: int = 512) -> str:
    """Mining at 1M identities: CPU from the largest measurement at N^2 (every step is an exact
    all-pairs search), GPU from the flop count (filter ~N^2/2 dot products, negatives and the
    first pairs pass N^2 each)."""
    cpu_h = last["total_s"] * (n / last["size"]) ** 2 / 3600
    flops = (n**2 / 2 + 2 * n**2) * dim * 2
    peak = flops / (H200_FP32_TFLOPS * 1e12)
    return (f"- ESTIMATE, not a measurement, at {n:,} identities: {cpu_h:.1f} h on this CPU (N^2 from "
            f"{last['size']:,}); {flops:.2e} flop on one H200 ({H200_FP32_TFLOPS:g} TFLOPS fp32 peak): >= "
            f"{peak:.0f} s at peak, ~{peak / GPU_EFFICIENCY:.0f} s at an assumed {GPU_EFFICIENCY:.0%}")


GENERATE_COLUMNS = ["size", "shards", "plan_s", "wall_s", "rows_per_s", "overhead_ms_per_row", "driver_peak_rss_mib",
                    "object_store_peak_mib", "rerun_finished_s", "resume_check_s", "resume_complete_s"]
EVALUATE_COLUMNS = ["size", "identities", "inputs_mib", "metrics_s", "peak_rss_mib"]
MINING_COLUMNS = ["size", "kept", "filter_s", "negatives_s", "pairs_s", "total_s", "peak_rss_mib"]


def _cell(value) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |"
              for r in rows]
    return "\n".join(lines)


def report(results: list[dict], plot: str | None) -> None:
    parts = {}
    for row in results:
        parts.setdefault(row["part"], {})[row["size"]] = row  # the last measurement of a size wins
    specs = {"generate": (GENERATE_COLUMNS, ["overhead_ms_per_row", "driver_peak_rss_mib", "object_store_peak_mib",
                                             "rerun_finished_s", "resume_check_s"]),
             "evaluate": (EVALUATE_COLUMNS, ["metrics_s", "peak_rss_mib"]),
             "mining": (MINING_COLUMNS, ["filter_s", "negatives_s", "pairs_s", "total_s"])}
    for part, (columns, keys) in specs.items():
        rows = [parts[part][n] for n in sorted(parts.get(part, {}))]
        if not rows:
            continue
        print(f"\n## {part} ({rows[-1]['machine']}, {rows[-1]['date']})\n\n{table(rows, columns)}\n")
        for key in keys:
            print(f"- {key}: {growth(rows, key)}")
        if part == "mining":
            print(mining_estimate(rows[-1]))
        if part == "generate":
            for a, b in zip(rows, rows[1:]):
                marginal = (b["wall_s"] - a["wall_s"]) / (b["rows"] - a["rows"]) - 1 / (2 * b["bare_rows_per_s_1thread"])
                print(f"- marginal overhead per row from {a['size']:,} to {b['size']:,} (the fixed start-up "
                      f"cost cancels): {marginal * 1e3:.3f} ms")
    if plot:
        draw(parts, plot)


SERIES = [("generate", "wall_s", "generate: wall time"), ("generate", "overhead_ms_per_row", "generate: overhead per row"),
          ("generate", "driver_peak_rss_mib", "generate: driver peak RSS"),
          ("generate", "rerun_finished_s", "generate: re-run of a finished job"),
          ("generate", "resume_check_s", "generate: resume check after a kill"),
          ("evaluate", "metrics_s", "evaluate: metrics time"), ("evaluate", "peak_rss_mib", "evaluate: peak RSS"),
          ("mining", "total_s", "mining: total time")]
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127)]


def draw(parts: dict, path: str) -> None:
    """Each series as its value over its value at the smallest size, against size over the
    smallest size, both log10 (PIL, as the project's other plots): slope 1 = linear, 0 = flat."""
    import math

    from PIL import Image, ImageDraw

    from synthface_ray.evaluate.histogram import AXIS_RGB, GRID_RGB, load_font

    lines = []
    for (part, key, label), colour in zip(SERIES, COLOURS, strict=True):
        rows = [parts[part][n] for n in sorted(parts.get(part, {})) if parts[part][n].get(key)]
        if len(rows) > 1:
            lines.append((label, colour, [(r["size"] / rows[0]["size"], r[key] / rows[0][key]) for r in rows]))
    decades = max(1, math.ceil(math.log10(max(x for _, _, pts in lines for x, _ in pts)))) if lines else 2
    w, h, (left, top, right, bottom) = 760, 560, (70, 40, 250, 60)
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d, font = ImageDraw.Draw(img), load_font(12)

    def px(x: float, y: float) -> tuple[float, float]:
        lx, ly = math.log10(x) / decades, (math.log10(max(y, 10.0 ** -decades)) + decades) / (2 * decades)
        return left + lx * (w - left - right), h - bottom - ly * (h - top - bottom)

    for k in range(decades + 1):
        x, _ = px(10.0**k, 1)
        d.line([(x, top), (x, h - bottom)], fill=GRID_RGB)
        d.text((x, h - bottom + 6), f"x{10 ** k:g}", fill=AXIS_RGB, font=font, anchor="mt")
    for k in range(-decades, decades + 1):
        _, y = px(1, 10.0**k)
        d.line([(left, y), (w - right, y)], fill=GRID_RGB)
        d.text((left - 6, y), f"x{10.0 ** k:g}", fill=AXIS_RGB, font=font, anchor="rm")
    d.line([px(1, 1), px(10.0**decades, 10.0**decades)], fill=AXIS_RGB, width=1)
    d.text((w - right + 8, top), "black: slope 1 (cost grows linearly)", fill=AXIS_RGB, font=font)
    for i, (label, colour, pts) in enumerate(lines):
        d.line([px(x, y) for x, y in pts], fill=colour, width=2)
        for x, y in pts:
            cx, cy = px(x, y)
            d.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=colour)
        d.text((w - right + 8, top + 24 + 18 * i), label, fill=colour, font=font)
    d.text((left + (w - left - right) / 2, h - 24), "size / smallest size (log)", fill=AXIS_RGB, font=font, anchor="mt")
    d.text((w / 2, 12), "cost / cost at the smallest size (log), 2 CPU cores", fill=AXIS_RGB, font=load_font(14),
           anchor="mt")
    img.save(path)
    print(f"plot: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", choices=["generate", "evaluate", "mining", "report", "_evaluate-one", "_mining-one"])
    ap.add_argument("--sizes", default="10000,100000,1000000", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--root", default="/tmp/synthface-scale", help="generate: where its inputs and outputs go")
    ap.add_argument("--results", default=str(REPO / "runs" / "scale" / "results.jsonl"), type=Path)
    ap.add_argument("--again", action="store_true", help="measure sizes already in --results again")
    ap.add_argument("--plot", default=None, help="report: write the log-log plot here")
    args = ap.parse_args()
    if args.part.startswith("_"):
        fn = evaluate_one if args.part == "_evaluate-one" else mining_one
        print(json.dumps(fn(args.sizes[0])))
        return
    results = load_results(args.results)
    if args.part == "report":
        report(results, args.plot)
        return
    done = set() if args.again else {r["size"] for r in results if r["part"] == args.part}
    {"generate": part_generate}.get(args.part, part_in_fresh_processes)(args, done)


if __name__ == "__main__":
    main()
