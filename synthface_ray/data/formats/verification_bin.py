"""insightface verification sets (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...).

The format is a pickle of ``(bins, issame_list)``: ``bins`` holds 2N encoded images (JPEG/PNG
bytes; some writers store them as uint8 numpy arrays), pair ``i`` is ``bins[2i], bins[2i + 1]``,
and ``issame_list`` the N booleans. Pickle can run code, so the reader only accepts the few types
this format contains (lists, tuples, bytes, bools, numpy arrays) and refuses anything else.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from synthface_ray import storage
from synthface_ray.storage import StorageConfig

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("builtins", "bytearray"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"{module}.{name} is not part of an insightface verification .bin; refusing to load it"
            )
        return super().find_class(module, name)


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    if isinstance(item, np.ndarray):
        return item.astype(np.uint8).tobytes()
    raise ValueError(f"unexpected image entry of type {type(item).__name__} in the .bin")


def read_verification_bin(uri: str, cfg: StorageConfig | None = None) -> tuple[list[bytes], np.ndarray]:
    """``(images, issame)``: 2N encoded images and N booleans (pair i = images 2i and 2i+1)."""
    loc = storage.resolve(uri, cfg)
    if not storage.exists(loc):
        raise FileNotFoundError(f"verification set {loc.uri} does not exist")
    try:
        bins, issame = _SafeUnpickler(io.BytesIO(storage.read_bytes(loc)), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"{loc.uri} is not an insightface verification .bin: {exc}") from None
    images = [_as_bytes(b) for b in bins]
    issame = np.asarray(issame, dtype=bool)
    if len(images) != 2 * len(issame):
        raise ValueError(f"{loc.uri} has {len(images)} images for {len(issame)} pairs (expected 2 per pair)")
    return images, issame


def write_verification_bin(images: list[bytes], issame, uri: str, cfg: StorageConfig | None = None) -> None:
    """Write ``(images, issame)`` in the insightface layout (e.g. held-out pairs of a faces table)."""
    issame = [bool(x) for x in issame]
    if len(images) != 2 * len(issame):
        raise ValueError(f"{len(images)} images for {len(issame)} pairs: need 2 per pair")
    data = pickle.dumps(([bytes(b) for b in images], issame), protocol=pickle.HIGHEST_PROTOCOL)
    storage.atomic_write_bytes(storage.resolve(uri, cfg), data)


__all__ = ["read_verification_bin", "write_verification_bin"]
