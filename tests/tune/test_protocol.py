"""The trial protocol without Ray: common random numbers, rung plans, the metrics a trial reports."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from synthface_ray.mining.plan import IDENTITY_ID, MIX_IDS, MIX_WEIGHTS, NEGATIVE_ID, ROW_ID, SEED
from synthface_ray.tune import protocol as tp
from synthface_ray.tune.config import DOWNSTREAM_METRICS, METRICS, PlanKnobs, ProtocolSection
from synthface_ray.tune.trainable import make_spec


def _pool(n=10, seed=0):
    emb = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
    return tp.Pool(np.arange(100, 100 + n, dtype=np.int64), emb / np.linalg.norm(emb, axis=1, keepdims=True))


PROTOCOL = ProtocolSection(min_identities=4, max_identities=8, growth=2, images_per_identity=3,
                           mix_fraction=0.5, images_per_mix=2, seed=5)


def test_rung_plans_add_new_identities_with_unique_rows_and_their_mixes():
    pool = tp.trial_pool(_pool(), PlanKnobs(mix_lambda=0.3), PROTOCOL.seed)
    plans = tp.rung_plans(pool, PlanKnobs(mix_lambda=0.3), PROTOCOL)
    whole = pa.concat_tables(plans)
    assert whole.column(ROW_ID).to_pylist() == list(range(whole.num_rows))
    singles = [r for r in whole.to_pylist() if len(r[MIX_IDS]) == 1]
    mixes = [r for r in whole.to_pylist() if len(r[MIX_IDS]) == 2]
    # rung 1: identities 0..3 of the order, rung 2: 4..7; one pair (half of 4, in pairs) per rung
    assert [r[IDENTITY_ID] for r in singles[::3]] == pool.ids[:8].tolist()
    assert len(mixes) == 2 * 2 and all(r[MIX_WEIGHTS] == pytest.approx([0.3, 0.7]) for r in mixes)
    first = set(pool.ids[:4].tolist())
    assert set(mixes[0][MIX_IDS]) <= first and set(mixes[-1][MIX_IDS]) <= set(pool.ids[4:8].tolist())
    assert {r[IDENTITY_ID] for r in mixes} == {110, 111}  # new ids after the pool's
    assert all(r[NEGATIVE_ID] in pool.ids and r[NEGATIVE_ID] != r[IDENTITY_ID] for r in singles)
    assert len(set(whole.column(SEED).to_pylist())) == whole.num_rows


def test_seeds_are_keyed_by_identity_and_image_so_trials_share_noise():
    knobs_a, knobs_b = PlanKnobs(mix_lambda=0.3, negative="far"), PlanKnobs(mix_lambda=0.6, negative="null")
    pool = tp.trial_pool(_pool(), knobs_a, PROTOCOL.seed)
    a = pa.concat_tables(tp.rung_plans(pool, knobs_a, PROTOCOL)).to_pylist()
    b = pa.concat_tables(tp.rung_plans(pool, knobs_b, PROTOCOL)).to_pylist()
    assert [r[SEED] for r in a] == [r[SEED] for r in b]  # same rows, other settings: same noise
    assert all(r[NEGATIVE_ID] == -1 for r in b)
    # with a uniqueness filter fewer identities survive; those that do keep their seeds
    filtered = tp.trial_pool(_pool(), PlanKnobs(tau=0.2), PROTOCOL.seed)
    assert len(filtered) < len(pool)
    c = pa.concat_tables(tp.rung_plans(filtered, PlanKnobs(tau=0.2), PROTOCOL)).to_pylist()
    def seeds(rows):  # (identity, its k-th image) -> seed, plain rows only
        count: dict[int, int] = {}
        out = {}
        for r in (r for r in rows if len(r[MIX_IDS]) == 1):
            k = count[r[IDENTITY_ID]] = count.get(r[IDENTITY_ID], -1) + 1
            out[(r[IDENTITY_ID], k)] = r[SEED]
        return out

    before, after = seeds(a), seeds(c)
    shared = set(before) & set(after)
    assert len(shared) >= 6 and all(before[key] == after[key] for key in shared)


def test_the_evaluation_order_is_fixed_by_the_protocol_seed():
    assert tp.trial_pool(_pool(), PlanKnobs(), 5).ids.tolist() == tp.trial_pool(_pool(), PlanKnobs(), 5).ids.tolist()
    assert tp.trial_pool(_pool(), PlanKnobs(), 5).ids.tolist() != tp.trial_pool(_pool(), PlanKnobs(), 6).ids.tolist()


def test_a_pool_smaller_than_the_last_rung_gives_it_no_new_rows():
    pool = _pool(6)
    plans = tp.rung_plans(pool, PlanKnobs(), PROTOCOL)
    assert [p.num_rows for p in plans] == [4 * 3 + 1 * 2, 2 * 3]  # 2 new identities: too few for a pair


def _trial(sweep, **params):
    cfg = sweep()
    from synthface_ray import config
    from synthface_ray.generate.config import Config as GenerateConfig

    spec = make_spec(cfg, config.load(GenerateConfig, cfg.job))
    reports = []
    spec.run(params, reports.append)
    return reports


def test_two_trials_with_identical_settings_report_identical_metrics(sweep):
    params = {"plan.mix_lambda": 0.4, "sampler.negative.w_max": 0.7}
    first, second = _trial(sweep, **params), _trial(sweep, **params)
    assert first == second and [r["rung"] for r in first] == [1, 2]
    assert [r["images"] for r in first] == [4 * 2 + 1 * 2, 8 * 2 + 2 * 2]  # one pair per 4 new identities
    other = _trial(sweep, **{**params, "sampler.negative.w_max": 1.9})
    assert other[-1]["eer"] != first[-1]["eer"] or other[-1]["fdr"] != first[-1]["fdr"]


def test_a_trial_reports_every_metric_of_the_objective_list(sweep):
    report = _trial(sweep, **{"plan.mix_lambda": 0.5, "sampler.negative.w_max": 1.0})[-1]
    proxy = set(METRICS) - set(DOWNSTREAM_METRICS)  # downstream_*: only with downstream.enabled
    assert proxy <= set(report)  # every name an objective may use is produced
    assert not set(DOWNSTREAM_METRICS) & set(report)
    assert report["objective"] == report["eer"]
    assert all(np.isfinite(report[m]) for m in proxy)
