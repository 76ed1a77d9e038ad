"""Storage credentials of a training config never reach Ray Train's run state in clear (issue 21,
item 4): Ray Train keeps ``train_loop_config`` and shows it on the dashboard's Train page, so the
config goes there redacted and the workers get the secrets bound to their entry function."""

from __future__ import annotations

import json

import pytest

from synthface_ray import config
from synthface_ray.config import ConfigError, from_dict
from synthface_ray.data.faces import write_faces
from synthface_ray.data.toyfaces import ToyFacesConfig, toyfaces_table
from synthface_ray.train import job
from synthface_ray.train.fr_job import TASK
from synthface_ray.train.recognition import TrainFRConfig

KEY_ID, SECRET = "AKIAEXAMPLEKEYID", "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def fr_config(tmp_path) -> TrainFRConfig:
    data = str(tmp_path / "faces")
    write_faces(toyfaces_table(ToyFacesConfig(identities=4, images_per_identity=4, resolution=16)), data)
    return from_dict(TrainFRConfig, {
        "backbone": {"input_size": 32, "width": 4, "embedding_dim": 16},
        "optim": {"micro_batch": 4, "max_steps": 2},
        "scaling": {"num_workers": 1, "cpus_per_worker": 0.5},
        "run": {"storage_path": str(tmp_path / "runs"), "name": "fr"},
        "data": {"path": data},
        "storage": {"access_key_id": KEY_ID, "secret_access_key": SECRET},
    })


def test_the_worker_config_is_the_redacted_config_with_its_secrets_put_back(tmp_path):
    cfg = fr_config(tmp_path)
    loop_config = {"config": config.to_dict(cfg)}
    assert SECRET not in json.dumps(loop_config) and KEY_ID not in json.dumps(loop_config)
    assert job.worker_config(TASK, loop_config, config.secret_values(cfg)) == cfg
    # the redacted config alone is refused, never sent to S3 as a credential
    with pytest.raises(ConfigError, match="storage.access_key_id is <redacted>"):
        job.worker_config(TASK, loop_config, None)


@pytest.mark.slow
def test_ray_trains_run_state_gets_the_config_redacted(ray_local, tmp_path):
    """The real TorchTrainer (not started): its train_loop_config, which Ray Train exports as
    the run's settings, holds no credential; the worker function carries them."""
    cfg, facts = job.preflight(TASK, fr_config(tmp_path))
    trainer = job.trainer(TASK, cfg, facts, use_gpu=False)
    state = json.dumps(trainer.train_loop_config, default=str)
    assert SECRET not in state and KEY_ID not in state
    assert trainer.train_loop_config["config"]["storage"]["secret_access_key"] == "<redacted>"
    bound = trainer.train_loop_per_worker.keywords["secrets"]
    assert bound == {"storage.access_key_id": KEY_ID, "storage.secret_access_key": SECRET}
    assert job.worker_config(TASK, trainer.train_loop_config, bound).storage == cfg.storage
