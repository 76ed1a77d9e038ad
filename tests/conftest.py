"""Shared fixtures: a real S3 endpoint on loopback (moto server), one local Ray, tiny images."""

from __future__ import annotations

import os

import pytest

from synthface_ray.storage import StorageConfig

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 HTTP server on 127.0.0.1 (random port) for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch, request):
    """A fresh bucket; returns (StorageConfig, "s3://bucket") with credentials in the environment."""
    import boto3

    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    bucket = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-") + f"-{os.getpid()}"
    bucket = "".join(c for c in bucket if c.isalnum() or c == "-")[:60]
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return StorageConfig(endpoint_url=s3_endpoint), f"s3://{bucket}"


@pytest.fixture(scope="session")
def ray_local():
    """One in-process local Ray for the session (never `ray stop`: it kills every Ray process)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {k: os.environ.get(k, v) for k, v in S3_ENV.items()}})
    yield ray
    ray.shutdown()


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (tiny models: faster, and the same kernels every run)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def process_group():
    """World size 1 over gloo, as a Ray Train worker would have it (Ray sets these variables)."""
    import socket

    import torch.distributed as dist

    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}.items():
        os.environ.setdefault(key, value)

    if not dist.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    from synthface_ray.train import deepspeed as ds

    ds.init_distributed(ds.DeepSpeedConfig(), "gloo")
    yield


# tiny real models for generation and tuning tests ----------------------------------------------

@pytest.fixture(scope="session")
def gen_inputs(tmp_path_factory):
    """Tiny real models and inputs (tests/generate, tests/tune): an untrained class-conditioned
    generator (16x16, 10 identities), an untrained FR backbone (32x32 input: images are resized),
    an identities table of its 16-d space and a plan with plain rows, ScoreMix pairs and negatives.
    Paths of the generator, FR model, identities (ids 0..9) and a 44-row plan."""
    from gen_helpers import make_gen_inputs

    return make_gen_inputs(tmp_path_factory.mktemp("geninputs"))

