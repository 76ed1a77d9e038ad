"""``synthface demo``: the main job on the embedded ToyFaces data, every stage on one local Ray:
ToyFaces -> FR training -> the real people's FR class centres -> generator training conditioned
on them -> new identities (sampled around the real ones, kept apart from them) and mining -> plan
-> generation with a composite recipe -> evaluation -> the verdict: FR trained on the generated set and on as
many real images, verified on real people no model saw (``synthface benchmark``). Each stage is the real command with the settings of
``synthface_ray/demo_jobs/*.yaml``; a stage whose output is complete is reused, so a re-run resumes."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from synthface_ray import config, storage
from synthface_ray.commands.pipeline import Step, load_steps, run_steps
from synthface_ray.config import check_range


@dataclass
class DemoSection:
    """``root``: every output goes under it; ``fresh``: delete the previous demo outputs first
    (else complete stages are reused); ``configs``: the folder of the stage configs (null = the
    ones shipped with the package in ``synthface_ray/demo_jobs``); ``actors``: generator actors
    of the generation stage."""

    root: str = "runs/demo"
    fresh: bool = False
    configs: str | None = None
    actors: int = 2

    def __post_init__(self) -> None:
        check_range("demo.actors", self.actors, 1)


@dataclass
class Config:
    demo: DemoSection = field(default_factory=DemoSection)


def config_folder(demo: DemoSection) -> Path:
    if demo.configs:
        return Path(demo.configs)
    return Path(str(resources.files("synthface_ray") / "demo_jobs"))


def stages(demo: DemoSection, folder: Path | None = None) -> list[Step]:
    """The stages as pipeline steps: a command, its config file (in ``folder``, default
    :func:`config_folder`), the overrides that place it under the root, and the path (under the
    root) whose presence means the stage is complete."""
    r, folder = demo.root.rstrip("/"), folder or config_folder(demo)

    def stage(command: str, config: str, sets: tuple[str, ...], done: str) -> Step:
        return Step(command, str(folder / config), list(sets), f"{r}/{done}")

    return [
        stage("toyfaces", "toyfaces.yaml", (f"output.path={r}/toyfaces",), "toyfaces/manifest.json"),
        stage("train-fr", "train_fr.yaml", (f"data.path={r}/toyfaces", f"run.storage_path={r}/train"),
              "train/fr/export/backbone_config.json"),
        stage("identities", "centres.yaml", (f"source.faces={r}/toyfaces", f"source.fr_model={r}/train/fr/export",
                                             f"output.path={r}/centres.parquet"), "centres.parquet"),
        stage("train-generator", "train_generator.yaml",
              (f"data.path={r}/toyfaces", f"data.label_embeddings={r}/centres.parquet",
               f"data.context_fr_model={r}/train/fr/export", f"run.storage_path={r}/train"),
              "train/generator/export/condition/metadata.json"),
        stage("identities", "identities.yaml", (f"source.real={r}/centres.parquet",
                                                f"output.path={r}/identities.parquet"), "identities.parquet"),
        stage("mine", "mine.yaml", (f"input.identities={r}/identities.parquet", f"output.path={r}/mining"),
              "mining/mining.json"),
        stage("plan", "plan.yaml", (f"input.identities={r}/identities.parquet", f"input.mining={r}/mining",
                                    f"output.path={r}/plan.parquet"), "plan.parquet"),
        stage("generate", "generate.yaml", (
            f"input.plan={r}/plan.parquet", f"input.identities={r}/identities.parquet",
            f"model.generator={r}/train/generator/export", f"model.fr={r}/train/fr/export",
            f"output.path={r}/generated", f"pool.actors={demo.actors}"),
              "generated/demo/manifest.json"),
        stage("evaluate", "evaluate.yaml", (f"data.path={r}/generated/demo", f"model.path={r}/train/fr/export",
                                            f"output.path={r}/report"), "report/report.md"),
        stage("toyfaces", "toyfaces_unseen.yaml", (f"output.path={r}/toyfaces-unseen",),
              "toyfaces-unseen/manifest.json"),
        stage("benchmark", "benchmark.yaml", (
            f"train.config={folder / 'train_fr.yaml'}",
            f"test.sets=[{{name: unseen, path: '{r}/toyfaces-unseen'}}]",
            f"arms=[{{name: real, match: synthetic, sources: [{{path: '{r}/toyfaces'}}]}}, "
            f"{{name: synthetic, sources: [{{path: '{r}/generated/demo'}}]}}]",
            f"output.path={r}/verdict"), "verdict/demo/report.md"),
    ]


def _fresh(root: str) -> None:
    import shutil

    if storage.is_s3(root):
        raise config.ConfigError("demo.root must be a local folder")
    shutil.rmtree(root, ignore_errors=True)


def run(cfg: Config, dry_run: bool = False) -> int:
    demo, folder = cfg.demo, config_folder(cfg.demo)
    plan = stages(demo, folder)
    if dry_run:
        print(f"# dry run of `synthface demo`: stage configs from {folder}; nothing is written")
        for s in plan:
            print(f"synthface {s.command} --config {s.config} " + " ".join(f"--set {x}" for x in s.set))
        return 0
    if demo.fresh:
        _fresh(demo.root)
    start = time.perf_counter()
    timings = run_steps(load_steps(plan, demo.root), None, "demo")
    total = time.perf_counter() - start
    r = demo.root.rstrip("/")
    print(f"\n== demo finished in {total / 60:.1f} min: " + ", ".join(f"{c} {t:.0f} s" for c, t in timings))
    print(f"dataset:  {r}/generated/demo (Parquet shards + manifest.json)\n"
          f"grids:    {r}/generated/demo/grid.png (generated), {r}/toyfaces/grid.png (real)\n"
          f"report:   {r}/report/report.md (+ metrics.json, histogram.png, det.png)\n"
          f"verdict:  {r}/verdict/demo/report.md\n"
          f"models:   {r}/train/fr/export, {r}/train/generator/export")
    for line in verdict_lines(r):
        print(line)
    return 0


def verdict_lines(root: str) -> list[str]:
    """The demo's last word: downstream accuracy of FR trained on generated vs real images,
    beside the proxy metrics that score the generated set with the generation's own FR model."""
    import io

    import pyarrow.csv as pacsv

    data = storage.read_bytes(storage.resolve(f"{root}/verdict/demo/summary.csv"))
    summary = {row["arm"]: row for row in pacsv.read_csv(io.BytesIO(data)).to_pylist()}
    proxy = storage.read_json(storage.resolve(f"{root}/report/metrics.json"))
    syn, real, floor = summary["synthetic"], summary["real"], summary["random_init"]
    lines = [f"\n== verdict: FR trained on {syn['train_images']} generated images vs {real['train_images']} real "
             f"images ({real['train_identities']} identities), verified on real people no model saw"]
    for name, row in (("trained on generated", syn), ("trained on real", real), ("untrained (floor)", floor)):
        lines.append(f"   {name:<21} verification accuracy {row['accuracy_mean']:.3f}, "
                     f"EER {row['eer_mean']:.3f}, TAR@FAR=1e-3 {row['tar_far_1e3_mean']:.3f}")
    gap = syn.get("gap_closed")
    if gap is None or math.isnan(gap):  # summary.csv leaves it empty when real does not beat untrained
        lines.append("   no gap to close: FR trained on real images verifies no better than untrained here "
                     "(1 seed; `make benchmark` runs 3 with intervals)")
    else:
        lines.append(f"   the generated set closes {gap:.2f} of the gap from untrained to real "
                     "(1 seed; `make benchmark` runs 3 with intervals)")
    lines.append(f"   proxy (the generated set scored by the demo's own FR model): EER "
                 f"{proxy['separability']['eer']:.3f}, verification accuracy {proxy['verification']['accuracy']:.3f}")
    return lines
