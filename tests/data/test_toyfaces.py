"""ToyFaces: determinism, schema, batching, rendering, config validation, real difficulty."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from synthface_ray.config import ConfigError
from synthface_ray.data import schema
from synthface_ray.data.toyfaces import (
    IDENTITY_FACTORS,
    NUISANCE_FACTORS,
    ToyFacesConfig,
    grid_image,
    identity_factors,
    iter_toyfaces,
    nuisance_factors,
    pixel_distance_overlap,
    render_arrays,
    render_face,
    toyfaces_table,
)

SMALL = dict(identities=3, images_per_identity=4)


def _pngs(table: pa.Table) -> list[bytes]:
    return table.column("image").combine_chunks().field("bytes").to_pylist()


def test_same_seed_gives_byte_identical_tables_and_other_seed_differs():
    a = toyfaces_table(ToyFacesConfig(seed=7, **SMALL))
    b = toyfaces_table(ToyFacesConfig(seed=7, **SMALL))
    c = toyfaces_table(ToyFacesConfig(seed=8, **SMALL))
    assert a.equals(b)
    assert _pngs(a) == _pngs(b)
    assert all(x != y for x, y in zip(_pngs(a), _pngs(c)))
    assert not np.array_equal(identity_factors(7, 0), identity_factors(8, 0))


def test_first_identity_renders_a_later_range_of_the_same_people():
    """A range starting at first_identity is the same people as in a larger render (byte
    identical), with their own labels and names: disjoint from a set of 0..first_identity-1."""
    whole = toyfaces_table(ToyFacesConfig(seed=3, identities=5, images_per_identity=2))
    later = toyfaces_table(ToyFacesConfig(seed=3, first_identity=3, identities=2, images_per_identity=2))
    assert later.column("label").to_pylist() == [3, 3, 4, 4]
    assert later.column("identity").to_pylist() == ["toy-000003"] * 2 + ["toy-000004"] * 2
    assert _pngs(later) == _pngs(whole)[6:]
    images, labels = render_arrays(ToyFacesConfig(seed=3, first_identity=3, identities=2, images_per_identity=2))
    assert labels.tolist() == [3, 3, 4, 4] and images.shape[0] == 4
    with pytest.raises(ConfigError, match="first_identity"):
        ToyFacesConfig(first_identity=-1)


def test_table_schema_types_and_content():
    cfg = ToyFacesConfig(seed=1, identities=4, images_per_identity=3, resolution=24, source=2)
    table = toyfaces_table(cfg)
    schema.validate_faces_schema(table.schema)
    assert table.num_rows == 12
    assert table.schema.field("image").type.equals(schema.IMAGE_TYPE)
    assert table.schema.field("label").type == pa.int64()
    assert table.schema.field("source").type == pa.int64()
    assert table.schema.field("identity").type == pa.string()
    assert table.schema.field("image_index").type == pa.int64()
    for name, k in (
        ("identity_factors", len(IDENTITY_FACTORS)),
        ("nuisance_factors", len(NUISANCE_FACTORS)),
    ):
        assert table.schema.field(name).type == pa.list_(pa.float32(), k)
    labels = table.column("label").to_pylist()
    assert labels == sorted(labels) and set(labels) == set(range(4))
    assert table.column("image_index").to_pylist() == [0, 1, 2] * 4
    assert set(table.column("source").to_pylist()) == {2}
    assert table.column("identity").to_pylist()[3] == "toy-000001"
    assert (
        table.column("image").combine_chunks().field("path").to_pylist()[4]
        == "toyfaces/000001/0001.png"
    )
    img = Image.open(io.BytesIO(_pngs(table)[5]))
    assert img.format == "PNG" and img.mode == "RGB" and img.size == (24, 24)
    row_factors = np.asarray(table.column("identity_factors").to_pylist()[5], np.float32)
    np.testing.assert_array_equal(row_factors, identity_factors(1, 1))


def test_batching_does_not_change_content():
    cfg = ToyFacesConfig(seed=3, **SMALL)
    batches = list(iter_toyfaces(cfg, rows_per_batch=5))
    assert [t.num_rows for t in batches] == [5, 5, 2]
    assert pa.concat_tables(batches).equals(toyfaces_table(cfg))
    # an image does not depend on which identities / images were rendered with it
    big = toyfaces_table(ToyFacesConfig(seed=3, identities=4, images_per_identity=6))
    assert _pngs(big)[6 + 2] == _pngs(toyfaces_table(cfg))[4 + 2]


@pytest.mark.parametrize("resolution", [16, 32, 128])
def test_render_shape_and_dtype(resolution):
    ident = identity_factors(0, 5)
    nu = nuisance_factors(0, 5, 1, difficulty=0.7, occluder_prob=0.5)
    img = render_face(ident, nu, resolution)
    assert img.shape == (resolution, resolution, 3) and img.dtype == np.uint8
    assert img.std() > 5  # not blank
    np.testing.assert_array_equal(img, render_face(ident, nu, resolution))


def test_factor_vectors():
    ident = identity_factors(0, 3)
    assert ident.dtype == np.float32 and ident.shape == (len(IDENTITY_FACTORS),)
    assert len(IDENTITY_FACTORS) >= 10 and ((ident >= 0) & (ident <= 1)).all()
    calm = dict(zip(NUISANCE_FACTORS, nuisance_factors(0, 3, 2, 0.0, 0.0)))
    assert calm["roll"] == 0 and calm["yaw"] == 0 and calm["scale"] == 1 and calm["noise_std"] == 0
    half = dict(zip(NUISANCE_FACTORS, nuisance_factors(0, 3, 2, 0.5, 0.0)))
    full = dict(zip(NUISANCE_FACTORS, nuisance_factors(0, 3, 2, 1.0, 0.0)))
    assert full["roll"] == pytest.approx(2 * half["roll"], rel=1e-5)
    occluded = [
        nuisance_factors(0, 0, j, 0.5, 1.0)[NUISANCE_FACTORS.index("occluder")] for j in range(20)
    ]
    assert all(o in (1, 2) for o in occluded) and len(set(occluded)) == 2
    assert all(
        nuisance_factors(0, 0, j, 0.5, 0.0)[NUISANCE_FACTORS.index("occluder")] == 0
        for j in range(20)
    )


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"resolution": 8}, "toyfaces.resolution"),
        ({"resolution": 256}, "toyfaces.resolution"),
        ({"identities": 0}, "toyfaces.identities"),
        ({"images_per_identity": 0}, "toyfaces.images_per_identity"),
        ({"difficulty": 1.5}, "toyfaces.difficulty"),
        ({"occluder_prob": -0.1}, "toyfaces.occluder_prob"),
        ({"source": -1}, "toyfaces.source"),
    ],
)
def test_config_validation_names_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ToyFacesConfig(**kwargs)


def test_nuisance_makes_genuine_pairs_overlap_impostors_but_identity_signal_remains():
    images, labels = render_arrays(ToyFacesConfig(seed=0, identities=10, images_per_identity=8))
    stats = pixel_distance_overlap(images, labels, max_pairs=2000, seed=0)
    assert stats["n_genuine"] == 10 * 28
    assert stats["genuine_mean"] < stats["impostor_mean"]  # identity signal exists
    assert stats["pairwise_inversion_rate"] > 0.1  # some genuine pairs farther than impostors
    assert stats["frac_genuine_above_impostor_median"] > 0.05
    assert 0.2 < stats["histogram_overlap"] <= 1.0
    easy, _ = render_arrays(
        ToyFacesConfig(
            seed=0, identities=10, images_per_identity=8, difficulty=0.0, occluder_prob=0.0
        )
    )
    easy_stats = pixel_distance_overlap(easy, labels, max_pairs=2000, seed=0)
    assert easy_stats["genuine_mean"] == 0.0 and easy_stats["pairwise_inversion_rate"] == 0.0


def test_pixel_distance_overlap_matches_brute_force():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 2, 2, 3)).astype(np.uint8)
    labels = np.repeat(np.arange(4), 3)
    stats = pixel_distance_overlap(images, labels, max_pairs=1000, seed=0)
    flat = images.reshape(12, -1) / 255.0
    gen, imp = [], []
    for i in range(12):
        for j in range(i + 1, 12):
            (gen if labels[i] == labels[j] else imp).append(np.linalg.norm(flat[i] - flat[j]))
    gen, imp = np.array(gen), np.array(imp)
    assert stats["n_genuine"] == len(gen) == 12 and stats["n_impostor"] == len(imp) == 54
    assert stats["genuine_mean"] == pytest.approx(gen.mean(), rel=1e-5)
    expected = (gen[:, None] > imp[None, :]).mean() + 0.5 * (gen[:, None] == imp[None, :]).mean()
    assert stats["pairwise_inversion_rate"] == pytest.approx(expected, abs=1e-9)
    assert stats["frac_genuine_above_impostor_median"] == pytest.approx(
        (gen > np.median(imp)).mean()
    )
    capped = pixel_distance_overlap(images, labels, max_pairs=10, seed=0)
    assert capped["n_genuine"] == 10 and capped["n_impostor"] == 10
    with pytest.raises(ValueError):
        pixel_distance_overlap(images, np.arange(12), max_pairs=10, seed=0)


def test_grid_image_size():
    grid = grid_image(ToyFacesConfig(resolution=16), identities=2, images=3, cell=48)
    assert grid.size == (3 * 48, 2 * 48) and grid.mode == "RGB"
