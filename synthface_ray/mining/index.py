"""Exact inner-product search over unit-norm identity embeddings, and input checks.

Every mining step (uniqueness filter, negatives, ScoreMix pairs) compares identity embeddings by
cosine similarity; on unit-norm rows that is the inner product, searched exactly with a faiss
``IndexFlatIP`` (Vec2Face's greedy rejection uses faiss the same way). faiss is imported inside
the functions: importing this module has no side effects and does not load faiss.
"""

from __future__ import annotations

import numpy as np

USE_GPU = ("auto", "yes", "no")
GPU_MAX_K = 2048  # faiss-gpu's top-k limit (k <= 2048 for flat indexes since faiss 1.7.3)
UNIT_TOL = 1e-4  # |norm - 1| beyond this counts as "not unit-norm" and the rows are normalised


class MiningError(ValueError):
    """Invalid input to a mining function (shape, values, counts, options)."""


def _faiss():
    import faiss

    return faiss


def gpu_available() -> bool:
    """True when the installed faiss has GPU support and sees at least one GPU."""
    faiss = _faiss()
    return (hasattr(faiss, "StandardGpuResources") and hasattr(faiss, "get_num_gpus")
            and faiss.get_num_gpus() > 0)


def inner_product_index(dim: int, use_gpu: str = "auto"):
    """An empty exact inner-product index (``faiss.IndexFlatIP``) of dimension ``dim``.

    ``use_gpu``: ``"auto"`` puts it on GPU 0 when faiss-gpu sees a GPU (else CPU), ``"yes"``
    requires a GPU (:class:`MiningError` without one), ``"no"`` always uses the CPU. Flat GPU and
    CPU indexes give the same results up to float32 rounding.
    """
    if use_gpu not in USE_GPU:
        raise MiningError(f"use_gpu={use_gpu!r}: expected one of {', '.join(USE_GPU)}")
    if int(dim) != dim or dim < 1:
        raise MiningError(f"index dimension must be a positive integer, got {dim!r}")
    faiss = _faiss()
    on_gpu = use_gpu != "no" and gpu_available()
    if use_gpu == "yes" and not on_gpu:
        raise MiningError("use_gpu='yes' but faiss has no GPU support or sees no GPU "
                          "(install faiss-gpu on a GPU machine, or pass use_gpu='auto' or 'no')")
    if not on_gpu:
        return faiss.IndexFlatIP(int(dim))
    resources = faiss.StandardGpuResources()
    index = faiss.GpuIndexFlatIP(resources, int(dim))
    # the GPU resources must live as long as the index; faiss keeps such references in
    # `referenced_objects` (the one extra attribute its SWIG wrappers accept)
    index.referenced_objects = [*getattr(index, "referenced_objects", []), resources]
    return index


def check_embeddings(x, name: str) -> np.ndarray:
    """Validate an (N, D) embedding matrix; return it as a float32 C-contiguous array.

    Raises :class:`MiningError` (naming ``name`` and the first offending row) when ``x`` is not
    2-D with D >= 1, when a row has NaN or inf (after conversion to float32), or when a row is
    all zeros (it has no direction). Rows whose L2 norm differs from 1 by more than ``UNIT_TOL``
    are **normalised** (every row is divided by its norm; the caller's array is never modified):
    cosine similarity is what the miners compare, and it is the inner product of unit rows. An
    input that is already valid float32 C-contiguous and unit-norm is returned as is.
    """
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise MiningError(f"{name} must be a 2-D (N, D) array with D >= 1, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise MiningError(f"{name} must be real numbers, got dtype {arr.dtype}")
    with np.errstate(over="ignore"):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", arr, arr, dtype=np.float64))
    bad = np.flatnonzero(~np.isfinite(norms))
    if bad.size:
        raise MiningError(f"{name} row {bad[0]} has NaN or inf values "
                          f"({bad.size} bad row(s) of {len(arr)})")
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise MiningError(f"{name} row {zero[0]} is a zero vector, which has no direction "
                          f"({zero.size} zero row(s) of {len(arr)})")
    if arr.size and np.abs(norms - 1.0).max() > UNIT_TOL:
        arr = (arr / norms[:, None]).astype(np.float32)
    return arr


def check_same_dim(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    """Raise :class:`MiningError` when two (N, D) matrices have different D."""
    if a.shape[1] != b.shape[1]:
        raise MiningError(f"a dimension mismatch between sources: {names[0]} has D={a.shape[1]} "
                          f"but {names[1]} has D={b.shape[1]}")


def topk_others(x: np.ndarray, k: int, largest: bool = True,
                use_gpu: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """For every row of unit-norm ``x`` (N, D), the ``k`` other rows (self excluded, k < N)
    with the largest (``largest``) or smallest cosine: ``(cosines (N, k) float32, ids (N, k)
    int64)``, best first. The smallest are an exact search with the negated queries (the top
    inner products with ``-x``). Self is removed by index, so duplicated rows still work."""
    n = len(x)
    if not 1 <= k < n:
        raise MiningError(f"k={k} must be in [1, N-1] = [1, {n - 1}] (self is excluded)")
    index = inner_product_index(x.shape[1], "no" if (k + 1 > GPU_MAX_K and use_gpu == "auto")
                                else use_gpu)
    index.add(x)
    scores, ids = index.search(x if largest else -x, k + 1)
    drop = ids == np.arange(n)[:, None]
    drop[~drop.any(axis=1), -1] = True  # self not among the k+1: drop the (k+1)-th instead
    keep = ~drop
    scores = scores[keep].reshape(n, k)
    return (scores if largest else -scores), ids[keep].reshape(n, k).astype(np.int64)


__all__ = ["MiningError", "check_embeddings", "check_same_dim", "gpu_available",
           "inner_product_index", "topk_others"]
