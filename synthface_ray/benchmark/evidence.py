"""Where a claim's evidence is read from, and the archive that keeps it from one machine to the
next (``synthface papers``, ``papers.archive``).

The whole papers suite takes longer on 2 cores than a working session, and its run folder does
not outlive the machine. So after a run the files each verdict is computed from (a benchmark's
``results.parquet``, each evaluation's ``metrics.json``) are copied into a small committed
archive, one folder per claim (``{archive}/claim{N}/`` mirrors the run folder: ``{root}/x`` is
kept as ``{archive}/claim{N}/x``; claims that share a file keep a copy each, so re-measuring one
claim never changes another's evidence), with when and at which commit they were measured. The
report then judges each claim from one place, never a mix (two runs' upstreams, FR model and
generator, differ): the run folder unless the archive holds more of the claim's files (a claim
not re-measured in this run, though a file it shares with a re-measured claim may be there). A
claim's archive is replaced only by a run that has at least as many of its files, and not by the
same files again (a run folder that outlived its machine keeps the provenance it had). Local files and
object storage alike (``synthface_ray.storage``); no Ray, no models.
"""

from __future__ import annotations

import json
import shutil
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


def kept_root(archive: str, number: int) -> str:
    """The archive folder of claim ``number`` (it stands for ``{root}`` in the claim's paths)."""
    return f"{archive.rstrip('/')}/claim{number}"


def _count(claim: ClaimSection, root: str, store: StorageConfig | None = None) -> int:
    """How many of ``claim``'s evidence files exist with ``root`` for ``{root}``."""
    return sum(_exists(p, store) for p in evidence_files(claim.resolved(root)))


def _count_kept(claim: ClaimSection, archive: str) -> int:
    return _count(claim, kept_root(archive, claim.number))


def _read(path: str, store: StorageConfig | None) -> bytes | None:
    return storage.read_bytes(storage.resolve(path, store)) if _exists(path, store) else None


def _pairs(claim: ClaimSection, root: str, archive: str) -> list[tuple[str, str]]:
    """Each evidence file of ``claim`` under ``root`` with its place in the claim's archive folder."""
    return list(zip(evidence_files(claim.resolved(root)),
                    evidence_files(claim.resolved(kept_root(archive, claim.number))), strict=True))


def already_kept(claim: ClaimSection, root: str, archive: str, store: StorageConfig | None) -> bool:
    """Whether the archive holds exactly the claim's evidence under ``root``, byte for byte (a run
    folder that outlived its session: nothing in it was measured since)."""
    pairs = [(_read(here, store), _read(kept, None)) for here, kept in _pairs(claim, root, archive)]
    return any(kept is not None for _, kept in pairs) and all(here == kept for here, kept in pairs)


def locate(claim: ClaimSection, root: str, archive: str | None, store: StorageConfig | None,
           fresh: bool = False) -> tuple[ClaimSection, dict[str, Any] | None]:
    """``claim`` resolved where its evidence lies, and the archive's provenance entry when that is
    the archive: the run folder when it holds more of the claim's files than the archive, or as
    many and either other ones or the ones this run has just kept (``fresh``); else the archive
    (a run folder holding what the archive already kept says nothing new: the archive says when
    it was measured)."""
    here = claim.resolved(root)
    if not archive or not archivable(claim):
        return here, None
    found, kept = _count(claim, root, store), _count_kept(claim, archive)
    if found > kept or (found == kept and (fresh or not already_kept(claim, root, archive, store))):
        return here, None
    return claim.resolved(kept_root(archive, claim.number)), read_provenance(archive).get(str(claim.number), {})


def archive_claims(claims: list[ClaimSection], root: str, archive: str, store: StorageConfig | None,
                   stamp: dict[str, Any]) -> list[int]:
    """Replace the archive of every archivable claim whose evidence under ``root`` has at least as
    many files as its archive (and some), and is not already what it holds, with those files, and
    record ``stamp`` (when, commit) as its provenance; returns the claims archived. The others keep
    their archive and provenance untouched."""
    done, provenance = [], read_provenance(archive)
    for claim in claims:
        found = _count(claim, root, store) if archivable(claim) else 0
        if not found or found < _count_kept(claim, archive) or already_kept(claim, root, archive, store):
            continue
        folder = Path(kept_root(archive, claim.number))
        shutil.rmtree(folder, ignore_errors=True)  # nothing of an older run left beside the new
        for src, dst in _pairs(claim, root, archive):
            if (data := _read(src, store)) is not None:
                Path(dst).parent.mkdir(parents=True, exist_ok=True)
                Path(dst).write_bytes(data)
        provenance[str(claim.number)] = stamp
        done.append(claim.number)
    if done:
        (Path(archive) / PROVENANCE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n",
                                                encoding="utf-8")
    return done


__all__ = ["PROVENANCE", "already_kept", "archivable", "archive_claims", "evidence_files", "kept_root", "locate",
           "read_provenance"]
