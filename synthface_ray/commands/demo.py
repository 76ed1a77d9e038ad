"""``synthface demo``: the main job on the embedded ToyFaces data, every stage on one local Ray:
ToyFaces -> FR training -> generator training -> identities and mining -> plan -> generation
with a composite recipe -> evaluation. Each stage is the real command with the settings of
``synthface_ray/demo_jobs/*.yaml``; a stage whose output is complete is reused, so a re-run resumes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from synthface_ray import config, storage
from synthface_ray.commands.pipeline import Step, load_steps, run_steps
from synthface_ray.config import check_range

HELP = "the main job on the embedded ToyFaces data: train FR + generator, mine, generate, evaluate"
EXAMPLES = """\
  synthface demo                                    # everything under runs/demo
  synthface demo --set demo.root=/tmp/demo --set demo.fresh=true
  synthface demo --dry-run                          # print the stages and their commands"""
SHORTCUTS = {"--root": "demo.root"}


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


@dataclass(frozen=True)
class Stage:
    """One stage: a command, its config file, the overrides that place it under the root, and the
    path (relative to the root) whose presence means the stage is complete."""

    command: str
    config: str
    sets: tuple[str, ...]
    done: str


def stages(demo: DemoSection) -> list[Stage]:
    r = demo.root.rstrip("/")
    return [
        Stage("toyfaces", "toyfaces.yaml", (f"output.path={r}/toyfaces",), "toyfaces/manifest.json"),
        Stage("train-fr", "train_fr.yaml", (f"data.path={r}/toyfaces", f"run.storage_path={r}/train"),
              "train/fr/export/backbone_config.json"),
        Stage("train-generator", "train_generator.yaml",
              (f"data.path={r}/toyfaces", f"run.storage_path={r}/train"),
              "train/generator/export/condition/metadata.json"),
        Stage("identities", "identities.yaml", (f"source.faces={r}/toyfaces", f"source.fr_model={r}/train/fr/export",
                                                f"output.path={r}/identities.parquet"), "identities.parquet"),
        Stage("mine", "mine.yaml", (f"input.identities={r}/identities.parquet", f"output.path={r}/mining"),
              "mining/mining.json"),
        Stage("plan", "plan.yaml", (f"input.identities={r}/identities.parquet", f"input.mining={r}/mining",
                                    f"output.path={r}/plan.parquet"), "plan.parquet"),
        Stage("generate", "generate.yaml", (
            f"input.plan={r}/plan.parquet", f"input.identities={r}/identities.parquet",
            f"model.generator={r}/train/generator/export", f"model.fr={r}/train/fr/export",
            f"output.path={r}/generated", f"pool.actors={demo.actors}"),
              "generated/demo/manifest.json"),
        Stage("evaluate", "evaluate.yaml", (f"data.path={r}/generated/demo", f"model.path={r}/train/fr/export",
                                            f"output.path={r}/report"), "report/report.md"),
    ]


def config_folder(demo: DemoSection) -> Path:
    if demo.configs:
        return Path(demo.configs)
    return Path(str(resources.files("synthface_ray") / "demo_jobs"))


def steps(demo: DemoSection, folder: Path) -> list[Step]:
    """The stages as pipeline steps (config files from ``folder``, done markers under the root)."""
    r = demo.root.rstrip("/")
    return [Step(s.command, str(folder / s.config), list(s.sets), f"{r}/{s.done}") for s in stages(demo)]


def _fresh(root: str) -> None:
    import shutil

    if storage.is_s3(root):
        raise config.ConfigError("demo.root must be a local folder")
    shutil.rmtree(root, ignore_errors=True)


def run(cfg: Config, dry_run: bool = False) -> int:
    demo, folder = cfg.demo, config_folder(cfg.demo)
    plan = stages(demo)
    if dry_run:
        print(f"# dry run of `synthface demo`: stage configs from {folder}; nothing is written")
        for s in plan:
            print(f"synthface {s.command} --config {folder / s.config} " + " ".join(f"--set {x}" for x in s.sets))
        return 0
    if demo.fresh:
        _fresh(demo.root)
    start = time.perf_counter()
    timings = run_steps(load_steps(steps(demo, folder), demo.root), None, "demo")
    total = time.perf_counter() - start
    r = demo.root.rstrip("/")
    print(f"\n== demo finished in {total / 60:.1f} min: " + ", ".join(f"{c} {t:.0f} s" for c, t in timings))
    print(f"dataset:  {r}/generated/demo (Parquet shards + manifest.json)\n"
          f"grids:    {r}/generated/demo/grid.png (generated), {r}/toyfaces/grid.png (real)\n"
          f"report:   {r}/report/report.md (+ metrics.json, histogram.png)\n"
          f"models:   {r}/train/fr/export, {r}/train/generator/export")
    return 0
