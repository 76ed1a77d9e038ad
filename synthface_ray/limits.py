"""Refuse work that cannot fit before it starts, with the estimate in the message (issue 21).

The estimates are measured peaks of the code that builds the thing (bytes per row or value),
checked on the machine that does the work, at run time (a config may be written on a laptop for a
cluster), against the memory available now.
"""

from __future__ import annotations

from synthface_ray.config import ConfigError


def available_memory() -> int:
    """Bytes of memory available to a new allocation on this machine (free + reclaimable)."""
    import psutil

    return int(psutil.virtual_memory().available)


def human_bytes(n: float) -> str:
    """``n`` bytes in binary units, e.g. ``17.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def memory_problem(need: int, per: str = "") -> str | None:
    """Why ``need`` bytes do not fit in memory now (``per``: how it was estimated), or None."""
    have = available_memory()
    if need <= have:
        return None
    return f"needs about {human_bytes(need)} of memory{per}, this machine has {human_bytes(have)} available"


def free_disk(path: str) -> tuple[str, int]:
    """The nearest existing folder at or above the local ``path`` and its free bytes."""
    import os
    import shutil

    here = os.path.abspath(path)
    while not os.path.exists(here) and os.path.dirname(here) != here:
        here = os.path.dirname(here)
    return here, shutil.disk_usage(here).free


def check_disk(what: str, loc, count: int, bytes_each: float, fix: str) -> None:
    """Refuse writing ``count`` rows of about ``bytes_each`` bytes each to the local ``loc`` when
    its disk has less free space (S3 has no such limit to check; a folder we may not write to is
    left to the write's own error, which says so): ``<what>: <estimate>; <fix>``."""
    import os

    if loc.is_s3:
        return
    need = int(count * bytes_each)
    where, free = free_disk(loc.path)
    if need > free and os.access(where, os.W_OK):
        raise ConfigError(f"{what} = {count:,} rows of ~{human_bytes(bytes_each)} each: needs about "
                          f"{human_bytes(need)} on disk, {where} has {human_bytes(free)} free; {fix}")


def check_count(what: str, count: int, unit: str, bytes_each: float, fix: str, most: int | None = None,
                most_why: str = "") -> None:
    """Refuse ``count`` ``unit`` of about ``bytes_each`` bytes each in memory, or more than
    ``most``: ``<what> = <count> <unit>: <problems>; <fix>``."""
    problems = []
    if most is not None and count > most:
        problems.append(f"more than the {most:,} {most_why}")
    memory = memory_problem(int(count * bytes_each), f" (~{bytes_each:g} B per {unit.rstrip('s')})")
    if memory:
        problems.append(memory)
    if problems:
        raise ConfigError(f"{what} = {count:,} {unit}: {' and '.join(problems)}; {fix}")


__all__ = ["available_memory", "check_count", "check_disk", "free_disk", "human_bytes", "memory_problem"]
