"""``synthface papers --config jobs/papers/suite.yaml``: the method papers' central claims,
reproduced on the embedded data and judged by measurement (``make papers``, docs/PAPERS.md).

The suite is an upstream pipeline (the data, FR model and generator every claim starts from), a
few evidence pipelines (each generates its arms' sets, ``evaluate``s them and ``benchmark``s the
arms; plain ``synthface pipeline`` files, so each also runs alone) and the claims: each a
statement, the evidence pipeline it needs and the comparisons that test it (arm, than, metric,
what the paper expects). Every step of every file is loaded and checked before the first one
runs; a step whose ``done`` marker exists is reused and a benchmark re-runs only the trials it
lacks, so the suite resumes, and ``papers.only`` runs the evidence of some claims (a part that
fits a session). The report (``papers.report``) is written last from whatever evidence exists,
each claim judged holds / does not hold / within noise with its effect size and 95% interval
(``synthface_ray.benchmark.claims``); claims without evidence yet are listed as not run."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthface_ray import config, storage
from synthface_ray.benchmark import evidence
from synthface_ray.benchmark.claims import (
    ClaimSection,
    arm_table,
    claim_verdict,
    comparison_table,
    outcome,
    read_metrics,
)
from synthface_ray.commands import catalog, pipeline
from synthface_ray.commands.pipeline import Step
from synthface_ray.storage import StorageConfig

TIMINGS = "papers_timings.json"


@dataclass
class PapersSection:
    """``root``: every output goes under it (substituted for ``{root}``); ``upstream``: a pipeline
    file run first; ``claims``: the claims, in report order, each naming its ``evidence`` pipeline
    file; ``only``: the claim numbers whose evidence to run now (empty = all; the report still
    covers every claim, from what exists); ``run``: false = only write the report;
    ``overrides``: command -> ``--set`` items appended to every step of that command (e.g. a
    smaller benchmark); ``report``: the Markdown report (local); ``plots``: its figures (local);
    ``archive``: a local folder (committed) keeping each claim's evidence files from one machine
    to the next (``synthface_ray.benchmark.evidence``; null = off)."""

    root: str = "runs/papers"
    upstream: str = "jobs/papers/upstream.yaml"
    claims: list[ClaimSection] = field(default_factory=list)
    only: list[int] = field(default_factory=list)
    run: bool = True
    overrides: dict[str, list[str]] = field(default_factory=dict)
    report: str = "docs/PAPERS.md"
    plots: str = "docs/papers"
    archive: str | None = None

    def __post_init__(self) -> None:
        numbers = [c.number for c in self.claims]
        if len(set(numbers)) != len(numbers):
            raise config.ConfigError(f"papers.claims: claim numbers repeat ({numbers})")
        missing = set(self.only) - set(numbers)
        if missing:
            raise config.ConfigError(f"papers.only names claim(s) {sorted(missing)}; the suite has {numbers}")
        unknown = set(self.overrides) - set(catalog.COMMANDS)
        if unknown:
            raise config.ConfigError(f"papers.overrides names unknown command(s) {sorted(unknown)}")


@dataclass
class Config:
    papers: PapersSection = field(default_factory=PapersSection)
    storage: StorageConfig = field(default_factory=StorageConfig)


def _pipeline_steps(path: str, p: PapersSection) -> list[tuple[Step, Any]]:
    """A pipeline file's steps under ``papers.root``, with the overrides, every config checked."""
    try:
        raw = config.load(pipeline.Config, path, [f"pipeline.root={p.root}"]).pipeline.steps
        steps = [Step(s.command, s.config, [*s.set, *p.overrides.get(s.command, [])], s.done) for s in raw]
        return pipeline.load_steps(steps, p.root)
    except config.ConfigError as exc:
        raise config.ConfigError(f"{path}: {exc}") from exc


def load_suite(p: PapersSection) -> tuple[list[tuple[Step, Any]], dict[str, list[tuple[Step, Any]]]]:
    """The upstream's steps and each evidence pipeline's (by file), every step's config checked."""
    if not p.claims:
        raise config.ConfigError("papers.claims is empty: list the claims (number, paper, statement, "
                                 "evidence, comparisons)")
    upstream = _pipeline_steps(p.upstream, p)
    pipelines = {}
    for claim in p.claims:
        if claim.evidence not in pipelines:
            pipelines[claim.evidence] = _pipeline_steps(claim.evidence, p)
    return upstream, pipelines


def _recorder(cfg: Config, key: str):
    """A ``run_steps`` callback keeping each finished step's seconds in ``{root}/papers_timings.json``
    under ``key`` (the upstream or an evidence file) and the step (``"<index> <command>"``), at
    once: a stopped run keeps what finished. A step run again keeps its longest time, so a partial
    re-run (one arm redrawn, the benchmark training only its trials) does not add to the pipeline's
    time nor shrink it; a pipeline's time is the sum of its steps' (:func:`_seconds`)."""
    loc = storage.resolve(f"{cfg.papers.root.rstrip('/')}/{TIMINGS}", cfg.storage)

    def record(index: int, command: str, seconds: float) -> None:
        done = storage.read_json(loc) if storage.exists(loc) else {}
        steps = done.get(key, {})
        if not isinstance(steps, dict):  # a total written before times were kept per step
            steps = {"earlier runs": float(steps)}
        name = f"{index} {command}"
        steps[name] = max(steps.get(name, 0.0), seconds)
        done[key] = steps
        storage.atomic_write_json(loc, done)
    return record


def _seconds(entry: float | dict[str, float]) -> float:
    """A pipeline's time from its timings entry: the sum of its steps' (or a total, as once kept)."""
    return float(sum(entry.values())) if isinstance(entry, dict) else float(entry)


def run_suite(cfg: Config, upstream, pipelines) -> None:
    """The upstream, then the evidence pipelines of the chosen claims (each once, in claim order)."""
    p = cfg.papers
    pipeline.run_steps(upstream, cfg.storage, "papers upstream", _recorder(cfg, "upstream"))
    chosen = [c.evidence for c in p.claims if not p.only or c.number in p.only]
    for path in dict.fromkeys(chosen):
        pipeline.run_steps(pipelines[path], cfg.storage, f"papers {path}", _recorder(cfg, path))


def _read_text(cfg: Config):
    def read(path: str) -> str | None:
        loc = storage.resolve(path, cfg.storage)
        return storage.read_bytes(loc).decode() if storage.exists(loc) else None
    return read


def _benchmark_rows(cfg: Config, folder: str) -> list[dict[str, Any]] | None:
    loc = storage.resolve(f"{folder.rstrip('/')}/results.parquet", cfg.storage)
    if not folder or not storage.exists(loc):
        return None
    return storage.read_parquet(loc).to_pylist()


def claim_section(cfg: Config, claim: ClaimSection, plots: Path, minutes: float | None,
                  fresh: bool = False) -> tuple[list[str], str]:
    """The report section of one claim and its verdict (``fresh``: this run has just archived its
    evidence)."""
    claim, kept = evidence.locate(claim, cfg.papers.root, cfg.papers.archive, cfg.storage, fresh)
    rows = _benchmark_rows(cfg, claim.benchmark)
    metrics = read_metrics(claim.evaluations, _read_text(cfg))
    outcomes = [outcome(c, rows, metrics, claim.test_set) for c in claim.comparisons]
    verdict = claim_verdict(outcomes)
    arms = list(dict.fromkeys([a for c in claim.comparisons for a in (c.than, c.arm)] + claim.also))
    took = f" ({minutes:.0f} min on the machine that measured it, shared by the claims that name it)." \
        if minutes else "."
    lines = [f"## Claim {claim.number} ({claim.paper}): {claim.statement}", "",
             f"**Verdict: {verdict}.** Evidence: `{claim.evidence}`" + took,
             *_provenance(kept, cfg.papers.archive), "", claim.protocol.strip(), "",
             *comparison_table(outcomes), "", *arm_table(arms, rows, metrics, claim.test_set), ""]
    if claim.reading.strip():
        lines += [f"**Reading.** {' '.join(claim.reading.split())}", ""]
    lines += _figures(cfg, claim, rows, plots, kept is not None)
    return lines, verdict


def _provenance(kept: dict[str, Any] | None, archive: str | None) -> list[str]:
    if kept is None:
        return []
    return [f"Not re-measured in this run: judged from the evidence kept in `{archive}`, measured "
            f"{kept.get('archived', 'at an unknown time')} at commit {kept.get('commit') or 'unknown'}."]


def _figures(cfg: Config, claim: ClaimSection, rows, plots: Path, kept: bool) -> list[str]:
    """Copy the benchmark's accuracy plot and each arm's sample grid next to the report; for a
    claim judged from the archive (``kept``), link the figures its earlier report copied."""
    out = []
    plots.mkdir(parents=True, exist_ok=True)
    sources = []
    if rows:
        name = claim.test_set or min(r["test_set"] for r in rows)
        sources.append((f"{claim.benchmark}/plots/accuracy_{name}.png", f"claim{claim.number}_accuracy.png",
                        "benchmark accuracy: bars = mean over seeds, red = 95% interval, dots = seeds"))
    sources += [(f"{folder}/grid.png", f"claim{claim.number}_{arm}_grid.png", f"{arm}: samples")
                for arm, folder in claim.evaluations.items()]
    for src, name, alt in sources:
        loc = storage.resolve(src, cfg.storage)
        if storage.exists(loc):
            (plots / name).write_bytes(storage.read_bytes(loc))
        elif not (kept and (plots / name).exists()):
            continue
        out.append(f"![{alt}]({Path(plots.name) / name})")
    return [" ".join(out), ""] if out else []


def _timing_entries(cfg: Config) -> dict[str, Any]:
    """Per pipeline file (and the upstream) the steps' seconds: the run folder's, over the archive's."""
    p = cfg.papers
    loc = storage.resolve(f"{p.root.rstrip('/')}/{TIMINGS}", cfg.storage)
    kept = Path(p.archive or "") / TIMINGS
    return {**(json.loads(kept.read_text(encoding="utf-8")) if p.archive and kept.exists() else {}),
            **(storage.read_json(loc) if storage.exists(loc) else {})}


def _timings(cfg: Config) -> dict[str, float]:
    """Seconds per pipeline file (and the upstream)."""
    return {key: _seconds(entry) for key, entry in _timing_entries(cfg).items()}


def _commit() -> str:
    """The checkout's commit (``git describe --always --dirty``), or "unknown" outside a checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                             timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def archive_evidence(cfg: Config) -> list[int]:
    """Keep the evidence of the claims measured under ``papers.root`` in ``papers.archive``;
    returns the claims kept."""
    p = cfg.papers
    if not p.archive:
        return []
    stamp = {"archived": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": _commit()}
    numbers = evidence.archive_claims(p.claims, p.root, p.archive, cfg.storage, stamp)
    if numbers:
        (Path(p.archive) / TIMINGS).write_text(json.dumps(_timing_entries(cfg), indent=2, sort_keys=True) + "\n",
                                               encoding="utf-8")
        print(f"\n== papers: the evidence of claim(s) {numbers} kept in {p.archive} (commit it with the report)",
              flush=True)
    return numbers


def write_report(cfg: Config, fresh: list[int] | None = None) -> str:
    """docs/PAPERS.md (``papers.report``); ``fresh``: the claims whose evidence this run has just kept."""
    p = cfg.papers
    report, plots = Path(p.report), Path(p.plots)
    timings = _timings(cfg)
    sections, summary = [], []
    for c in p.claims:
        lines, verdict = claim_section(cfg, c, plots, timings.get(c.evidence, 0.0) / 60 or None,
                                       c.number in (fresh or []))
        sections += lines
        summary.append(f"| {c.number} | {c.paper} | {c.statement} | **{verdict}** |")
    up = timings.get("upstream", 0.0) / 60
    head = ["# The papers' claims, reproduced on the embedded data", "",
            "Generated by `make papers` (`synthface papers --config jobs/papers/suite.yaml`) from the "
            f"results under `{p.root}`"
            + (f" or, for a claim not measured in this run, its evidence kept in `{p.archive}` (each run "
               "folder's claims are judged from that run alone: the upstream differs between runs)"
               if p.archive else "")
            + f"; do not edit by hand. Upstream (data, FR model, generator): {up:.0f} min on the machine that ran it.", "",
            "Each claim is tested by comparisons of two arms on one metric. A comparison **holds** when the "
            "95% interval of the paired difference (arm - than) lies wholly on the side the paper expects, "
            "**does not hold** when it lies wholly on the other side, and is **within noise** otherwise; "
            "*no worse* holds unless the interval lies wholly on the worse side. Benchmark metrics (FR "
            "trained on each arm, verified on real people no model saw) are paired seed by seed; diversity "
            "and consistency of the generated sets identity by identity; EER, FDR and Fréchet distance of a "
            "generated set are one number per set, paired by resampling the same identities in both sets "
            "(`synthface evaluate`'s identity bootstrap, basic interval; *noise unknown* where the sets were "
            "not resampled alike). A claim holds "
            "when all its comparisons hold, partly holds when the others are within noise, and does not "
            "hold when any does not; comparisons whose runs have not happened yet are left out and "
            "counted (*so far*). A claim that does not reproduce here is a finding about this data and "
            "these models, not a verdict on the paper.", "",
            "| # | paper | claim | verdict |", "|---|---|---|---|", *summary, ""]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(head + sections).rstrip() + "\n", encoding="utf-8")
    return str(report)


def run(cfg: Config, dry_run: bool = False) -> int:
    start = time.perf_counter()
    upstream, pipelines = load_suite(cfg.papers)
    if dry_run:
        print(f"# dry run of `synthface papers`: upstream {len(upstream)} steps, "
              f"{len(cfg.papers.claims)} claims under {cfg.papers.root}; nothing is written")
        for c in cfg.papers.claims:
            print(f"claim {c.number} ({c.paper}): {len(c.comparisons)} comparisons; evidence {c.evidence} "
                  f"({len(pipelines[c.evidence])} steps)")
        return 0
    if cfg.papers.run:
        run_suite(cfg, upstream, pipelines)
    path = write_report(cfg, archive_evidence(cfg))
    print(f"\n== papers: report written to {path} ({(time.perf_counter() - start) / 60:.1f} min)", flush=True)
    print(json.dumps({"report": path}), flush=True)
    return 0
