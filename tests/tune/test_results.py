"""Results table, Pareto front, best trial and the knob plots (pure)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from synthface_ray.config import from_dict
from synthface_ray.tune import results
from synthface_ray.tune.config import Config
from synthface_ray.tune.plots import knob_png


def test_pareto_front_keeps_exactly_the_non_dominated_rows():
    values = np.array([[0.10, 0.30], [0.12, 0.35], [0.11, 0.20], [0.10, 0.30], [0.20, 0.40], [0.15, 0.33]])
    # min the first, max the second: row 2 is dominated by 0, row 5 by 1; 0 and 3 tie (both kept)
    assert results.pareto_front(values, ["min", "max"]).tolist() == [True, True, False, True, True, False]
    assert results.pareto_front(values[:, :1], ["min"]).tolist() == [True, False, False, True, False, False]


def _row(i, status_rung, eer, div, lam):
    return results.trial_row(f"t{i}", {"plan.mix_lambda": lam},
                             {"rung": status_rung, "eer": eer, "diversity_fr": div, "objective": eer,
                              "identities": 8, "images": 32}, None, last_rung=2)


def test_best_is_the_best_completed_trial_not_a_stopped_one():
    rows = [_row(0, 2, 0.20, 0.3, 0.5), _row(1, 1, 0.01, 0.3, 0.4), _row(2, 2, 0.15, 0.1, 0.6),
            results.trial_row("t3", {"plan.mix_lambda": 0.7}, {}, "RuntimeError('boom')", last_rung=2)]
    table = results.results_table(rows)
    assert table.column("status").to_pylist() == ["completed", "stopped", "completed", "error"]
    best = results.best_rows(table, from_dict(Config, {}))
    assert [r["trial_id"] for r in best] == ["t2"] and results.params_of(best[0]) == {"plan.mix_lambda": 0.6}
    multi = from_dict(Config, {"objective": {"multi": {"eer": "min", "diversity_fr": "max"}},
                               "search": {"algorithm": "optuna", "scheduler": "fifo"}})
    assert [r["trial_id"] for r in results.best_rows(table, multi)] == ["t2", "t0"]
    lines = results.summary_lines(table, best, from_dict(Config, {}))
    assert lines[0] == "4 trials: 2 completed every rung, 1 stopped early, 1 failed" and "t2" in lines[1]


@pytest.mark.parametrize("xs, log", [([0.1, 0.5, 2.0, 3.0], True), ([0.2, 0.4, 0.4, 0.8], False),
                                     (["far", "null", "far", "mid"], False), ([1.0, 1.0, 1.0, 1.0], False)])
def test_knob_plots_are_pngs_with_a_point_per_trial(xs, log):
    png = knob_png(xs, [0.1, 0.2, 0.15, 0.3], ["completed", "stopped", "best", "completed"], "knob", "eer", log)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert img.shape == (420, 640, 3)
    assert ((img == (210, 40, 40)).all(-1)).sum() > 50  # the best trial's red marker is drawn
    assert knob_png(xs, [0.1, 0.2, 0.15, 0.3], ["completed"] * 4, "knob", "eer", log) == knob_png(
        xs, [0.1, 0.2, 0.15, 0.3], ["completed"] * 4, "knob", "eer", log)
