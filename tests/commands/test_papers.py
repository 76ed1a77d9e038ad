"""``synthface papers``: the shipped suite loads (every step of every file checked), bad suites
are refused before anything runs, and the report judges each claim from the evidence on disk
(real Parquet and metrics.json), listing claims without evidence as not run. The suite run end
to end on tiny data is in tests/commands/test_demo.py (on the demo's outputs)."""

from __future__ import annotations

import json
import shutil

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


CLAIM = {"number": 7, "paper": "P", "statement": "new beats base", "protocol": "two arms",
         "evidence": "EVIDENCE", "benchmark": "{root}/bench",
         "evaluations": {"base": "{root}/eval/base", "new": "{root}/eval/new"},
         "comparisons": [{"arm": "new", "than": "base", "metric": "accuracy", "expect": "higher"},
                         {"arm": "new", "than": "base", "metric": "diversity_fr", "expect": "higher"}]}
EVIDENCE = {"pipeline": {"steps": [{"command": "toyfaces", "set": ["output.path={root}/faces"],
                                    "done": "{root}/faces/manifest.json"}]}}
UPSTREAM = {"pipeline": {"steps": [{"command": "toyfaces", "set": ["output.path={root}/up"],
                                    "done": "{root}/up/manifest.json"}]}}


def _suite(tmp_path, claims=None, evidence=EVIDENCE, **papers_section):
    (tmp_path / "up.yaml").write_text(yaml.safe_dump(UPSTREAM))
    (tmp_path / "evidence.yaml").write_text(yaml.safe_dump(evidence))
    claims = [{**CLAIM, "evidence": str(tmp_path / "evidence.yaml")}] if claims is None else claims
    section = {"root": str(tmp_path / "root"), "upstream": str(tmp_path / "up.yaml"), "claims": claims,
               "report": str(tmp_path / "docs/PAPERS.md"), "plots": str(tmp_path / "docs/papers"), **papers_section}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"papers": section}))
    return str(path)


def test_bad_suite_is_refused_before_anything_runs(tmp_path):
    cfg = config.load(papers.Config, _suite(tmp_path, claims=[]))
    with pytest.raises(config.ConfigError, match="papers.claims is empty"):
        papers.run(cfg)
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"only": [3]}, r"papers.only names claim\(s\) \[3\]; the suite has \[7\]"),
    ({"overrides": {"trian-fr": ["a=1"]}}, r"unknown command\(s\) \['trian-fr'\]"),
    ({"claims": [{**CLAIM, "comparisons": [{"arm": "new", "than": "base", "metric": "fid"}]}]}, "metric"),
    ({"claims": [{**CLAIM, "evidence": ""}]}, "evidence"),
])
def test_bad_suite_config_is_named(tmp_path, change, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load(papers.Config, _suite(tmp_path, **change))


def test_a_bad_evidence_step_is_named_with_its_file(tmp_path):
    bad = {"pipeline": {"steps": [{"command": "toyfaces", "set": ["toyfaces.identites=3"]}]}}
    cfg = config.load(papers.Config, _suite(tmp_path, evidence=bad))
    with pytest.raises(config.ConfigError, match=r"evidence.yaml: .*steps\[0\]"):
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


def test_only_runs_the_evidence_of_the_chosen_claims_and_a_rerun_reuses_it(tmp_path, capsys):
    tiny = ["toyfaces.identities=3", "toyfaces.images_per_identity=2", "toyfaces.resolution=16",
            "grid.enabled=false"]
    other = {"pipeline": {"steps": [{"command": "toyfaces", "set": ["output.path={root}/other"],
                                     "done": "{root}/other/manifest.json"}]}}
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    claims = [{**CLAIM, "evidence": str(tmp_path / "evidence.yaml")},
              {**CLAIM, "number": 8, "evidence": str(tmp_path / "other.yaml")}]
    cfg = config.load(papers.Config, _suite(tmp_path, claims=claims, only=[7], overrides={"toyfaces": tiny}))
    assert papers.run(cfg) == 0
    root = tmp_path / "root"
    assert (root / "up" / "manifest.json").exists() and (root / "faces" / "manifest.json").exists()
    assert not (root / "other").exists()
    timings = json.loads((root / papers.TIMINGS).read_text())
    assert set(timings) == {"upstream", str(tmp_path / "evidence.yaml")}
    capsys.readouterr()
    assert papers.run(cfg) == 0
    assert capsys.readouterr().out.count("complete, reused") == 2
    assert "| 8 | P | new beats base | **not run** |" in (tmp_path / "docs/PAPERS.md").read_text()


def test_arms_named_in_also_are_shown_without_a_comparison(tmp_path):
    _evidence(tmp_path / "root")
    claims = [{**CLAIM, "evidence": str(tmp_path / "evidence.yaml"), "also": ["base-old"]}]
    cfg = config.load(papers.Config, _suite(tmp_path, claims=claims, run=False))
    papers.run(cfg)
    text = (tmp_path / "docs/PAPERS.md").read_text()
    assert "| base-old | - | - |" in text and "base-old higher" not in text


def test_a_claims_reading_is_printed_under_its_tables_and_only_its_own(tmp_path):
    _evidence(tmp_path / "root")
    reading = "new is better on accuracy,\n  as the paper says."
    claims = [{**CLAIM, "evidence": str(tmp_path / "evidence.yaml"), "reading": reading},
              {**CLAIM, "number": 8, "evidence": str(tmp_path / "evidence.yaml")}]
    papers.run(config.load(papers.Config, _suite(tmp_path, claims=claims, run=False)))
    text = (tmp_path / "docs/PAPERS.md").read_text()
    seven, eight = text.split("## Claim 8")
    assert "**Reading.** new is better on accuracy, as the paper says." in seven.split("## Claim 7")[1]
    assert "**Reading.**" not in eight


def test_a_failed_evidence_pipeline_keeps_the_time_of_its_finished_steps(tmp_path):
    tiny = ["toyfaces.identities=3", "toyfaces.images_per_identity=2", "toyfaces.resolution=16",
            "grid.enabled=false"]
    twice = {"pipeline": {"steps": [*EVIDENCE["pipeline"]["steps"],
                                    {"command": "toyfaces", "set": ["output.path={root}/faces"]}]}}
    cfg = config.load(papers.Config, _suite(tmp_path, evidence=twice, overrides={"toyfaces": tiny}))
    with pytest.raises(Exception, match="already holds a complete dataset"):  # step 2 refuses step 1's output
        papers.run(cfg)
    timings = json.loads((tmp_path / "root" / papers.TIMINGS).read_text())
    assert set(timings) == {"upstream", str(tmp_path / "evidence.yaml")}
    assert list(timings[str(tmp_path / "evidence.yaml")]) == ["1 toyfaces"]  # step 2 failed: not kept
    assert timings[str(tmp_path / "evidence.yaml")]["1 toyfaces"] > 0


def test_a_partial_rerun_neither_adds_to_a_pipelines_time_nor_shrinks_it(tmp_path):
    """Times are kept per step, a step run again keeps its longest: claim 3's one redrawn arm
    (generate, evaluate, the benchmark's 3 trials of 18) leaves the pipeline's full time."""
    cfg = config.load(papers.Config, _suite(tmp_path, run=False))
    record = papers._recorder(cfg, "jobs/papers/sampling.yaml")
    for index, command, seconds in [(1, "generate", 300.0), (2, "benchmark", 2400.0),  # the full run
                                    (1, "generate", 310.0), (2, "benchmark", 420.0)]:  # one arm redrawn
        record(index, command, seconds)
    assert papers._timings(cfg)["jobs/papers/sampling.yaml"] == 310.0 + 2400.0
    loc = tmp_path / "root" / papers.TIMINGS
    loc.write_text(json.dumps({"upstream": 1268.5}))  # a total, as kept before per-step times
    papers._recorder(cfg, "upstream")(3, "train-generator", 20.0)
    assert json.loads(loc.read_text())["upstream"] == {"earlier runs": 1268.5, "3 train-generator": 20.0}
    assert papers._timings(cfg) == {"upstream": 1288.5}


def test_evidence_is_kept_in_the_archive_and_judged_from_it_on_the_next_machine(tmp_path, capsys):
    """papers.archive: after a run the files each verdict comes from are copied (one folder per
    claim, mirroring the run folder) with when and at which commit; on a machine without the run
    folder the report judges the claim from them alike and says so; a run holding fewer of a
    claim's files (one it shares with another claim) neither judges it nor replaces its archive;
    a run holding all of them does both."""
    root, archive = tmp_path / "root", tmp_path / "kept"
    _evidence(root)
    cfg = config.load(papers.Config, _suite(tmp_path, run=False, archive=str(archive)))
    assert papers.run(cfg) == 0
    assert "evidence of claim(s) [7] kept in" in capsys.readouterr().out
    first = (tmp_path / "docs/PAPERS.md").read_text()
    kept = archive / "claim7"
    assert (kept / "bench/results.parquet").exists() and (kept / "eval/new/metrics.json").exists()
    assert not (kept / "bench/plots").exists()  # data only: the figures live beside the report
    stamp = json.loads((archive / "provenance.json").read_text())["7"]
    assert stamp["commit"] and stamp["archived"].endswith("UTC")

    shutil.rmtree(root)  # the next machine: no run folder
    assert papers.run(cfg) == 0
    text = (tmp_path / "docs/PAPERS.md").read_text()
    assert "| 7 | P | new beats base | **partly holds** |" in text and "Not re-measured in this run" in text
    assert text.count("![") == first.count("![") > 0  # the figures copied before are linked again
    assert "evidence of claim(s)" not in capsys.readouterr().out  # nothing new to keep

    (root / "eval" / "base").mkdir(parents=True)  # another claim's run re-made a file this one shares
    (root / "eval" / "base" / "metrics.json").write_text(json.dumps({"per_identity": {"diversity_fr": {"0": 0.1}}}))
    assert papers.run(cfg) == 0
    assert "| 7 | P | new beats base | **partly holds** |" in (tmp_path / "docs/PAPERS.md").read_text()
    assert json.loads((kept / "eval/base/metrics.json").read_text())["per_identity"]["diversity_fr"] == {
        "0": 0.2, "1": 0.3, "2": 0.4}  # the archive kept its own

    shutil.rmtree(root)
    _evidence(root)  # a full re-run of the claim replaces its archive
    (root / "eval" / "new" / "metrics.json").write_text(json.dumps({"per_identity": {"diversity_fr": {"0": 0.9}}}))
    assert papers.run(cfg) == 0
    assert json.loads((kept / "eval/new/metrics.json").read_text())["per_identity"]["diversity_fr"] == {"0": 0.9}


def test_a_run_folder_that_outlived_its_session_keeps_the_archived_provenance(tmp_path, capsys):
    """A machine that kept the run folder: a report-only run finds the same files as the archive;
    it neither re-stamps the claim (its measurement time and commit stay) nor judges it as measured
    in this run; a changed file is a new measurement again."""
    root, archive = tmp_path / "root", tmp_path / "kept"
    _evidence(root)
    cfg = config.load(papers.Config, _suite(tmp_path, run=False, archive=str(archive)))
    assert papers.run(cfg) == 0
    provenance = archive / "provenance.json"
    stamp = json.loads(provenance.read_text())["7"]
    provenance.write_text(json.dumps({"7": {**stamp, "archived": "2026-01-01 00:00 UTC"}}))
    capsys.readouterr()
    assert papers.run(cfg) == 0  # the same run folder, later
    assert "evidence of claim(s)" not in capsys.readouterr().out
    assert json.loads(provenance.read_text())["7"]["archived"] == "2026-01-01 00:00 UTC"
    assert "measured 2026-01-01 00:00 UTC" in (tmp_path / "docs/PAPERS.md").read_text()
    (root / "eval" / "new" / "metrics.json").write_text(json.dumps({"per_identity": {"diversity_fr": {"0": 0.9}}}))
    assert papers.run(cfg) == 0
    assert "evidence of claim(s) [7] kept in" in capsys.readouterr().out
    assert json.loads(provenance.read_text())["7"]["archived"] != "2026-01-01 00:00 UTC"
    assert "Not re-measured in this run" not in (tmp_path / "docs/PAPERS.md").read_text()


def test_a_claim_with_evidence_outside_root_is_not_archived(tmp_path):
    _evidence(tmp_path / "root")
    claims = [{**CLAIM, "evidence": str(tmp_path / "evidence.yaml"), "benchmark": str(tmp_path / "root" / "bench"),
               "comparisons": CLAIM["comparisons"][:1]}]
    cfg = config.load(papers.Config, _suite(tmp_path, claims=claims, run=False, archive=str(tmp_path / "kept")))
    assert papers.run(cfg) == 0
    assert not (tmp_path / "kept").exists()
    assert "**holds**" in (tmp_path / "docs/PAPERS.md").read_text()
