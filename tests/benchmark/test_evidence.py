"""Where a claim's evidence lies (synthface_ray/benchmark/evidence.py); the archive end to end is
in tests/commands/test_papers.py."""

from __future__ import annotations

from synthface_ray.benchmark import evidence
from synthface_ray.benchmark.claims import ClaimSection, Comparison

CLAIM = ClaimSection(number=1, paper="P", statement="s", evidence="e.yaml", benchmark="{root}/bench",
                     evaluations={"a": "{root}/eval/a/", "b": "{root}/eval/b"},
                     comparisons=[Comparison("a", "b", "accuracy", "higher")])


def test_evidence_files_are_the_inputs_of_the_verdict():
    assert evidence.evidence_files(CLAIM.resolved("runs/x/")) == [
        "runs/x/bench/results.parquet", "runs/x/eval/a/metrics.json", "runs/x/eval/b/metrics.json"]


def test_only_claims_wholly_under_root_have_a_place_in_the_archive(tmp_path):
    assert evidence.archivable(CLAIM)
    outside = ClaimSection(**{**CLAIM.__dict__, "evaluations": {"a": "{root}/eval/a", "b": "/data/eval/b"}})
    assert not evidence.archivable(outside)
    here, kept = evidence.locate(outside, str(tmp_path / "run"), str(tmp_path / "kept"), None)
    assert kept is None and here.benchmark == f"{tmp_path}/run/bench"
    assert evidence.read_provenance(None) == {} == evidence.read_provenance(str(tmp_path / "none"))
