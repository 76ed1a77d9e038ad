"""The two sets of job files agree where they should (issue 23, item 5).

``jobs/*.yaml`` are the reference templates a user copies; ``synthface_ray/demo_jobs/*.yaml`` are the
configs `synthface demo` runs (shipped in the package, so not derived from ``jobs/`` at run time).
For every file name in both, the two resolve (through the command's config type, defaults filled
in) to the same values, except where a difference is declared below with why. A change to one file
that is not carried to the other, or declared here, fails this test by naming the key.
"""

from __future__ import annotations

import pathlib
import re

import pytest

from synthface_ray import cli, config

ROOT = pathlib.Path(__file__).parent.parent
JOBS, DEMO = ROOT / "jobs", ROOT / "synthface_ray" / "demo_jobs"

# Keys that may differ in every file: where a job reads and writes (the demo lives under runs/demo/,
# the templates under runs/ or s3://), and whether it may replace its output (the demo re-runs).
WHERE = re.compile(r"^(input\..*|output\.(path|name|overwrite)|data\.path|model\.(path|generator|fr)"
                   r"|run\.(storage_path|name)|train\.config|test\.sets|source\.real)$")

# Per file, the keys whose values differ on purpose, and why.
DECLARED: dict[str, dict[str, str]] = {
    "benchmark.yaml": {
        "arms": "the template compares real, synthetic and both on S3; the demo its one generated set",
        "seeds": "the demo measures one seed to stay within 15 minutes; a verdict needs three",
        "resources.concurrent": "the demo's 2 cores",
        "resources.cpus": "the demo's 2 cores",
        "train.set": "the demo trains its FR arms smaller (workers, micro-batch) to fit 2 cores",
    },
    "evaluate.yaml": {
        "verification.genuine": "fewer pairs for the demo's few identities",
        "verification.impostor": "fewer pairs for the demo's few identities",
    },
    "generate.yaml": {
        "sampler.recipe": "the template shows the full composite (ScoreMix + AdaptDiff + UIFace); the demo "
                          "ScoreMix + CFG, measured better for its generator (docs/BENCHMARKS.md, issue 19)",
        "sampler.solver": "Heun 18 in the template; DDIM 10 keeps the demo within its time",
        "sampler.steps": "Heun 18 in the template; DDIM 10 keeps the demo within its time",
        "sampler.negative": "the template's recipe has AdaptDiff's negative; the demo draws without it (issue 19, "
                            "eighth round)",
        "sampler.two_stage": "the template's recipe has UIFace's two stages; the demo's none",
        "grid.images": "the demo's plan draws 4 images per person, its grid shows them all",
        "grid.mixes": "the demo's grid shows more of its 16 mixes",
        "output.rows_per_file": "the demo's few hundred rows still make several shards (resume is visible)",
        "pool.actors": "the template runs one actor anywhere; the demo two, one per core",
    },
    "identities.yaml": {
        "source.kind": "the template draws random unit vectors; the demo new people near its real centres "
                       "(PCA-Gaussian), which its embedding-conditioned generator can draw",
        "source.count": "candidates for the demo's ~50 identities",
        "source.id_offset": "demo ids start at 1000, apart from the real people's labels",
        "filter.tau": "0.3 suits random vectors; the demo's PCA-Gaussian people need 0.5 to keep enough",
        "filter.leakage_tau": "the demo checks its new people against the real centres it drew them from",
    },
    "mine.yaml": {"pairs.count": "16 ScoreMix pairs for the demo's ~50 identities"},
    "plan.yaml": {
        "plan.images_per_identity": "the demo's size",
        "plan.images_per_mix": "the demo's size",
    },
    "toyfaces.yaml": {
        "toyfaces.identities": "the demo renders 100 people for its generator; the template 64",
        "toyfaces.images_per_identity": "the demo's generator sees 20 per person",
        "toyfaces.difficulty": "0.3: the demo's tiny generator learns the faces in its 15 minutes",
    },
    "train_fr.yaml": {
        "backbone.width": "the demo's FR model is half as wide, to fit its time",
        "holdout.identities": "the demo holds out 20 of its 100 people",
        "optim.max_steps": "the demo's time",
        "optim.milestones": "at the same fractions of the demo's steps",
        "run.checkpoint_every": "one checkpoint, at the end, in the demo",
        "run.keep_checkpoints": "one checkpoint in the demo",
        "run.report_every": "the demo's shorter run",
    },
    "train_generator.yaml": {
        "data.label_embeddings": "the demo's generator is conditioned on FR embeddings; the centres give previews",
        "data.context_fr_model": "the demo conditions each image on its own FR embedding (issue 19, eighth round)",
        "generator.condition": "class table in the template (ScoreMix's generator); embedding in the demo "
                               "(new people, issue 19)",
        "generator.num_identities": "the template's 64 people (class condition only)",
        "optim.lr": "the demo's shorter run, batch 32 (measured, issue 19)",
        "optim.micro_batch": "16 per worker in the demo: more steps per minute on 2 cores",
        "optim.warmup_steps": "the demo's batch",
        "optim.max_steps": "the demo's time",
        "ema.decay": "a short EMA memory for the demo's shorter run",
        "preview.every": "two grids in the demo",
        "preview.images": "the demo's grid",
        "run.checkpoint_every": "one checkpoint, at the end, in the demo",
        "run.keep_checkpoints": "one checkpoint in the demo",
        "run.report_every": "the demo's shorter run",
    },
}


def _command(path: pathlib.Path) -> str:
    return re.match(r"# synthface (\S+) --config", path.read_text().splitlines()[0]).group(1)


def _flat(obj, prefix: str = "") -> dict[str, object]:
    if isinstance(obj, dict) and obj:
        out: dict[str, object] = {}
        for key, value in obj.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: obj}


def _resolved(path: pathlib.Path) -> dict[str, object]:
    cls = cli._module(_command(path)).Config
    return _flat(config.to_dict(config.load(cls, str(path))))


def _declared(name: str, key: str) -> bool:
    return bool(WHERE.match(key)) or any(key == d or key.startswith(d + ".") for d in DECLARED.get(name, {}))


SHARED = sorted(p.name for p in DEMO.glob("*.yaml") if (JOBS / p.name).exists())


def test_the_shared_job_files_are_the_ones_declared():
    assert SHARED == sorted(DECLARED), "a job file is in both folders without declared differences (or gone)"


@pytest.mark.parametrize("name", SHARED)
def test_demo_and_template_agree_except_where_declared(name):
    template, demo = JOBS / name, DEMO / name
    assert _command(template) == _command(demo)
    a, b = _resolved(template), _resolved(demo)
    drift = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and not _declared(name, k)}
    assert not drift, (f"jobs/{name} and synthface_ray/demo_jobs/{name} differ in {drift} (template, demo): "
                       "carry the change to both files, or declare the difference and why in tests/test_job_files.py")


@pytest.mark.parametrize("name", SHARED)
def test_every_declared_difference_is_one(name):
    """A declared difference the files no longer have is stale: remove it, so the list stays true."""
    a, b = _resolved(JOBS / name), _resolved(DEMO / name)
    for key in DECLARED[name]:
        differs = [k for k in set(a) | set(b) if (k == key or k.startswith(key + ".")) and a.get(k) != b.get(k)]
        assert differs, f"{name}: {key} is declared different but both files resolve it the same"
