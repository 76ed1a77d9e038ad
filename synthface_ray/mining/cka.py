"""Linear centred kernel alignment (CKA) between two representations of the same items.

ScoreMix measures with CKA how well the generator's condition space aligns with FR embedding
spaces (low: condition-space pair choices trail embedding-space ones). Linear CKA (Kornblith et
al. 2019, eq. for the linear kernel) of column-centred X (N, D1) and Y (N, D2):

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)

It is 1 for X = Y, invariant to orthogonal transforms and isotropic scaling of either side, and
near 0 for independent representations (for independent isotropic Gaussians it is about
sqrt(D1 D2) / N: a finite-sample bias, not alignment).
"""

from __future__ import annotations

import numpy as np

from synthface_ray.mining.index import MiningError

BLOCK_ROWS = 8192  # rows converted to float64 at a time: memory O(BLOCK_ROWS x D + D^2)


def _check_features(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise MiningError(f"{name} must be a 2-D (N, D) array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise MiningError(f"{name} must be real numbers, got dtype {arr.dtype}")
    return arr


def _gram_terms(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Xc^T Xc, Yc^T Yc, Yc^T Xc)`` in float64 over row blocks (column means first)."""
    mx = x.mean(axis=0, dtype=np.float64)
    my = y.mean(axis=0, dtype=np.float64)
    xx = np.zeros((x.shape[1], x.shape[1]))
    yy = np.zeros((y.shape[1], y.shape[1]))
    yx = np.zeros((y.shape[1], x.shape[1]))
    for lo in range(0, len(x), BLOCK_ROWS):
        xb = x[lo:lo + BLOCK_ROWS].astype(np.float64) - mx
        yb = y[lo:lo + BLOCK_ROWS].astype(np.float64) - my
        xx += xb.T @ xb
        yy += yb.T @ yb
        yx += yb.T @ xb
    return xx, yy, yx


def linear_cka(x, y) -> float:
    """Linear CKA (Kornblith et al. 2019) of X (N, D1) and Y (N, D2), rows = the same items.

    Features are column-centred, everything is computed in float64 from D x D cross-products
    (never an N x N Gram matrix), so N ~ 100k x 512 costs ~3 N D^2 flops and O(D^2) memory.
    :class:`MiningError` when the row counts differ, N < 2, a value is NaN/inf, or a side
    has zero variance (CKA is undefined).
    """
    x, y = _check_features(x, "x"), _check_features(y, "y")
    if len(x) != len(y):
        raise MiningError(f"CKA compares representations of the same items: x has {len(x)} rows "
                          f"but y has {len(y)}")
    if len(x) < 2:
        raise MiningError(f"CKA needs at least 2 rows, got {len(x)}")
    xx, yy, yx = _gram_terms(x, y)
    for name, gram in (("x", xx), ("y", yy)):
        if not np.isfinite(gram).all():
            raise MiningError(f"{name} has NaN or inf values")
    norm_x, norm_y = np.linalg.norm(xx), np.linalg.norm(yy)
    if norm_x == 0 or norm_y == 0:
        raise MiningError(f"{'x' if norm_x == 0 else 'y'} has zero variance: CKA is undefined")
    return float(np.linalg.norm(yx) ** 2 / (norm_x * norm_y))


__all__ = ["linear_cka"]
