"""``synthface demo`` chains every stage on one local Ray, the verdict (FR trained on the
generated set vs as many real images, verified on unseen people) last; here with the shipped
stage configs shrunk to seconds (tiny ToyFaces, a few training steps), then resumed with every
stage reused."""

from __future__ import annotations

import shutil

import pytest
import yaml

from synthface_ray import cli
from synthface_ray.commands import demo

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
    assert cli.main(argv) == 0  # a re-run reuses every complete stage
    assert capsys.readouterr().out.count("complete, reused") == len(demo.stages(demo.DemoSection()))
