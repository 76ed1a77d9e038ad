"""Where a claim's evidence is read from, and the archive that keeps it from one machine to the
next (``synthface papers``, ``papers.archive``).

The whole papers suite takes longer on 2 cores than a working session, and its run folder does
not outlive the machine. So after a run the files each verdict is computed from (a benchmark's
``results.parquet``, each evaluation's ``metrics.json``) are copied into a small committed
archive that mirrors the run folder (a path ``{root}/x`` is kept as ``{archive}/x``), with when
and at which commit they were measured. The report then judges each claim from one place: the
run folder when any of the claim's evidence is there (measured on this machine, now), else the
archive -- never a mix, because two runs' upstreams (FR model, generator) differ. Local files and
object storage alike (``synthface_ray.storage``); no Ray, no models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthface_ray import storage
from synthface_ray.benchmark.claims import ClaimSection
from synthface_ray.storage import StorageConfig

PROVENANCE = "provenance.json"


def evidence_files(claim: ClaimSection) -> list[str]:
    """The files the verdict of ``claim`` (resolved) is computed from."""
    bench = [f"{claim.benchmark.rstrip('/')}/results.parquet"] if claim.benchmark else []
    return bench + [f"{folder.rstrip('/')}/metrics.json" for folder in claim.evaluations.values()]


def archivable(claim: ClaimSection) -> bool:
    """Whether every evidence location of ``claim`` (unresolved) lies under ``{root}``, so that it
    has a place in the archive."""
    return all(path.startswith("{root}/") for path in
               ([claim.benchmark] if claim.benchmark else []) + list(claim.evaluations.values()))


def _exists(path: str, store: StorageConfig | None) -> bool:
    return storage.exists(storage.resolve(path, store))


def read_provenance(archive: str | None) -> dict[str, Any]:
    path = Path(archive or "") / PROVENANCE
    return json.loads(path.read_text(encoding="utf-8")) if archive and path.exists() else {}


def locate(claim: ClaimSection, root: str, archive: str | None, store: StorageConfig | None
           ) -> tuple[ClaimSection, dict[str, Any] | None]:
    """``claim`` resolved where its evidence lies, and the archive's provenance entry when that is
    the archive: the run folder when any of its evidence is there, else the archive when any is
    there, else the run folder (nothing measured yet)."""
    here = claim.resolved(root)
    if not archive or not archivable(claim) or any(_exists(p, store) for p in evidence_files(here)):
        return here, None
    kept = claim.resolved(archive)
    if any(Path(p).exists() for p in evidence_files(kept)):
        return kept, read_provenance(archive).get(str(claim.number), {})
    return here, None


def archive_claims(claims: list[ClaimSection], root: str, archive: str, store: StorageConfig | None,
                   stamp: dict[str, Any]) -> list[int]:
    """Copy the evidence found under ``root`` of every archivable claim into ``archive`` (local;
    replacing what was kept of that claim before) and record ``stamp`` (when, commit) as its
    provenance; returns the claims archived. A claim with no evidence under ``root`` keeps its
    archived evidence untouched."""
    done, provenance = [], read_provenance(archive)
    for claim in claims:
        if not archivable(claim):
            continue
        pairs = list(zip(evidence_files(claim.resolved(root)), evidence_files(claim.resolved(archive)), strict=True))
        found = [(src, dst) for src, dst in pairs if _exists(src, store)]
        if not found:
            continue
        for _, dst in pairs:
            Path(dst).unlink(missing_ok=True)  # nothing of an older run left beside the new
        for src, dst in found:
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            Path(dst).write_bytes(storage.read_bytes(storage.resolve(src, store)))
        provenance[str(claim.number)] = stamp
        done.append(claim.number)
    if done:
        Path(archive).mkdir(parents=True, exist_ok=True)
        (Path(archive) / PROVENANCE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n",
                                                encoding="utf-8")
    return done


__all__ = ["PROVENANCE", "archivable", "archive_claims", "evidence_files", "locate", "read_provenance"]
