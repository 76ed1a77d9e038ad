"""Tiny real sets for the benchmark tests: a real training set (8 ToyFaces identities x 6 images,
16 px), a second training source from other people (labels 100..103), and a real test set of
5 identities rendered after them (first_identity=8, at 24 px: the trials resize it)."""

from __future__ import annotations

import pyarrow as pa
import pytest
import yaml

from synthface_ray import config
from synthface_ray.benchmark.config import Config
from synthface_ray.data.faces import write_faces
from synthface_ray.data.toyfaces import ToyFacesConfig, toyfaces_table

TRAIN = {
    "backbone": {"input_size": 32, "width": 4, "embedding_dim": 16},
    "margin": {"s": 16.0, "m": 0.2},
    "optim": {"micro_batch": 4, "max_steps": 4, "lr": 0.05},
    "scaling": {"num_workers": 1, "cpus_per_worker": 0.5, "torch_threads": 1},
    "run": {"report_every": 2, "checkpoint_every": 2},
    "data": {"shuffle_buffer": 8},
}


def toy(path, **kwargs) -> str:
    write_faces(toyfaces_table(ToyFacesConfig(**kwargs)), str(path))
    return str(path)


@pytest.fixture(scope="session")
def bench_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_sets")
    other = toyfaces_table(ToyFacesConfig(seed=1, identities=4, images_per_identity=6, resolution=16))
    other = other.set_column(other.schema.get_field_index("label"), "label",
                             pa.array(other.column("label").to_numpy() + 100))
    other = other.drop_columns(["identity"])  # like a generated set: no identity names
    write_faces(other, str(root / "other"))
    (root / "train.yaml").write_text(yaml.safe_dump(TRAIN))
    return {"real": toy(root / "real", identities=8, images_per_identity=6, resolution=16),
            "other": str(root / "other"),
            "test": toy(root / "test", first_identity=8, identities=5, images_per_identity=4, resolution=24),
            "train": str(root / "train.yaml"), "root": root}


@pytest.fixture
def bench(bench_sets, tmp_path):
    """``bench(**dotted_overrides) -> Config``: arms real (24-image budget) and random_init, seeds
    0 and 1, written under tmp_path."""

    def make(**overrides) -> Config:
        base = {"train": {"config": bench_sets["train"]},
                "test": {"sets": [{"name": "unseen", "path": bench_sets["test"]}], "genuine": 60, "impostor": 60,
                         "folds": 5},
                "arms": [{"name": "real", "sources": [{"path": bench_sets["real"], "images": 24}]}],
                "seeds": [0, 1], "resources": {"concurrent": 1, "cpus": 0.25},
                "output": {"path": str(tmp_path / "bench"), "name": "tiny"}}
        return config.from_dict(Config, config.apply_dotted(base, overrides))

    return make
