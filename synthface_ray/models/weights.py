"""Loading exported weights with errors a user can act on: the file and how to get a good one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: how to get a good export, by what the folder holds
FIX_FR = ("point the model setting (model.fr / --model) at the export folder `synthface train-fr` wrote "
          "(<run folder>/export), or re-export it")
FIX_GENERATOR = ("point model.generator (--generator) at the export folder `synthface train-generator` wrote "
                 "(<run folder>/export), or re-export it")


def load_safetensors(path: str | Path, fix: str) -> dict[str, Any]:
    """The tensors of a ``.safetensors`` file; a missing, truncated or foreign file raises
    ``ValueError`` naming it and ``fix``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: {fix}") from None
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path} is not a readable safetensors file ({exc}): {fix}") from None


def load_state(model: Any, path: str | Path, fix: str, strict: bool = True) -> Any:
    """``model.load_state_dict`` of the file at ``path``; weights of another architecture raise
    ``ValueError`` naming the file (torch's own message lists every mismatched tensor)."""
    state = load_safetensors(path, fix)
    try:
        return model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[:2]
        raise ValueError(f"{path} does not hold weights of the model its config describes "
                         f"({' '.join(s.strip() for s in first)}): {fix}") from None


__all__ = ["FIX_FR", "FIX_GENERATOR", "load_safetensors", "load_state"]
