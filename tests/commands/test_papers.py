"""``synthface papers``: the shipped suite loads (every step of every file checked), bad suites
are refused before anything runs, and the report judges each claim from the evidence on disk
(real Parquet and metrics.json), listing claims without evidence as not run. The suite run end
to end on tiny data is in tests/commands/test_demo.py (on the demo's outputs)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from synthface_ray import cli, config
from synthface_ray.commands import papers


def test_the_shipped_suite_loads_every_step(capsys):
    assert cli.main(["papers", "--config", "jobs/papers/suite.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "upstream 8 steps" in out and "claim 4 (UIFace)" in out


CLAIM = {"claim": {"number": 7, "paper": "P", "statement": "new beats base",
                   "protocol": "two arms", "benchmark": "{root}/bench",
                   "evaluations": {"base": "{root}/eval/base", "new": "{root}/eval/new"},
                   "comparisons": [{"arm": "new", "than": "base", "metric": "accuracy", "expect": "higher"},
                                   {"arm": "new", "than": "base", "metric": "diversity_fr", "expect": "higher"}]},
         "steps": [{"command": "toyfaces", "set": ["output.path={root}/faces"], "done": "{root}/faces/manifest.json"}]}
UPSTREAM = {"pipeline": {"steps": [{"command": "toyfaces", "set": ["output.path={root}/up"],
                                    "done": "{root}/up/manifest.json"}]}}


def _suite(tmp_path, claim=CLAIM, **papers_section):
    (tmp_path / "up.yaml").write_text(yaml.safe_dump(UPSTREAM))
    (tmp_path / "claim.yaml").write_text(yaml.safe_dump(claim))
    section = {"root": str(tmp_path / "root"), "upstream": str(tmp_path / "up.yaml"),
               "claims": [str(tmp_path / "claim.yaml")], "report": str(tmp_path / "docs/PAPERS.md"),
               "plots": str(tmp_path / "docs/papers"), **papers_section}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"papers": section}))
    return str(path)


@pytest.mark.parametrize(("change", "message"), [
    ({"claims": []}, "papers.claims is empty"),
    ({"only": [3]}, r"papers.only names claim\(s\) \[3\]; the suite has \[7\]"),
    ({"overrides": {"trian-fr": ["a=1"]}}, r"unknown command\(s\) \['trian-fr'\]"),
])
def test_bad_suite_is_refused_before_anything_runs(tmp_path, change, message):
    cfg = config.load(papers.Config, _suite(tmp_path, **change))
    with pytest.raises(config.ConfigError, match=message):
        papers.run(cfg)
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize(("claim", "message"), [
    ({"steps": CLAIM["steps"]}, "has no claim section"),
    ({**CLAIM, "steps": [{"command": "toyfaces", "set": ["toyfaces.identites=3"]}]}, r"claim.yaml: .*steps\[0\]"),
    ({**CLAIM, "claim": {**CLAIM["claim"], "comparisons": [{"arm": "new", "than": "base", "metric": "fid"}]}},
     r"claim.yaml: .*metric"),
])
def test_a_bad_claim_file_is_named(tmp_path, claim, message):
    cfg = config.load(papers.Config, _suite(tmp_path, claim=claim))
    with pytest.raises(config.ConfigError, match=message):
        papers.run(cfg, dry_run=True)


def _evidence(root):
    rows = [{"arm": arm, "seed": s, "test_set": "unseen", "accuracy": acc, "eer": 1 - acc}
            for arm, accs in {"base": [0.90, 0.91, 0.92], "new": [0.93, 0.935, 0.95]}.items()
            for s, acc in enumerate(accs)]
    (root / "bench" / "plots").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "bench" / "results.parquet")
    (root / "bench" / "plots" / "accuracy_unseen.png").write_bytes(b"\x89PNG plot")
    for arm, values in {"base": [0.2, 0.3, 0.4], "new": [0.2, 0.31, 0.39]}.items():
        (root / "eval" / arm).mkdir(parents=True)
        per = {"diversity_fr": {str(i): v for i, v in enumerate(values)}}
        (root / "eval" / arm / "metrics.json").write_text(json.dumps({"per_identity": per}))


def test_report_judges_each_claim_from_the_evidence(tmp_path):
    root = tmp_path / "root"
    _evidence(root)
    cfg = config.load(papers.Config, _suite(tmp_path, run=False))
    assert papers.run(cfg) == 0
    text = (tmp_path / "docs/PAPERS.md").read_text()
    assert "| 7 | P | new beats base | **partly holds** |" in text  # accuracy holds, diversity within noise
    assert "**holds**" in text and "**within noise**" in text and "3 identities" in text
    assert "![benchmark accuracy" in text and (tmp_path / "docs/papers/claim7_accuracy.png").exists()
    assert not (root / "faces").exists()  # run: false ran no step


def test_claims_without_evidence_are_listed_as_not_run(tmp_path):
    cfg = config.load(papers.Config, _suite(tmp_path, run=False))
    papers.run(cfg)
    assert "| 7 | P | new beats base | **not run** |" in (tmp_path / "docs/PAPERS.md").read_text()
