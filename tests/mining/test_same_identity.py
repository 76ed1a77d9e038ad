"""One person in two sources: each later class matches its nearest earlier class centre above
tau, checked against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from synthface_ray.mining.index import MiningError
from synthface_ray.mining.same_identity import Match, SourceCentres, match_earlier_sources
from tests.mining.test_uniqueness import unit


def reference(sources: list[SourceCentres], tau: float) -> list[tuple]:
    out = []
    for j in range(1, len(sources)):
        for k, c in enumerate(sources[j].centres):
            best = max(((float(c @ e), i, int(sources[i].labels[r])) for i in range(j)
                        for r, e in enumerate(sources[i].centres)), default=None)
            if best is not None and best[0] > tau:
                out.append((j, int(sources[j].labels[k]), best[1], best[2]))
    return out


def test_matches_the_brute_force_reference_across_three_sources():
    real = unit(40, 16, seed=0)
    copies = real[[3, 17, 30]] + 0.05 * unit(3, 16, seed=1)  # three real people, slightly moved
    later = np.concatenate([copies, unit(20, 16, seed=2)])
    third = np.concatenate([later[[1]], unit(5, 16, seed=3)])  # a copy of a copy, and new people
    sources = [SourceCentres(np.arange(40) + 10, real), SourceCentres(np.arange(23) + 500, later),
               SourceCentres(np.arange(6) + 900, third)]
    matches = match_earlier_sources(sources, 0.9)
    assert [(m.source, m.label, m.match_source, m.match_label) for m in matches] == reference(sources, 0.9)
    assert [(m.label, m.match_label) for m in matches[:3]] == [(500, 13), (501, 27), (502, 40)]
    assert matches[3].source == 2 and matches[3].label == 900
    assert all(m.cosine > 0.9 for m in matches) and len(matches) == 4


def test_threshold_is_strict_and_a_source_may_be_empty():
    a = np.eye(4, dtype=np.float32)[:2]  # e0, e1
    b = np.array([[1, 0, 0, 0], [0, 0.5, 0.75 ** 0.5, 0]], np.float32)  # cosines 1 to row 0, 0.5 to row 1
    sources = [SourceCentres(np.arange(2), a), SourceCentres(np.array([7, 8]), b)]
    assert [(m.label, m.match_label) for m in match_earlier_sources(sources, 0.5)] == [(7, 0)]
    got = match_earlier_sources(sources, 0.4)
    assert [(m.label, m.match_label) for m in got] == [(7, 0), (8, 1)]
    assert got[1] == Match(1, 8, 0, 1, pytest.approx(0.5))
    empty = SourceCentres(np.zeros(0, np.int64), np.zeros((0, 4), np.float32))
    assert match_earlier_sources([empty, *sources], 0.5)[0].match_source == 1
    assert match_earlier_sources([sources[0], empty], 0.5) == []
    assert match_earlier_sources([sources[0]], 0.5) == []


@pytest.mark.parametrize(("sources", "tau", "message"), [
    ([SourceCentres(np.arange(2), unit(2, 4)), SourceCentres(np.arange(2), unit(2, 8))], 0.5,
     "dimension mismatch"),
    ([SourceCentres(np.arange(3), unit(2, 4))], 0.5, "3 labels but 2 centres"),
    ([SourceCentres(np.arange(2), unit(2, 4))], 1.0, "open interval"),
    ([SourceCentres(np.arange(2), np.full((2, 4), np.nan, np.float32))], 0.5, "NaN or inf"),
])
def test_bad_input_is_named(sources, tau, message):
    with pytest.raises((MiningError, ValueError), match=message):
        match_earlier_sources(sources, tau)
