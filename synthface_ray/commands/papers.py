"""``synthface papers --config jobs/papers/suite.yaml``: the method papers' central claims,
reproduced on the embedded data and judged by measurement (``make papers``, docs/PAPERS.md).

The suite is an upstream pipeline (the data, FR model and generator every claim starts from) and
one file per claim: the claim's statement, the comparisons that test it (arm, than, metric, what
the paper expects) and the pipeline steps that produce the evidence (generate each arm's set,
``evaluate`` it, ``benchmark`` the arms). Every step of every file is loaded and checked before
the first one runs; a step whose ``done`` marker exists is reused and a benchmark re-runs only the
trials it lacks, so the suite resumes, and ``papers.only`` splits it into parts that fit a
session. The report (``papers.report``) is written last from whatever evidence exists, each
claim judged holds / does not hold / within noise with its effect size and 95% interval
(``synthface_ray.benchmark.claims``); claims not run yet are listed as such."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthface_ray import config, storage
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
    """``root``: every output goes under it (substituted for ``{root}`` in the files);
    ``upstream``: a pipeline file (``synthface pipeline`` runs it alone too); ``claims``: the claim
    files, in report order; ``only``: the claim numbers to run now (empty = all; the report still
    covers every claim, from what exists); ``run``: false = only write the report; ``overrides``:
    command -> ``--set`` items appended to every step of that command (e.g. a smaller benchmark);
    ``report``: the Markdown report (local); ``plots``: its folder of figures (local)."""

    root: str = "runs/papers"
    upstream: str = "jobs/papers/upstream.yaml"
    claims: list[str] = field(default_factory=list)
    only: list[int] = field(default_factory=list)
    run: bool = True
    overrides: dict[str, list[str]] = field(default_factory=dict)
    report: str = "docs/PAPERS.md"
    plots: str = "docs/papers"


@dataclass
class Config:
    papers: PapersSection = field(default_factory=PapersSection)
    storage: StorageConfig = field(default_factory=StorageConfig)


@dataclass
class ClaimFile:
    """One claim file: ``claim`` (what is tested and judged) and ``steps`` (what produces the
    evidence, as ``synthface pipeline`` steps)."""

    claim: ClaimSection | None = None
    steps: list[Step] = field(default_factory=list)


def load_claim(path: str, root: str) -> ClaimFile:
    """A claim file with ``{root}`` replaced in its evidence paths; errors name the file."""
    try:
        raw = config.read_yaml(path)
        claim = config.from_dict(ClaimFile, raw)
    except config.ConfigError as exc:
        raise config.ConfigError(f"{path}: {exc}") from exc
    if claim.claim is None:
        raise config.ConfigError(f"{path} has no claim section (number, paper, statement, comparisons)")
    c = claim.claim
    c.benchmark = c.benchmark.replace("{root}", root.rstrip("/"))
    c.evaluations = {arm: p.replace("{root}", root.rstrip("/")) for arm, p in c.evaluations.items()}
    return claim


def _with_overrides(steps: list[Step], overrides: dict[str, list[str]]) -> list[Step]:
    return [Step(s.command, s.config, [*s.set, *overrides.get(s.command, [])], s.done) for s in steps]


def load_suite(p: PapersSection) -> tuple[list[tuple[Step, Any]], list[tuple[ClaimFile, list]]]:
    """The upstream's steps and each claim with its steps, every step's config loaded and checked."""
    unknown = set(p.overrides) - set(catalog.COMMANDS)
    if unknown:
        raise config.ConfigError(f"papers.overrides names unknown command(s) {sorted(unknown)}")
    if not p.claims:
        raise config.ConfigError("papers.claims is empty: list the claim files (jobs/papers/claim*.yaml)")
    up = config.load(pipeline.Config, p.upstream, [f"pipeline.root={p.root}"])
    upstream = pipeline.load_steps(_with_overrides(up.pipeline.steps, p.overrides), p.root)
    claims = []
    for path in p.claims:
        claim = load_claim(path, p.root)
        try:
            steps = pipeline.load_steps(_with_overrides(claim.steps, p.overrides), p.root)
        except config.ConfigError as exc:
            raise config.ConfigError(f"{path}: {exc}") from exc
        claims.append((claim, steps))
    numbers = [c.claim.number for c, _ in claims]
    if len(set(numbers)) != len(numbers):
        raise config.ConfigError(f"papers.claims: claim numbers repeat ({numbers})")
    missing = set(p.only) - set(numbers)
    if missing:
        raise config.ConfigError(f"papers.only names claim(s) {sorted(missing)}; the suite has {numbers}")
    return upstream, claims


def _record(cfg: Config, key: str, timings: list[tuple[str, float]]) -> None:
    """Add the seconds of the steps that ran now to ``{root}/papers_timings.json`` (per claim)."""
    loc = storage.resolve(f"{cfg.papers.root.rstrip('/')}/{TIMINGS}", cfg.storage)
    done = storage.read_json(loc) if storage.exists(loc) else {}
    done[key] = done.get(key, 0.0) + sum(t for _, t in timings)
    storage.atomic_write_json(loc, done)


def run_suite(cfg: Config, upstream, claims) -> None:
    p = cfg.papers
    chosen = [(c, s) for c, s in claims if not p.only or c.claim.number in p.only]
    _record(cfg, "upstream", pipeline.run_steps(upstream, cfg.storage, "papers upstream"))
    for claim, steps in chosen:
        key = f"claim {claim.claim.number}"
        _record(cfg, key, pipeline.run_steps(steps, cfg.storage, f"papers {key}"))


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


def claim_section(cfg: Config, claim: ClaimSection, plots: Path, minutes: float | None) -> tuple[list[str], str]:
    """The report section of one claim and its verdict."""
    rows = _benchmark_rows(cfg, claim.benchmark)
    metrics = read_metrics(claim.evaluations, _read_text(cfg))
    outcomes = [outcome(c, rows, metrics, claim.test_set) for c in claim.comparisons]
    verdict = claim_verdict(outcomes)
    arms = list(dict.fromkeys([a for c in claim.comparisons for a in (c.than, c.arm)]))
    lines = [f"## Claim {claim.number} ({claim.paper}): {claim.statement}", "",
             f"**Verdict: {verdict}.**" + (f" Wall time on this machine: {minutes:.0f} min." if minutes else ""),
             "", claim.protocol.strip(), "", *comparison_table(outcomes), "",
             *arm_table(arms, rows, metrics, claim.test_set), ""]
    lines += _figures(cfg, claim, rows, plots)
    return lines, verdict


def _figures(cfg: Config, claim: ClaimSection, rows, plots: Path) -> list[str]:
    """Copy the benchmark's accuracy plot and each arm's sample grid next to the report."""
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
        if not storage.exists(loc):
            continue
        (plots / name).write_bytes(storage.read_bytes(loc))
        out.append(f"![{alt}]({Path(plots.name) / name})")
    return [" ".join(out), ""] if out else []


def write_report(cfg: Config, claims: list[tuple[ClaimFile, list]]) -> str:
    p = cfg.papers
    report, plots = Path(p.report), Path(p.plots)
    loc = storage.resolve(f"{p.root.rstrip('/')}/{TIMINGS}", cfg.storage)
    timings = storage.read_json(loc) if storage.exists(loc) else {}
    sections, summary = [], []
    for claim, _ in claims:
        c = claim.claim
        minutes = timings.get(f"claim {c.number}", 0.0) / 60 or None
        lines, verdict = claim_section(cfg, c, plots, minutes)
        sections += lines
        summary.append(f"| {c.number} | {c.paper} | {c.statement} | **{verdict}** |")
    up = timings.get("upstream", 0.0) / 60
    head = ["# The papers' claims, reproduced on the embedded data", "",
            "Generated by `make papers` (`synthface papers --config jobs/papers/suite.yaml`) from the "
            f"results under `{p.root}`; do not edit by hand. Upstream (data, FR model, generator): "
            f"{up:.0f} min on this machine.", "",
            "| # | paper | claim | verdict |", "|---|---|---|---|", *summary, ""]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(head + sections).rstrip() + "\n", encoding="utf-8")
    return str(report)


def run(cfg: Config, dry_run: bool = False) -> int:
    start = time.perf_counter()
    upstream, claims = load_suite(cfg.papers)
    if dry_run:
        print(f"# dry run of `synthface papers`: upstream {len(upstream)} steps, "
              f"{len(claims)} claims under {cfg.papers.root}; nothing is written")
        for claim, steps in claims:
            print(f"claim {claim.claim.number} ({claim.claim.paper}): {len(steps)} steps, "
                  f"{len(claim.claim.comparisons)} comparisons")
        return 0
    if cfg.papers.run:
        run_suite(cfg, upstream, claims)
    path = write_report(cfg, claims)
    print(f"\n== papers: report written to {path} ({(time.perf_counter() - start) / 60:.1f} min)", flush=True)
    print(json.dumps({"report": path}), flush=True)
    return 0
