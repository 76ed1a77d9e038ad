"""Input checks and the exact inner-product index shared by the miners."""

from __future__ import annotations

import numpy as np
import pytest

from synthface_ray.mining.index import (
    MiningError,
    check_embeddings,
    check_same_dim,
    gpu_available,
    inner_product_index,
    topk_others,
)


def unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_valid_unit_float32_is_returned_as_is():
    x = unit(10, 8)
    assert check_embeddings(x, "emb") is x


def test_non_unit_rows_are_normalised_without_touching_the_input():
    raw = np.random.default_rng(1).standard_normal((20, 8)) * 5.0  # float64, norms ~ 14
    before = raw.copy()
    out = check_embeddings(raw, "emb")
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_array_equal(raw, before)


def test_integer_and_fortran_inputs_become_c_contiguous_float32():
    out = check_embeddings(np.asfortranarray(np.array([[3, 4], [0, 2]])), "emb")
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 1.0]], atol=1e-7)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_row_is_named(bad):
    x = unit(10, 4)
    x[6, 2] = bad
    with pytest.raises(MiningError, match=r"centres row 6 has NaN or inf"):
        check_embeddings(x, "centres")


def test_zero_row_is_named():
    x = unit(10, 4)
    x[3] = 0
    with pytest.raises(MiningError, match=r"emb row 3 is a zero vector"):
        check_embeddings(x, "emb")


@pytest.mark.parametrize("shape", [(8,), (2, 3, 4), (5, 0)])
def test_wrong_rank_or_empty_dimension(shape):
    with pytest.raises(MiningError, match=r"emb must be a 2-D"):
        check_embeddings(np.ones(shape), "emb")


def test_dimension_mismatch_names_both_dims():
    with pytest.raises(MiningError, match=r"dimension mismatch between sources: cand has D=8 "
                                          r"but real has D=16"):
        check_same_dim(unit(3, 8), unit(3, 16), ("cand", "real"))
    check_same_dim(unit(3, 8), unit(5, 8), ("a", "b"))


def test_index_is_exact_flat_inner_product():
    import faiss

    index = inner_product_index(8, use_gpu="no")
    assert isinstance(index, faiss.IndexFlatIP) and index.d == 8
    x = unit(50, 8)
    index.add(x)
    scores, ids = index.search(x[:5], 3)
    ref = x[:5] @ x.T
    np.testing.assert_array_equal(ids, np.argsort(-ref, axis=1)[:, :3])
    np.testing.assert_allclose(scores, -np.sort(-ref, axis=1)[:, :3], atol=1e-6)


def test_auto_falls_back_to_cpu_and_yes_needs_a_gpu():
    if gpu_available():
        pytest.skip("a GPU is visible")
    import faiss

    assert isinstance(inner_product_index(4), faiss.IndexFlatIP)
    with pytest.raises(MiningError, match="use_gpu='yes' but faiss has no GPU"):
        inner_product_index(4, use_gpu="yes")


def test_bad_use_gpu_and_dim():
    with pytest.raises(MiningError, match="use_gpu='maybe'"):
        inner_product_index(4, use_gpu="maybe")
    with pytest.raises(MiningError, match="dimension"):
        inner_product_index(0)


@pytest.mark.parametrize("largest", [True, False])
def test_topk_others_matches_brute_force_and_excludes_self(largest):
    x = unit(60, 8, seed=2)
    sims = (x.astype(np.float64) @ x.T.astype(np.float64))
    np.fill_diagonal(sims, -np.inf if largest else np.inf)
    ref = np.argsort(-sims if largest else sims, axis=1, kind="stable")[:, :4]
    scores, ids = topk_others(x, 4, largest=largest)
    np.testing.assert_array_equal(ids, ref)
    np.testing.assert_allclose(scores, np.take_along_axis(sims, ref, axis=1), atol=1e-6)


def test_topk_others_with_duplicated_rows_never_returns_self():
    x = np.repeat(unit(5, 4), 3, axis=0)  # every row three times
    for largest in (True, False):
        _, ids = topk_others(x, 2, largest=largest)
        assert (ids != np.arange(15)[:, None]).all()
    _, ids = topk_others(x, 2, largest=True)
    assert (ids // 3 == np.arange(15)[:, None] // 3).all()  # the two twins are the nearest
    with pytest.raises(MiningError, match="k=15"):
        topk_others(x, 15)


def test_gpu_branch_selection_with_a_fake_gpu(monkeypatch):
    import faiss

    class FakeGpuIndex:
        def __init__(self, resources, dim):
            self.resources, self.d = resources, dim

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "GpuIndexFlatIP", FakeGpuIndex, raising=False)
    for mode in ("auto", "yes"):
        index = inner_product_index(16, use_gpu=mode)
        assert isinstance(index, FakeGpuIndex) and index.d == 16
        assert index.resources in index.referenced_objects  # kept alive with the index
    assert isinstance(inner_product_index(16, use_gpu="no"), faiss.IndexFlatIP)
