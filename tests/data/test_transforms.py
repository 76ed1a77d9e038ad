from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from helpers import jpeg_bytes, png_bytes

from synthface_ray.data import schema, transforms
from synthface_ray.data.transforms import CorruptImageError, DecodeReport


def test_model_range_round_trip():
    pixels = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    images = transforms.to_model_range(pixels)
    assert images.shape == (4, 3, 8, 8) and images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    np.testing.assert_array_equal(transforms.from_model_range(images), pixels)


def test_decode_png_jpeg_and_resize():
    assert transforms.decode_image(png_bytes(1, 16)).shape == (16, 16, 3)
    assert transforms.decode_image(jpeg_bytes(1, 16), 32).shape == (32, 32, 3)
    pixels = transforms.decode_image(png_bytes(2, 8))
    np.testing.assert_array_equal(transforms.decode_image(transforms.encode_png(pixels)), pixels)


def bad_batch() -> pa.Table:
    blobs = [png_bytes(0), b"not an image", png_bytes(1), b"", png_bytes(2)[:40]]
    paths = ["a.png", "b.png", None, "d.png", "e.png"]
    return schema.faces_table(blobs, [0, 1, 2, 3, 4], 0, paths=paths)


def test_corrupt_images_are_skipped_counted_and_reported():
    report = DecodeReport()
    out = transforms.decode_batch(bad_batch(), 16, row_offset=100, report=report)
    assert out["image"].shape == (2, 3, 16, 16)
    assert out["label"].tolist() == [0, 2] and out["source"].tolist() == [0, 0]
    assert report.skipped == 3 and report.decoded == 2
    assert [(row, path) for row, path, _ in report.examples] == [(101, "b.png"), (103, "d.png"), (104, "e.png")]
    text = report.summary()
    assert "skipped 3" in text and "row 101 (b.png)" in text


def test_strict_mode_raises_naming_the_row():
    with pytest.raises(CorruptImageError, match=r"row 11 \(b.png\)"):
        transforms.decode_batch(bad_batch(), 16, strict=True, row_offset=10)


def test_mixed_sizes_without_resolution_are_reported():
    table = schema.faces_table([png_bytes(0, 8), png_bytes(1, 16)], [0, 1], 0)
    report = DecodeReport()
    out = transforms.decode_batch(table, None, report=report)
    assert out["image"].shape == (1, 3, 8, 8) and report.skipped == 1
    assert "set a resolution" in report.examples[0][2]


def test_pixels_to_model_matches_to_model_range_and_keeps_floats():
    import torch

    from synthface_ray.data.transforms import pixels_to_model, to_model_range

    pixels = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    out = pixels_to_model(torch.from_numpy(pixels))
    assert np.allclose(out.numpy(), to_model_range(pixels), atol=1e-6)
    assert out.is_contiguous()  # NCHW memory, not a channels-last view (see its docstring)
    floats = torch.rand(2, 3, 4, 4)
    assert pixels_to_model(floats) is floats


def test_decode_batch_can_keep_uint8_pixels():
    from synthface_ray.data.schema import faces_table
    from synthface_ray.data.transforms import decode_batch, to_model_range

    table = faces_table([png_bytes(seed=1), png_bytes(seed=2)], [3, 4])
    raw = decode_batch(table, 8, model_range=False)
    assert raw["image"].dtype == np.uint8 and raw["image"].shape == (2, 8, 8, 3)
    assert np.array_equal(to_model_range(raw["image"]), decode_batch(table, 8)["image"])
    assert raw["label"].tolist() == [3, 4]
