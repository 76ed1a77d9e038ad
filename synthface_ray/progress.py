"""The progress bar every long command shows (export, import, mine, toyfaces, embed, evaluate)."""

from __future__ import annotations

import sys


def progress_bar(total: int | None, desc: str, unit: str = "img"):
    """A tqdm progress bar (rate and ETA) on stderr; when stderr is not a terminal (logs) a plain
    line every 10 s instead. The commands print their one-line summary after it either way."""
    from tqdm.auto import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=tty,
                mininterval=1.0 if tty else 10.0, ascii=not tty)


__all__ = ["progress_bar"]
