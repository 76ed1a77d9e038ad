"""The same-identity check picks each identity's first images across batches, as a row-by-row
loop would (the check itself, warn/merge/error, is tested with train-fr in test_fr_job.py)."""

from __future__ import annotations

import numpy as np

from synthface_ray.train.same_identity import _first_rows


def _reference(labels, wanted: set[int], taken: dict[int, int], k: int) -> np.ndarray:
    mask = np.zeros(len(labels), bool)
    for i, lab in enumerate(labels):
        if lab in wanted and taken.get(lab, 0) < k:
            taken[lab] = taken.get(lab, 0) + 1
            mask[i] = True
    return mask


def test_first_rows_match_the_row_by_row_rule_over_batches():
    rng = np.random.default_rng(0)
    for _ in range(100):
        k, wanted = int(rng.integers(1, 5)), rng.choice(10, 6, replace=False)
        ref_taken, taken = {}, {}
        for _ in range(3):  # batches, one of them possibly empty
            labels = rng.integers(0, 10, int(rng.integers(0, 30)))
            np.testing.assert_array_equal(_first_rows(labels, wanted, taken, k),
                                          _reference(labels, set(wanted.tolist()), ref_taken, k))
            assert taken == ref_taken
