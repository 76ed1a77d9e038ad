"""The checkpoint layout shared by the training sessions (generator, FR).

A checkpoint folder holds:

* ``deepspeed/``: every rank's DeepSpeed state (weights, optimizer, LR schedule; ZeRO shards),
* ``rng_rank{r}.pt``: rank ``r``'s random streams (its step ``torch.Generator``, torch's global
  RNG, and CUDA's on GPU), so a resumed run continues the same streams,
* ``trainer_state.json`` (rank 0): the step, world size and seed,
* whatever a session adds beside them (the generator's ``ema.pt``).

Every rank calls :func:`save` into the same folder (Ray Train merges the ranks' folders).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)
DS_TAG, STATE_FILE = "deepspeed", "trainer_state.json"


def rng_file(directory: Path, rank: int) -> Path:
    return directory / f"rng_rank{rank}.pt"


def save(directory: str | Path, engine, rank: int, rng: torch.Generator, state: dict[str, Any]) -> None:
    """Write this rank's share: DeepSpeed state, random streams, and (rank 0) ``state``."""
    directory = Path(directory)
    engine.save_checkpoint(str(directory), tag=DS_TAG)
    streams = {"step_rng": rng.get_state(), "torch": torch.get_rng_state()}
    if rng.device.type == "cuda":
        streams["cuda"] = torch.cuda.get_rng_state(rng.device)
    torch.save(streams, rng_file(directory, rank))
    if rank == 0:
        (directory / STATE_FILE).write_text(json.dumps(state) + "\n", encoding="utf-8")


def load(directory: str | Path, engine, rank: int, rng: torch.Generator, reseed: int) -> dict[str, Any]:
    """Restore what :func:`save` wrote; returns rank 0's ``state``.

    A rank the checkpoint has no random streams for (the run now has more workers) gets a fresh
    stream seeded with ``reseed + 7919 * step`` (still deterministic) and a warning.
    """
    directory = Path(directory)
    state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    path, _ = engine.load_checkpoint(str(directory), tag=DS_TAG)
    if path is None:
        raise FileNotFoundError(f"no DeepSpeed checkpoint '{DS_TAG}' in {directory}")
    file = rng_file(directory, rank)
    if file.is_file():
        streams = torch.load(file, weights_only=True)
        rng.set_state(streams["step_rng"])
        torch.set_rng_state(streams["torch"])
        if "cuda" in streams and rng.device.type == "cuda":
            torch.cuda.set_rng_state(streams["cuda"], rng.device)
    else:
        log.warning("checkpoint has no RNG state for rank %d (saved with %s workers); reseeding",
                    rank, state.get("world_size"))
        rng.manual_seed(reseed + 7919 * int(state["step"]))
    return state


__all__ = ["DS_TAG", "STATE_FILE", "load", "save"]
