"""What ``synthface --help`` shows of each command, read without importing the command.

A command module (``commands/<name>.py``) defines ``Config`` and ``run(cfg, dry_run)``; its help
line, examples and flag shortcuts live here, so that ``synthface --help`` and
``synthface COMMAND --help`` build the parser from plain strings and import no torch, Ray, pandas
or pyarrow (under 1 s instead of 4-14 s). ``cli`` imports a command's module only to run it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType


@dataclass(frozen=True)
class Command:
    """One subcommand: the module that runs it and what its ``--help`` says."""

    module: str  # defines Config and run(cfg, dry_run)
    help: str
    examples: str
    shortcuts: Mapping[str, str] = field(default_factory=dict)  # flag -> config key, e.g. --out -> output.path
    positional: str | None = None  # the config key an optional positional PATH sets


#: command name -> Command, in the order `synthface --help` lists them
COMMANDS: dict[str, Command] = {
    "toyfaces": Command(
        module="synthface_ray.commands.toyfaces",
        help="render the embedded ToyFaces dataset (faces table + grid.png)",
        examples="""\
  synthface toyfaces                                    # 64 identities x 16 images -> runs/toyfaces
  synthface toyfaces --out s3://bucket/toyfaces --set toyfaces.identities=1000
  synthface toyfaces --out runs/unseen --set toyfaces.first_identity=100   # new people (a test set)
  synthface toyfaces --set toyfaces.resolution=64 --set toyfaces.difficulty=0.8 --dry-run""",
        shortcuts={"--out": "output.path"},
    ),
    "import": Command(
        module="synthface_ray.commands.importing",
        help="import image folders or insightface RecordIO (train.rec/.idx) into a faces table",
        examples="""\
  synthface import --format folders --from /data/casia --out runs/casia
  synthface import --format recordio --from s3://bucket/ms1m/train.rec --out s3://bucket/ms1m-faces
  synthface import --format folders --from imgs/ --out runs/faces --set input.resolution=32 --set input.strict=true""",
        shortcuts={"--format": "input.format", "--from": "input.path", "--out": "output.path"},
    ),
    "combine": Command(
        module="synthface_ray.commands.combine",
        help="combine faces datasets into one (e.g. real + synthetic for CASD / SDA generator training), "
             "each input's identities numbered apart and its source label set",
        examples="""\
  synthface combine --set 'combine.inputs=[{path: runs/toyfaces, source: 0}, {path: runs/generated/demo, source: 1}]' --out runs/real+syn
  synthface combine --config jobs/combine.yaml --dry-run        # the label offsets and columns, nothing written""",
        shortcuts={"--out": "output.path"},
    ),
    "export": Command(
        module="synthface_ray.commands.exporting",
        help="export a faces table as image folders or insightface RecordIO (train.rec + train.idx); "
             "add ONNX + insightface weights to an FR export, or diffusers pipeline files to a generator export",
        examples="""\
  synthface export --from runs/toyfaces --format recordio --out runs/toyfaces-rec
  synthface export --from s3://bucket/generated --format folders --out /data/synthetic
  synthface export --from runs/generated --format recordio --out runs/gen-rec --set output.relabel=true
  synthface export --from runs/train/fr/export --format onnx           # in place: model.onnx, insightface .pth
  synthface export --from runs/train/generator/export --format diffusers   # in place: a diffusers pipeline""",
        shortcuts={"--from": "input.path", "--format": "output.format", "--out": "output.path"},
    ),
    "inspect": Command(
        module="synthface_ray.commands.inspect",
        help="summarise a faces dataset: rows, identities, sources, schema, decodability",
        examples="""\
  synthface inspect runs/toyfaces
  synthface inspect s3://bucket/generated --set input.check_images=true""",
        shortcuts={"--from": "input.path"},
        positional="input.path",
    ),
    "train-generator": Command(
        module="synthface_ray.commands.train_generator",
        help="train the identity-conditioned diffusion generator (Ray Train + DeepSpeed)",
        examples="""\
  synthface train-generator --config jobs/train_generator.yaml      # ToyFaces, 2 CPU workers, ZeRO-2
  synthface train-generator --config jobs/train_generator.yaml --set optim.max_steps=50 --dry-run
  synthface train-generator --config jobs/train_generator_casia.yaml  # 8 GPUs, latent, bf16""",
        shortcuts={"--data": "data.path", "--name": "run.name"},
    ),
    "train-fr": Command(
        module="synthface_ray.commands.train_fr",
        help="train the FR model: IResNet + ArcFace/CosFace margin (Ray Train + DeepSpeed)",
        examples="""\
  synthface toyfaces --config jobs/toyfaces_fr.yaml                # 600 identities x 20 images
  synthface train-fr --config jobs/train_fr.yaml                   # 500 trained, 100 held out
  synthface train-fr --config jobs/train_fr.yaml --set optim.max_steps=50 --dry-run
  synthface train-fr --config jobs/train_fr.yaml --data runs/other --name fr-other""",
        shortcuts={"--data": "data.path", "--name": "run.name"},
    ),
    "embed": Command(
        module="synthface_ray.commands.embed",
        help="embed a labelled faces set with an FR backbone; write its class centres as identities",
        examples="""\
  synthface embed --model runs/fr/export --data runs/toyfaces --out runs/toyfaces-identities.parquet""",
        shortcuts={"--model": "model.path", "--data": "input.path", "--out": "output.path"},
    ),
    "verify": Command(
        module="synthface_ray.commands.verify",
        help="verification accuracy (10-fold), EER and TAR@FAR of an FR backbone",
        examples="""\
  synthface verify --model runs/fr/export --data runs/toyfaces-heldout      # pairs from its identities
  synthface verify --model runs/fr/export --data /data/lfw.bin --set output.path=runs/lfw.json""",
        shortcuts={"--model": "model.path", "--data": "input.path"},
    ),
    "identities": Command(
        module="synthface_ray.commands.identities",
        help="identity embeddings (random, PCA Gaussian, class centres, empty-context FR) + uniqueness filter",
        examples="""\
  synthface identities --config jobs/identities.yaml
  synthface identities --set source.kind=random --set source.count=100000 --set filter.tau=0.3 --out runs/ids.parquet
  synthface identities --set source.kind=pca_gaussian --set source.real=runs/real-centres.parquet --set filter.leakage_tau=0.4 --out runs/ids.parquet""",
        shortcuts={"--out": "output.path", "--kind": "source.kind"},
    ),
    "mine": Command(
        module="synthface_ray.commands.mine",
        help="mine ScoreMix pairs/m-plets and negative identities (faiss) -> mixes.parquet, negatives.parquet",
        examples="""\
  synthface mine --config jobs/mine.yaml
  synthface mine --identities runs/ids.parquet --out runs/mining --set pairs.count=500 --set negatives.strategy=far
  synthface mine --identities runs/centres.parquet --out runs/mining --set pairs.space=condition --set input.generator=runs/train/gen/export""",
        shortcuts={"--identities": "input.identities", "--out": "output.path"},
    ),
    "plan": Command(
        module="synthface_ray.commands.plan",
        help="build the generation plan (row_id, identity, mix, negative, per-row seed) -> plan.parquet",
        examples="""\
  synthface plan --identities runs/ids.parquet --mining runs/mining --out runs/plan.parquet --set plan.images_per_identity=20""",
        shortcuts={"--identities": "input.identities", "--mining": "input.mining", "--out": "output.path"},
    ),
    "cka": Command(
        module="synthface_ray.commands.cka",
        help="linear CKA between a generator's condition space and FR class centres",
        examples="""\
  synthface cka --generator runs/train/toyfaces-generator/export --identities runs/toyfaces-centres.parquet""",
        shortcuts={"--generator": "input.generator", "--identities": "input.identities"},
    ),
    "evaluate": Command(
        module="synthface_ray.commands.evaluate",
        help="identity separability (EER, FMR, FDR, d'), verification, diversity, uniqueness, leakage -> report",
        examples="""\
  synthface evaluate --data runs/generated --model runs/train/toyfaces-fr/export --out runs/eval
  synthface evaluate --config jobs/evaluate.yaml --set leakage.real=runs/real-centres.parquet --set leakage.tau=0.4""",
        shortcuts={"--data": "data.path", "--model": "model.path", "--out": "output.path"},
    ),
    "generate": Command(
        module="synthface_ray.commands.generate",
        help="generate the planned images on a Ray Data actor pool -> Parquet shards + manifest.json (resumable)",
        examples="""\
  synthface generate --config jobs/generate.yaml
  synthface generate --config jobs/generate.yaml --set output.path=s3://bucket/generated --set pool.actors=8
  synthface generate --plan runs/plan.parquet --generator runs/train/gen/export --set sampler.recipe=scoremix_cfg""",
        shortcuts={"--plan": "input.plan", "--generator": "model.generator", "--fr": "model.fr",
             "--out": "output.path", "--name": "output.name"},
    ),
    "tune": Command(
        module="synthface_ray.commands.tune",
        help="Ray Tune sweep of sampler/plan knobs (ASHA, Optuna) -> results, plots, best job YAML",
        examples="""\
  synthface tune --config tuning/demo_lambda_wmax.yaml
  synthface tune --config tuning/demo_lambda_wmax.yaml --set search.samples=16 --set output.path=s3://bucket/tune""",
        shortcuts={"--job": "job", "--out": "output.path", "--name": "output.name"},
    ),
    "benchmark": Command(
        module="synthface_ray.commands.benchmark",
        help="train FR on each training set (arm) x seeds, verify on unseen real identities: the utility benchmark",
        examples="""\
  synthface benchmark --config jobs/benchmark_toyfaces.yaml          # after `synthface demo` (make benchmark)
  synthface benchmark --config jobs/benchmark.yaml --set seeds=[0,1,2,3,4] --set resources.concurrent=4
  synthface benchmark --config jobs/benchmark_toyfaces.yaml --set output.path=s3://bucket/bench --dry-run""",
        shortcuts={"--out": "output.path", "--name": "output.name"},
    ),
    "demo": Command(
        module="synthface_ray.commands.demo",
        help="the main job on the embedded ToyFaces data: train FR + generator, mine, generate, evaluate, "
        "then train FR on the generated set and verify it on unseen real people",
        examples="""\
  synthface demo                                    # everything under runs/demo
  synthface demo --set demo.root=/tmp/demo --set demo.fresh=true
  synthface demo --dry-run                          # print the stages and their commands""",
        shortcuts={"--root": "demo.root"},
    ),
    "pipeline": Command(
        module="synthface_ray.commands.pipeline",
        help="run a chain of job files (train, mine, plan, generate, evaluate) in order; reuses finished steps",
        examples="""\
  synthface pipeline --config jobs/pipeline.yaml
  synthface pipeline --config jobs/pipeline.yaml --set pipeline.root=s3://bucket/run1
  synthface submit jobs/pipeline.yaml --address http://127.0.0.1:8265     # the whole chain as one Ray job""",
        shortcuts={"--root": "pipeline.root"},
    ),
    "papers": Command(
        module="synthface_ray.commands.papers",
        help="reproduce the method papers' central claims on the embedded data and judge each "
             "(holds / does not hold / within noise) in docs/PAPERS.md; resumable",
        examples="""\
  synthface papers --config jobs/papers/suite.yaml                        # make papers: everything, hours
  synthface papers --config jobs/papers/suite.yaml --set 'papers.only=[3, 4]'   # two claims (a session)
  synthface papers --config jobs/papers/suite.yaml --set papers.run=false       # only rewrite the report""",
        shortcuts={"--root": "papers.root"},
    ),
    "submit": Command(
        module="synthface_ray.commands.submit",
        help="submit a job file (jobs/*.yaml) to a Ray cluster through the Jobs API; stable id, resumable",
        examples="""\
  synthface submit jobs/generate.yaml --address http://127.0.0.1:8265
  synthface submit jobs/generate.yaml --address http://127.0.0.1:8265 --set submit.job_sets='["pool.actors=8"]'
  synthface submit jobs/train_fr.yaml --set submit.follow=true       # stream the logs until it ends""",
        shortcuts={"--address": "submit.address", "--working-dir": "submit.working_dir"},
        positional="submit.job",
    ),
}


def module(name: str) -> ModuleType:
    """The module that runs command ``name`` (imported now, not by ``--help``)."""
    return importlib.import_module(COMMANDS[name].module)


def config_types() -> dict[str, Callable[[], type]]:
    """Command name -> a function importing its module and returning its ``Config`` class (for
    code that loads job files, e.g. :func:`synthface_ray.ops.jobfile.load_job`)."""
    return {name: (lambda name=name: module(name).Config) for name in COMMANDS}
