"""insightface .bin verification sets: written by the test in that format, read back safely."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from helpers import png_bytes

from synthface_ray.data.formats.verification_bin import (
    read_verification_bin,
    write_verification_bin,
)


def test_reads_the_insightface_layout(tmp_path):
    images = [png_bytes(seed=i) for i in range(6)]
    issame = [True, False, True]
    with open(tmp_path / "lfw.bin", "wb") as fh:  # as insightface writes it
        pickle.dump((images, issame), fh, protocol=pickle.HIGHEST_PROTOCOL)
    got, same = read_verification_bin(str(tmp_path / "lfw.bin"))
    assert got == images and same.tolist() == issame


def test_numpy_image_entries_and_round_trip(tmp_path):
    images = [np.frombuffer(png_bytes(seed=i), np.uint8) for i in range(4)]
    with open(tmp_path / "cfp.bin", "wb") as fh:
        pickle.dump((images, np.array([True, False])), fh)
    got, same = read_verification_bin(str(tmp_path / "cfp.bin"))
    assert got == [a.tobytes() for a in images] and same.tolist() == [True, False]
    write_verification_bin(got, same, str(tmp_path / "again.bin"))
    assert read_verification_bin(str(tmp_path / "again.bin"))[0] == got


def test_refuses_code_and_malformed_files(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "evil.bin", "wb") as fh:
        pickle.dump(([Evil()], []), fh)
    with pytest.raises(ValueError, match="not part of an insightface verification"):
        read_verification_bin(str(tmp_path / "evil.bin"))
    with open(tmp_path / "odd.bin", "wb") as fh:
        pickle.dump(([b"a", b"b", b"c"], [True]), fh)
    with pytest.raises(ValueError, match="3 images for 1 pairs"):
        read_verification_bin(str(tmp_path / "odd.bin"))
    with pytest.raises(FileNotFoundError):
        read_verification_bin(str(tmp_path / "missing.bin"))
