"""Smoke test of benchmarks/gpu.py (issue 24) in its CPU dry mode: the whole script once, in a
subprocess as the device runs it, and its report checked section by section (a table with
numbers in each, the faiss kept count exact, no error line); plus the guard that turns a failing
section into one error line and goes on with the next."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from synthface_ray.sampling.recipes import RECIPES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu.py"
HEADERS = {"train": "## 1. ", "sampler": "## 2. ", "pipeline": "## 3. ", "faiss": "## 4. ",
           "projection": "## 5. "}


@pytest.fixture(scope="module")
def dry(tmp_path_factory) -> tuple[subprocess.CompletedProcess, str]:
    out = tmp_path_factory.mktemp("gpu-dry") / "report.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return done, out.read_text()


def section(report: str, name: str) -> str:
    """The text of one section (its header to the next one)."""
    start = report.index(HEADERS[name])
    ends = [report.index(h) for h in HEADERS.values() if h in report and report.index(h) > start]
    return report[start:min(ends, default=report.index("**done**"))]


def table(text: str) -> list[dict[str, str]]:
    """The rows of the first markdown table in ``text``, keyed by header."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert len(lines) >= 3, f"no table in:\n{text}"
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return [dict(zip(cells[0], row, strict=True)) for row in cells[2:]]


def positive(cell: str) -> float:
    value = float(cell.replace(",", "").split()[0])
    assert value > 0, cell
    return value


def test_the_dry_run_completes_every_section(dry):
    done, report = dry
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "**ERROR**" not in done.stdout + report and "**SKIPPED**" not in report
    assert "every section completed" in report
    first = report.splitlines()[0]
    assert first.startswith("**machine:**") and "torch " in first and "CPUs" in first
    assert "precision bf16" in report
    for name in HEADERS:
        assert re.search(rf"_section {name}: \d+\.\d s; total", section(report, name)), name
    assert set(report.splitlines()) <= set(done.stdout.splitlines())  # the file is what it printed


def test_training_and_sampler_figures(dry):
    report = dry[1]
    (tiny,) = table(section(report, "train"))
    assert tiny["model"] == "tiny" and tiny["batch"] == "4" and tiny["parameters"].endswith("M")
    assert positive(tiny["images/s"]) == pytest.approx(positive(tiny["steps/s"]) * 4, rel=0.015)
    rows = {r["recipe"]: r for r in table(section(report, "sampler"))}
    assert set(rows) == set(RECIPES)
    for row in rows.values():
        positive(row["NFE/image"])
        for batch in ("batch 4", "batch 8"):
            rate, ratio = re.fullmatch(r"(\S+) \((\S+)\)", row[batch]).groups()
            positive(rate), positive(ratio)
    assert rows["casd"]["solver"] == "heun"


def test_pipeline_faiss_and_projection_figures(dry):
    report = dry[1]
    runs = table(section(report, "pipeline"))
    assert [r["run"].split(" x ")[0] for r in runs] == [
        "bare loop (one process, no Ray)", "pipeline, 2 actor(s)"]
    for r in runs:
        positive(r["images/s end to end"]), positive(r["ratio to bare"])
    assert "2 generator actor(s)" in runs[1]["pool"]
    (faiss,) = table(section(report, "faiss"))
    assert faiss["rows x dim"] == "2,000 x 512" and faiss["kept"] == faiss["expected kept"] == "1800"
    assert faiss["rejected"] == "200" and positive(faiss["wall s"]) < 60
    projection = {r["recipe"]: r for r in table(section(report, "projection"))}
    assert set(projection) == set(RECIPES)
    for r in projection.values():
        positive(r["CPU process-hours per 1M images"]), positive(r["images/s"])
        assert r["best batch"] in ("4", "8") and r["vs DCFace"].endswith("x")


def test_a_failing_section_is_one_error_line_and_the_next_runs(monkeypatch, capsys):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script adds benchmarks/ to it
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    gpu = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, gpu)  # its dataclasses look their module up there
    spec.loader.exec_module(gpu)

    def broken(run):
        raise RuntimeError("injected\nfailure")

    def slow(run):
        import time

        time.sleep(30)

    monkeypatch.setitem(gpu.SECTIONS, "train", ("1. broken", broken))
    monkeypatch.setitem(gpu.SECTIONS, "sampler", ("2. slow", slow))
    # the slow section gets 2-4 s (what the projection's 26 s share leaves of 30 s), then times out
    sizes = gpu._replace(gpu.DRY, budget_s=30.0, shares={**gpu.DRY.shares, "sampler": 2.0, "projection": 26.0})
    monkeypatch.setattr(gpu, "DRY", sizes)
    assert gpu.main(["--dry", "--sections", "train,sampler,projection"]) == 1
    out = capsys.readouterr().out
    assert "**ERROR** section train: RuntimeError: injected failure" in out
    assert "**ERROR** section sampler: SectionTimeout: ran past its" in out
    assert "**ERROR** section projection: RuntimeError: needs the sampler section" in out
    assert "3 section(s) failed: train, sampler, projection" in out
