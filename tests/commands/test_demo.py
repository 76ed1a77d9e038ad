"""``synthface demo`` chains every stage on one local Ray, the verdict (FR trained on the
generated set vs as many real images, verified on unseen people) last; here with the shipped
stage configs shrunk to seconds (tiny ToyFaces, a few training steps), then resumed with every
stage reused."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest
import yaml

from synthface_ray import cli
from synthface_ray.commands import common, demo

pytestmark = pytest.mark.slow

TINY = {
    "toyfaces.yaml": {"toyfaces": {"identities": 12, "images_per_identity": 6, "resolution": 16}},
    "train_fr.yaml": {"holdout": {"identities": 4, "genuine": 20, "impostor": 20, "folds": 2},
                      "backbone": {"input_size": 32, "width": 4, "embedding_dim": 16},
                      "optim": {"max_steps": 4, "milestones": [2], "micro_batch": 8},
                      "run": {"report_every": 2, "checkpoint_every": 4}},
    "train_generator.yaml": {"generator": {"sample_size": 16, "block_out_channels": [8, 16],
                                           "cross_attention_levels": [False, True], "embedding_dim": 16},
                             "optim": {"max_steps": 4, "micro_batch": 8, "warmup_steps": 1},
                             "run": {"report_every": 2, "checkpoint_every": 4}, "preview": {"every": 0}},
    # an FR model trained 4 steps separates nothing: no uniqueness or leakage filter; 8 new people, as
    # the verdict's real arm needs as many real identities (12) as the generated set has classes
    "identities.yaml": {"source": {"count": 8}, "filter": {"tau": None, "leakage_tau": None}},
    "mine.yaml": {"pairs": {"count": 2}},
    "plan.yaml": {"plan": {"images_per_mix": 0}},
    "generate.yaml": {"sampler": {"steps": 2}, "output": {"rows_per_file": 8}},
    "evaluate.yaml": {"verification": {"genuine": 10, "impostor": 10, "folds": 2}},
    "toyfaces_unseen.yaml": {"toyfaces": {"identities": 5, "images_per_identity": 4, "resolution": 16}},
    "benchmark.yaml": {"train": {"set": {"scaling.num_workers": 1, "optim.micro_batch": 8}},
                       "test": {"genuine": 20, "impostor": 20, "folds": 2}},
}


def _merge(base: dict, over: dict) -> dict:
    for key, value in over.items():
        base[key] = _merge(dict(base.get(key) or {}), value) if isinstance(value, dict) else value
    return base


@pytest.fixture
def tiny_configs(tmp_path):
    folder = tmp_path / "configs"
    shutil.copytree(demo.config_folder(demo.DemoSection()), folder)
    for name, over in TINY.items():
        path = folder / name
        path.write_text(yaml.safe_dump(_merge(yaml.safe_load(path.read_text()), over)))
    return folder


def _every_output_says_its_config(root):
    """Each output folder holds config.yaml, a single-file output its config in its metadata,
    and either re-runs its job through --config (issue 22)."""
    folders = {"toyfaces": "toyfaces", "train/fr": "train-fr", "train/generator": "train-generator",
               "mining": "mine", "generated/demo": "generate", "report": "evaluate",
               "verdict/demo": "benchmark"}
    for folder, command in folders.items():
        text = (root / folder / "config.yaml").read_text()
        assert f"`synthface {command}`" in text.splitlines()[0], folder
        assert cli._module(command).Config and yaml.safe_load(text), folder
    for name in ("centres.parquet", "identities.parquet", "plan.parquet"):
        meta = pq.read_schema(root / name).metadata[common.CONFIG_METADATA_KEY].decode()
        assert meta.startswith("# resolved config of `synthface ") and "output:" in meta, name
        assert yaml.safe_load(meta)["output"]["path"] == str(root / name)


def test_demo_runs_every_stage_then_reuses_them(ray_local, tiny_configs, tmp_path, capsys):
    root = tmp_path / "demo"
    argv = ["demo", "--root", str(root), "--set", f"demo.configs={tiny_configs}", "--set", "demo.actors=1"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    for stage in demo.stages(demo.DemoSection(root=str(root))):
        assert (root / stage.done).exists(), stage.command
    assert f"dataset:  {root}/generated/demo" in out and "report.md" in out
    assert "== verdict: FR trained on" in out and "trained on generated" in out and "proxy (the generated set" in out
    assert (root / "generated" / "demo" / "grid.png").exists()
    _every_output_says_its_config(root)
    assert cli.main(argv) == 0  # a re-run reuses every complete stage
    assert capsys.readouterr().out.count("complete, reused") == len(demo.stages(demo.DemoSection()))
    _papers_suite_on_the_demo(root, tiny_configs, tmp_path, capsys)


def _papers_suite_on_the_demo(root, configs, tmp_path, capsys):
    """``synthface papers`` end to end, tiny: a claim comparing the demo's set (ScoreMix + CFG 1)
    with a plain conditional set drawn on the same plan; its steps generate and evaluate for real,
    its accuracy comes from the demo's own verdict benchmark (real results.parquet, one seed: noise
    unknown; a benchmark step in the evidence would only re-train what the demo test just trained),
    and the report judges it (diversity paired by identity)."""
    r = str(root)
    gen = [f"input.plan={r}/plan.parquet", f"input.identities={r}/identities.parquet",
           f"model.generator={r}/train/generator/export", f"model.fr={r}/train/fr/export",
           f"output.path={r}/generated", "output.name=plain", "sampler.cfg_scale=0.0",
           "sampler.negative.w_max=0.0", "pool.actors=1"]
    claim = {"number": 1, "paper": "demo", "statement": "plain sampling is more diverse", "protocol": "tiny",
             "evidence": str(tmp_path / "evidence.yaml"), "benchmark": "{root}/verdict/demo",
             "evaluations": {"demo": "{root}/report", "plain": "{root}/eval-plain"},
             "comparisons": [{"arm": "plain", "than": "demo", "metric": "diversity_fr", "expect": "higher"},
                             {"arm": "synthetic", "than": "real", "metric": "accuracy", "expect": "no_worse"}]}
    evidence = {"pipeline": {"steps": [
        {"command": "generate", "config": str(configs / "generate.yaml"), "set": gen,
         "done": "{root}/generated/plain/manifest.json"},
        {"command": "evaluate", "config": str(configs / "evaluate.yaml"),
         "set": [f"data.path={r}/generated/plain", f"model.path={r}/train/fr/export", f"output.path={r}/eval-plain"],
         "done": "{root}/eval-plain/report.md"}]}}
    upstream = {"pipeline": {"steps": [{"command": "toyfaces", "config": str(configs / "toyfaces.yaml"),
                                        "set": [f"output.path={r}/toyfaces"], "done": "{root}/toyfaces/manifest.json"}]}}
    (tmp_path / "evidence.yaml").write_text(yaml.safe_dump(evidence))
    (tmp_path / "upstream.yaml").write_text(yaml.safe_dump(upstream))
    suite = {"papers": {"root": r, "upstream": str(tmp_path / "upstream.yaml"), "claims": [claim],
                        "report": str(tmp_path / "PAPERS.md"), "plots": str(tmp_path / "plots")}}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    report = tmp_path / "PAPERS.md"
    assert cli.main(["papers", "--config", str(tmp_path / "suite.yaml")]) == 0
    assert "complete, reused" in capsys.readouterr().out  # the upstream (the demo's ToyFaces)
    text = report.read_text()
    assert "| 1 | demo | plain sampling is more diverse |" in text and "identities |" in text
    assert "noise unknown" in text  # accuracy from one seed
    assert (tmp_path / "plots" / "claim1_accuracy.png").exists() and (tmp_path / "plots" / "claim1_plain_grid.png").exists()


@pytest.mark.parametrize("gap, says", [("0.81", "closes 0.81 of the gap"), ("", "no gap to close")])
def test_verdict_lines_say_an_undefined_gap_plainly(tmp_path, gap, says):
    """summary.csv leaves gap_closed empty when real training is no better than untrained (a
    tiny run can tie them): the verdict says so instead of failing on the format."""
    (tmp_path / "verdict" / "demo").mkdir(parents=True)
    (tmp_path / "report").mkdir()
    head = "arm,train_images,train_identities,accuracy_mean,eer_mean,tar_far_1e3_mean,gap_closed\n"
    rows = [f"synthetic,280,70,0.9,0.1,0.5,{gap}", "real,280,70,0.95,0.05,0.7,1.0", "random_init,0,0,0.7,0.3,0.1,0.0"]
    (tmp_path / "verdict" / "demo" / "summary.csv").write_text(head + "\n".join(rows) + "\n")
    (tmp_path / "report" / "metrics.json").write_text(
        '{"separability": {"eer": 0.02}, "verification": {"accuracy": 0.98}}')
    text = "\n".join(demo.verdict_lines(str(tmp_path)))
    assert says in text and "trained on generated" in text and "proxy" in text
