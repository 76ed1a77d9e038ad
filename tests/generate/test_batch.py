"""The pure per-shard work: plan rows -> conditions -> pixels -> scores -> encoded faces rows."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from gen_helpers import SAMPLER, save_generator

from synthface_ray.data import schema
from synthface_ray.generate import batch as gb
from synthface_ray.mining.plan import plan_rows
from synthface_ray.sampling.exported import load_generator
from synthface_ray.sampling.recipes import resolve


@pytest.fixture(scope="module")
def gen(gen_inputs):
    torch.set_num_threads(1)
    return load_generator(gen_inputs["generator"])


@pytest.fixture(scope="module")
def identities(gen_inputs):
    from synthface_ray.data.identities import read_identities
    from synthface_ray.storage import StorageConfig

    return gb.IdentityTable.build(*read_identities(gen_inputs["identities"], StorageConfig()))


@pytest.fixture(scope="module")
def plan(gen_inputs):
    return pq.read_table(gen_inputs["plan"])


def test_identity_table_looks_up_by_id_in_any_order_and_names_missing_ids():
    emb = np.eye(4, dtype=np.float32)
    table = gb.IdentityTable.build([30, 10, 20, 40], emb)
    np.testing.assert_array_equal(table.lookup([10, 40]), emb[[1, 3]])
    assert table.missing([10, 11, 99]).tolist() == [11, 99]
    with pytest.raises(KeyError, match=r"\[11\]"):
        table.lookup([10, 11])
    with pytest.raises(ValueError, match="identity_id 3 more than once"):
        gb.IdentityTable.build([3, 3], np.zeros((2, 2)))


def test_conditions_index_each_rows_mix_and_negative_into_the_distinct_contexts(plan):
    seen = {}

    def contexts_of(ids):
        seen["ids"] = ids.tolist()
        return 1.0 + torch.arange(len(ids), dtype=torch.float32)[:, None, None].expand(-1, 2, 3).clone()

    part = plan.slice(38, 6)  # the last plain rows (identity 9, negative 4), then the mixes
    cond = gb.conditions(part, contexts_of, torch.zeros(2, 3))
    ids = seen["ids"]
    assert ids == sorted(set(ids)) and {0, 1, 2, 7, 9, 4} == set(ids)
    rows = part.to_pylist()
    for r, row in enumerate(rows):
        got = [ids[k] for k in cond.mix_ids[r].tolist() if k >= 0]
        assert got == row["mix_ids"]
        assert cond.mix_weights[r, :len(got)].tolist() == pytest.approx(row["mix_weights"])
        neg = cond.negative_ids[r].item()
        assert (ids[neg] if neg >= 0 else -1) == row["negative_id"]
    assert cond.seeds.tolist() == part.column("seed").to_pylist()


def test_sample_batch_adds_pixels_t0_nfe_and_rows_do_not_depend_on_the_micro_batch(gen, plan, identities):
    part = plan.slice(0, 6)
    a = gb.sample_batch(gen, part, SAMPLER, identities, micro_batch=6, device="cpu", dtype=torch.float32)
    b = gb.sample_batch(gen, part, SAMPLER, identities, micro_batch=4, device="cpu", dtype=torch.float32)
    assert a.column_names[-3:] == ["pixels", "t0", "nfe"]
    pa_, pb = gb.pixel_array(a, 16), gb.pixel_array(b, 16)
    assert pa_.shape == (6, 16, 16, 3) and pa_.dtype == np.uint8 and pa_.std() > 0
    assert np.abs(pa_.astype(int) - pb.astype(int)).max() <= 1  # float round-off at most
    again = gb.sample_batch(gen, part, SAMPLER, identities, micro_batch=4, device="cpu", dtype=torch.float32)
    assert again.column("pixels").equals(b.column("pixels"))  # same partition: bit-identical
    assert (a.column("nfe").to_numpy() > 0).all()


def test_embedding_conditioned_generator_reads_contexts_from_the_identities(tmp_path, plan, identities):
    gen = load_generator(save_generator(tmp_path / "g", condition="embedding"))
    part = plan.slice(0, 3)
    out = gb.sample_batch(gen, part, SAMPLER, identities, micro_batch=3, device="cpu", dtype=torch.float32)
    assert out.num_rows == 3
    with pytest.raises(ValueError, match="needs input.identities"):
        gb.sample_batch(gen, part, SAMPLER, None, micro_batch=3, device="cpu", dtype=torch.float32)


def test_reference_of_a_mix_is_the_normalised_weighted_sum_of_its_sources(identities):
    rows = plan_rows([3], 1, mixes=[(50, [0, 1], [0.25, 0.75])], images_per_mix=1)
    ref = gb.reference_embeddings(rows, identities)
    e = identities.lookup([0, 1])
    want = 0.25 * e[0] + 0.75 * e[1]
    np.testing.assert_allclose(ref[1], want / np.linalg.norm(want), rtol=1e-6)
    np.testing.assert_allclose(ref[0], identities.lookup([3])[0], rtol=1e-6)


def test_scores_are_cosines_of_the_fr_embedding_and_the_reference(gen_inputs, identities):
    from synthface_ray.models.recognition.embedder import Embedder

    fr = Embedder.from_pretrained(gen_inputs["fr"], "cpu")
    rows = plan_rows([0, 1], 2)
    pixels = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    table = rows.append_column("pixels", pa.array([p.tobytes() for p in pixels], pa.binary()))
    cos = gb.score_batch(fr, table, identities, 16).column("fr_cosine").to_numpy()
    emb = fr(gb.resize_pixels(pixels, 32))
    np.testing.assert_allclose(cos, (emb * identities.lookup([0, 0, 1, 1])).sum(1), atol=1e-6)
    assert np.all(np.abs(cos) <= 1 + 1e-6)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_faces_rows_are_a_valid_faces_table_with_the_plan_columns_and_decode_back(fmt):
    rows = plan_rows([4, 5], 2)
    pixels = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    table = (rows.append_column("pixels", pa.array([p.tobytes() for p in pixels], pa.binary()))
             .append_column("t0", pa.array([-1] * 4, pa.int32())).append_column("nfe", pa.array([3] * 4, pa.int32())))
    out = gb.faces_rows(table, size=8, fmt=fmt, quality=95, sampler_json='{"a":1}', model_id="m")
    schema.validate_faces_schema(out.schema)
    assert out.column("label").to_pylist() == [4, 4, 5, 5]
    assert set(out.column("source").to_pylist()) == {gb.SOURCE_SYNTHETIC}
    assert out.column("fr_cosine").null_count == 4  # no FR model: null, not a made-up score
    for name in gb.PLAN_COLUMNS:
        assert out.column(name).equals(rows.column(name))
    from synthface_ray.data.transforms import decode_image

    decoded = decode_image(out.column("image")[0].as_py()["bytes"])
    if fmt == "png":
        np.testing.assert_array_equal(decoded, pixels[0])
    again = gb.faces_rows(table, size=8, fmt=fmt, quality=95, sampler_json='{"a":1}', model_id="m")
    sink_a, sink_b = io.BytesIO(), io.BytesIO()
    pq.write_table(out, sink_a)
    pq.write_table(again, sink_b)
    assert sink_a.getvalue() == sink_b.getvalue()  # same pixels, same file bytes


def test_sampler_json_is_the_resolved_recipe():
    import json

    text = gb.sampler_json(resolve(SAMPLER))
    assert json.loads(text)["cfg_scale"] == 1.0 and json.loads(text)["steps"] == 3
