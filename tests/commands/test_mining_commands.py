"""identities -> mine -> plan (and cka) through the CLI, on real files, with the bad inputs."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthface_ray import cli
from synthface_ray.data.identities import embeddings_of, identities_table


def _ids(path) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(path)
    return table.column("identity_id").to_numpy(), embeddings_of(table)


@pytest.fixture
def made(tmp_path, capsys):
    out = tmp_path / "ids.parquet"
    assert cli.main(["identities", "--out", str(out), "--set", "source.count=400", "--set", "source.dim=16",
                     "--set", "filter.tau=0.5", "--set", "source.id_offset=100"]) == 0
    return out, capsys.readouterr().out


def test_identities_keep_a_unique_set_and_report_it(made):
    out, printed = made
    ids, emb = _ids(out)
    kept = int(re.search(r"kept (\d+), rejected (\d+)", printed).group(1))
    assert len(ids) == kept < 400 and ids.min() >= 100
    sims = emb @ emb.T
    np.fill_diagonal(sims, -1)
    assert sims.max() <= 0.5 + 1e-6


def test_mine_then_plan(made, tmp_path, capsys):
    ids_path, _ = made
    ids, emb = _ids(ids_path)
    mining = tmp_path / "mining"
    assert cli.main(["mine", "--identities", str(ids_path), "--out", str(mining),
                     "--set", "pairs.count=20", "--set", "negatives.strategy=far"]) == 0
    assert sorted(p.name for p in mining.iterdir()) == ["config.yaml", "mining.json", "mixes.parquet", "negatives.parquet"]
    err = capsys.readouterr().err  # the progress bar (rate, ETA) of the greedy selection
    assert "mine pairs: 100%" in err and "20/20" in err
    mixes = pq.read_table(mining / "mixes.parquet").to_pydict()
    assert len(mixes["identity_id"]) == 20 and min(mixes["identity_id"]) > ids.max()
    used = [i for pair in mixes["mix_ids"] for i in pair]
    assert len(used) == len(set(used)) == 40 and set(used) <= set(ids.tolist())  # cap 1 per identity
    assert all(w == [0.5, 0.5] for w in mixes["mix_weights"])
    negs = pq.read_table(mining / "negatives.parquet").to_pydict()
    assert all(n != i and n in set(ids.tolist()) for i, n in zip(negs["identity_id"], negs["negative_id"], strict=True))

    plan = tmp_path / "plan.parquet"
    assert cli.main(["plan", "--identities", str(ids_path), "--mining", str(mining), "--out", str(plan),
                     "--set", "plan.images_per_identity=3", "--set", "plan.images_per_mix=2"]) == 0
    t = pq.read_table(plan).to_pydict()
    assert len(t["row_id"]) == 3 * len(ids) + 2 * 20 == len(set(t["row_id"]))
    assert len(set(t["seed"])) == len(t["seed"])
    assert "wrote a plan of" in capsys.readouterr().out
    (mining / "mining.json").unlink()  # an incomplete mining folder is refused
    assert cli.main(["plan", "--identities", str(ids_path), "--mining", str(mining),
                     "--out", str(tmp_path / "plan2.parquet")]) == 2
    assert "not a complete" in capsys.readouterr().err


def _write(path, ids, emb):
    pq.write_table(identities_table(ids, emb, "random"), path)
    return str(path)


@pytest.mark.parametrize(("argv", "message"), [
    (["identities", "--set", "filter.tau=1.5"], "tau"),
    (["identities", "--set", "source.kind=pca_gaussian"], "source.real"),
    (["identities", "--set", "source.kind=random", "--set", "source.dim=8", "--set", "filter.leakage_tau=0.3",
      "--set", "source.real=REAL16"], "dimension"),
    (["mine", "--identities", "IDS", "--set", "pairs.count=500"], "more pairs requested than possible"),
    (["mine", "--identities", "NAN", "--set", "negatives.strategy=far"], "NaN"),
    (["mine", "--identities", "IDS", "--set", "negatives.strategy=median"], "negatives.strategy"),
])
def test_bad_input_is_refused_with_the_reason(tmp_path, capsys, argv, message):
    rng = np.random.default_rng(0)
    paths = {"IDS": _write(tmp_path / "ids.parquet", np.arange(50), rng.standard_normal((50, 16))),
             "REAL16": _write(tmp_path / "real.parquet", np.arange(5), rng.standard_normal((5, 16)))}
    nan = identities_table(np.arange(4), rng.standard_normal((4, 8)), "random")
    col = nan.column("embedding").combine_chunks()
    values = col.values.to_numpy().copy()
    values[8] = np.nan
    nan = nan.set_column(1, "embedding", pa.FixedSizeListArray.from_arrays(pa.array(values), 8))
    pq.write_table(nan, tmp_path / "nan.parquet")
    paths["NAN"] = str(tmp_path / "nan.parquet")
    argv = [a.replace("source.real=REAL16", f"source.real={paths['REAL16']}") for a in argv]
    argv = [paths.get(a, a) for a in argv]
    argv += ["--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_cka_of_a_generator_against_class_centres(tmp_path, capsys):
    import torch

    from synthface_ray.models.generator import GeneratorConfig, IdentityGenerator

    torch.manual_seed(0)
    gen = IdentityGenerator(GeneratorConfig(sample_size=16, block_out_channels=(8, 16),
                                            cross_attention_levels=(False, True), attention_head_dim=8,
                                            norm_num_groups=4, context_dim=16, num_identities=30))
    gen.save_pretrained(tmp_path / "gen", extra_metadata={"objective": {"name": "edm", "sigma_data": 0.5,
                                                                        "P_mean": -1.2, "P_std": 1.2}})
    ids = _write(tmp_path / "c.parquet", np.arange(30), np.random.default_rng(1).standard_normal((30, 12)))
    assert cli.main(["cka", "--generator", str(tmp_path / "gen"), "--identities", ids]) == 0
    value = float(re.search(r"over 30 identities: ([0-9.]+)", capsys.readouterr().out).group(1))
    assert 0 <= value <= 1
