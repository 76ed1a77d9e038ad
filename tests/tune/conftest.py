"""A tiny sweep over the ``gen_inputs`` models: 10 identities, rungs of 4 -> 8, 2 images each."""

from __future__ import annotations

import pytest
import yaml
from gen_helpers import SAMPLER

from synthface_ray import config
from synthface_ray.tune.config import Config

SPACE = {"plan.mix_lambda": {"uniform": [0.2, 0.8]}, "sampler.negative.w_max": {"uniform": [0.0, 2.0]}}


@pytest.fixture(scope="session")
def tiny_job(gen_inputs):
    """A generate job YAML over the tiny models (the sweep's base job)."""
    job = {"input": {"plan": gen_inputs["plan"], "identities": gen_inputs["identities"]},
           "model": {"generator": gen_inputs["generator"], "fr": gen_inputs["fr"]},
           "sampler": dict(SAMPLER), "pool": {"micro_batch": 5, "cpus_per_actor": 0.25, "fr_cpus": 0.25,
                                              "encode_cpus": 0.5},
           "output": {"rows_per_file": 12}, "grid": {"enabled": False}}
    path = gen_inputs["root"] / "tune_job.yaml"
    path.write_text(yaml.safe_dump(job))
    return str(path)


@pytest.fixture
def sweep(tiny_job, tmp_path):
    """``sweep(**dotted_overrides) -> Config`` of a tiny ASHA sweep written under tmp_path."""

    def make(space=None, **overrides) -> Config:
        base = {"job": tiny_job, "space": space or SPACE,
                "protocol": {"min_identities": 4, "max_identities": 8, "growth": 2, "images_per_identity": 2,
                             "mix_fraction": 0.5, "images_per_mix": 2, "seed": 0},
                "search": {"samples": 4, "concurrent": 2, "seed": 0},
                "resources": {"cpus": 0.5, "torch_threads": 1},
                "verification": {"genuine": 200, "impostor": 200},
                "output": {"path": str(tmp_path / "tune"), "name": "tiny"}}
        return config.from_dict(Config, config.apply_overrides(base, [f"{k}={v}" for k, v in overrides.items()]))

    return make
