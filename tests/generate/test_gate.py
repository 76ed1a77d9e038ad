"""The consistency gate: seeds of re-draws, the 'other identity' test, and gated sampling on tiny
real models (every kept row passes or is flagged, re-draws are deterministic, an open gate
changes nothing)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from gen_helpers import SAMPLER

from synthface_ray.config import ConfigError
from synthface_ray.generate import batch as gb
from synthface_ray.generate import gate
from synthface_ray.models.recognition.embedder import Embedder
from synthface_ray.sampling.exported import load_generator
from synthface_ray.sampling.recipes import resolve


@pytest.fixture(scope="module")
def parts(gen_inputs):
    from synthface_ray.data.identities import read_identities
    from synthface_ray.storage import StorageConfig

    torch.set_num_threads(1)
    return {"gen": load_generator(gen_inputs["generator"]),
            "ids": gb.IdentityTable.build(*read_identities(gen_inputs["identities"], StorageConfig())),
            "fr": Embedder.from_pretrained(gen_inputs["fr"], "cpu"),
            "plan": pq.read_table(gen_inputs["plan"]).slice(30, 14)}  # plain rows and ScoreMix rows


def _gated(parts, g, micro_batch=4):
    return gate.sample_gated(parts["gen"], parts["plan"], resolve(SAMPLER), parts["ids"], parts["fr"], g,
                             size=16, micro_batch=micro_batch, device="cpu", dtype=torch.float32)


@pytest.mark.parametrize("key,value,message", [
    ("min_fr_cosine", 1.5, r"gate.min_fr_cosine=1.5 is out of range: allowed values are in \[-1.0, 1.0\]"),
    ("max_other_cosine", -2.0, r"gate.max_other_cosine=-2.0 is out of range"),
    ("attempts", 0, r"gate.attempts=0 is out of range"),
    ("on_fail", "retry", r"gate.on_fail='retry' is not allowed: choose one of \['drop', 'keep'\]"),
])
def test_bad_gate_settings_are_refused_naming_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        gate.GateSection(**{"min_fr_cosine": 0.3, key: value})


def test_gate_is_off_until_a_threshold_is_set():
    assert not gate.GateSection().enabled
    assert gate.GateSection(max_other_cosine=0.4).enabled and gate.GateSection(min_fr_cosine=-1).enabled


def test_attempt_seeds_keep_the_plan_seed_first_then_are_distinct_and_deterministic():
    seeds = np.array([0, 1, 2**62, 2**63 - 1], np.int64)
    assert gate.attempt_seed(seeds, 0).tolist() == seeds.tolist()
    draws = np.stack([gate.attempt_seed(seeds, a) for a in range(1, 6)])
    assert (draws >= 0).all() and len(np.unique(draws)) == draws.size
    assert not np.isin(draws, seeds).any()
    np.testing.assert_array_equal(draws[0], gate.attempt_seed(seeds, 1))
    assert gate.attempt_seed(seeds[2:3], 3)[0] == draws[2, 2]  # a row's seed ignores its neighbours


def test_other_max_cosine_skips_each_rows_own_identities_across_chunks():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((7, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    table = gb.IdentityTable.build(np.arange(10, 17), 3.0 * emb)  # not unit: normalised inside
    own = [np.array([10 + r]) for r in range(6)] + [np.array([11, 16])]
    got = gate.other_max_cosine(emb, own, table, chunk=3)
    sims = emb @ emb.T
    for r, mine in enumerate(own):
        others = [k for k in range(7) if 10 + k not in mine]
        assert got[r] == pytest.approx(sims[r, others].max(), abs=1e-5)
    lonely = gb.IdentityTable.build([5], emb[:1])
    assert gate.other_max_cosine(emb[:1], [np.array([5])], lonely).tolist() == [-1.0]


def test_margin_is_the_smallest_slack_of_the_tests_that_apply_to_the_row():
    fr, other = np.array([0.5, 0.2, 0.9, 0.2]), np.array([0.1, 0.1, 0.6, 0.1])
    mix = np.array([False, False, False, True])
    both = gate.margin(fr, other, mix, gate.GateSection(min_fr_cosine=0.3, max_other_cosine=0.5))
    np.testing.assert_allclose(both, [0.2, -0.1, -0.1, 0.4])  # min_fr_cosine does not judge the mix
    np.testing.assert_allclose(gate.margin(fr, other, mix, gate.GateSection(min_fr_cosine=0.3)),
                               [0.2, -0.1, 0.6, np.inf])
    mixes = gate.GateSection(min_fr_cosine=0.3, min_mix_cosine=0.1)
    np.testing.assert_allclose(gate.margin(fr, other, mix, mixes), [0.2, -0.1, 0.6, 0.1])


def test_an_open_gate_writes_exactly_the_ungated_pixels(parts):
    plain = gb.sample_batch(parts["gen"], parts["plan"], resolve(SAMPLER), parts["ids"], micro_batch=4,
                            device="cpu", dtype=torch.float32)
    out = _gated(parts, gate.GateSection(min_fr_cosine=-1.0))
    assert out.column("pixels").equals(plain.column("pixels"))
    assert out.column("seed").equals(parts["plan"].column("seed"))
    assert out.column("attempts").to_pylist() == [1] * 14 and all(out.column("gate_passed").to_pylist())
    scored = gb.score_batch(parts["fr"], plain, parts["ids"], 16).column("fr_cosine").to_numpy()
    np.testing.assert_allclose(out.column("fr_cosine").to_numpy(), scored, atol=1e-6)


def test_a_tight_gate_redraws_with_the_next_seeds_and_is_deterministic(parts):
    first = gb.score_batch(parts["fr"], gb.sample_batch(parts["gen"], parts["plan"], resolve(SAMPLER),
                           parts["ids"], micro_batch=4, device="cpu", dtype=torch.float32), parts["ids"], 16)
    threshold = float(np.median(first.column("fr_cosine").to_numpy()))
    g = gate.GateSection(min_fr_cosine=threshold, min_mix_cosine=threshold, attempts=3, on_fail="keep")
    out = _gated(parts, g)
    attempts, passed = out.column("attempts").to_numpy(), np.asarray(out.column("gate_passed").to_pylist())
    cos = out.column("fr_cosine").to_numpy()
    assert out.num_rows == 14 and (attempts > 1).any() and (attempts <= 3).all()
    assert (cos[passed] >= threshold).all() and (attempts[~passed] == 3).all()
    plan_seeds = parts["plan"].column("seed").to_numpy()
    for r, a in enumerate(attempts):  # a passed row keeps its last draw, a failing one its best
        if passed[r]:
            assert out.column("seed")[r].as_py() == gate.attempt_seed(plan_seeds[r:r + 1], a - 1)[0]
    # the kept pixels are the kept seed's draw: re-scoring them gives the stored cosine
    rescored = gb.score_batch(parts["fr"], out.drop_columns(["fr_cosine"]), parts["ids"], 16)
    np.testing.assert_allclose(rescored.column("fr_cosine").to_numpy(), cos, atol=1e-6)
    assert _gated(parts, g).equals(out)  # same shard, same rows, byte for byte
    assert gate.drop_failed(out).num_rows == int(passed.sum())
    counts = gate.gate_counts(attempts[passed], passed[passed], 14)
    assert counts["dropped"] == int((~passed).sum()) and counts["written"] == int(passed.sum())
    assert counts["passed_first_draw"] + counts["passed_after_redraw"] == counts["written"]
