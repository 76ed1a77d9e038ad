"""FR augmentation ops: exact identities, known transforms, range, determinism, per-sample draws."""

from __future__ import annotations

import pytest
import torch

from synthface_ray.config import ConfigError
from synthface_ray.data import augment as A


def batch(n: int = 6, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_flip_mirrors_exactly_the_selected_rows():
    x = batch()
    mask = torch.tensor([True, False, True, False, False, True])
    out = A.hflip(x, mask)
    assert torch.equal(out[mask], x[mask].flip(-1)) and torch.equal(out[~mask], x[~mask])


def test_full_crop_is_the_identity_and_a_half_crop_zooms():
    x = batch()
    ones, zeros = torch.ones(6), torch.zeros(6)
    assert torch.allclose(A.random_resized_crop(x, ones, zeros, torch.zeros(6, 2)), x, atol=1e-5)
    # a quarter of the area in the top-left corner: the output's top-left pixel comes from there
    img = torch.zeros(1, 3, 16, 16)
    img[..., :8, :8] = 1.0
    out = A.random_resized_crop(img, torch.tensor([0.25]), torch.zeros(1), torch.tensor([[-1.0, -1.0]]))
    assert torch.allclose(out[..., :14, :14], torch.ones(1, 3, 14, 14), atol=1e-5)  # bilinear edge
    assert out.mean() > 0.95


@pytest.mark.parametrize("name", sorted(A.RANDAUGMENT_OPS))
def test_every_op_keeps_shape_and_range_and_is_the_identity_at_level_zero(name):
    x = batch()
    op = A.RANDAUGMENT_OPS[name]
    out = op(x, torch.full((6,), 0.9))
    assert out.shape == x.shape and out.min() >= -1 - 1e-6 and out.max() <= 1 + 1e-6
    if name != "posterize":  # posterize at level 0 still quantises to 8 bits
        assert torch.allclose(op(x, torch.zeros(6)), x, atol=1e-5), name
    assert not torch.allclose(out, x, atol=1e-3), name


def test_rotation_by_known_angle_moves_a_known_pixel():
    img = torch.full((1, 3, 17, 17), -1.0)
    img[..., 8, 14] = 1.0  # right of the centre
    out = A.rotate(img, torch.tensor([3.0]))  # 3 x 30 = 90 degrees
    # output (x, y) samples input (-y, x): input column 14, row 8 lands on row 2, column 8
    assert out[0, 0].argmax().item() == 2 * 17 + 8 and out[0, 0, 2, 8] > 0.99


def test_augment_is_seeded_and_per_sample():
    cfg = A.AugmentConfig(flip=0.5, crop_scale=0.7, color=0.3, randaugment_n=2, randaugment_m=9)
    x = batch(8).repeat(1, 1, 1, 1)
    a = A.augment(x, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, A.augment(x, cfg, torch.Generator().manual_seed(1)))
    same = batch(1).repeat(8, 1, 1, 1)
    out = A.augment(same, cfg, torch.Generator().manual_seed(2))
    assert len({round(float(o.sum()), 4) for o in out}) == 8  # every row its own parameters
    assert torch.equal(A.augment(x, A.AugmentConfig(flip=0.0)), x)
    assert torch.equal(A.randaugment(x, 0, 9), x)


def test_config_validation():
    with pytest.raises(ConfigError, match="augment.randaugment_m"):
        A.AugmentConfig(randaugment_m=31)
    with pytest.raises(ConfigError, match="augment.flip"):
        A.AugmentConfig(flip=2)
