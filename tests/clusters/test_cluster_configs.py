"""clusters/: the Ray cluster launcher configs pass Ray's own validation (and broken copies do not),
the KubeRay manifests have the fields the ray.io/v1 CRDs require, the security defaults hold
(token authentication, no public dashboard, instance roles instead of keys) and no file under
clusters/ holds a credential. Nothing here needs a cloud account or the network."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.providers import _get_default_config
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ROOT / "clusters"
LAUNCHER = sorted(CLUSTERS.glob("*.yaml"))
NETWORK_POLICY = CLUSTERS / "kuberay" / "networkpolicy.yaml"
KUBERAY = sorted(p for p in (CLUSTERS / "kuberay").glob("*.yaml") if p != NETWORK_POLICY)

# What each instance / machine type has (provider documentation): the node types may not
# advertise more than this, and must advertise exactly its GPUs.
MACHINES = {
    "g6.xlarge": {"CPU": 4, "GPU": 1}, "g5.xlarge": {"CPU": 4, "GPU": 1},
    "p4d.24xlarge": {"CPU": 96, "GPU": 8}, "p5.48xlarge": {"CPU": 192, "GPU": 8},
    "g2-standard-8": {"CPU": 8, "GPU": 1}, "a2-highgpu-8g": {"CPU": 96, "GPU": 8},
    "a3-highgpu-8g": {"CPU": 208, "GPU": 8},
}
EXPECTED_TYPES = {
    "aws": {"gen_l4": "g6.xlarge", "gen_l4_spot": "g6.xlarge", "train_a100": "p4d.24xlarge",
            "train_h100": "p5.48xlarge"},
    "gcp": {"gen_l4": "g2-standard-8", "gen_l4_spot": "g2-standard-8",
            "train_a100": "a2-highgpu-8g", "train_h100": "a3-highgpu-8g"},
}
IMAGE_RE = re.compile(r"^rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-py311-(?P<cuda>gpu|cu12\d)$")
COMMAND_LISTS = ("initialization_commands", "setup_commands", "head_setup_commands",
                 "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")     # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def load(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def ray_check(config: dict) -> dict:
    """What `ray up` does to a config before touching a cloud: fill in the provider's defaults
    (prepare_config: defaults.yaml, merged setup commands, docker checks, per-type min/max
    workers), then validate it against ray-schema.json and Ray's own rules (validate_config)."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def node_types(config: dict) -> dict:
    return config["available_node_types"]


def workers(config: dict) -> dict:
    return {k: v for k, v in node_types(config).items() if k != config["head_node_type"]}


def machine(node_config: dict) -> str:
    return node_config.get("InstanceType") or node_config["machineType"]


def start_command(config: dict, key: str) -> str:
    """The command of a start list that runs `ray start`."""
    (cmd,) = [c for c in config[key] if "ray start" in c]
    return cmd


def is_spot(node_config: dict) -> bool:
    market = node_config.get("InstanceMarketOptions", {}).get("MarketType")
    scheduling = node_config.get("scheduling", {})
    return market == "spot" or scheduling.get("provisioningModel") == "SPOT" or bool(
        scheduling.get("preemptible"))


@pytest.fixture(scope="module", params=LAUNCHER, ids=lambda p: p.name)
def launcher(request) -> tuple[Path, dict]:
    return request.param, load(request.param)


def test_the_launcher_configs_and_manifests_are_there():
    assert [p.name for p in LAUNCHER] == ["aws.yaml", "gcp.yaml"]
    assert [p.name for p in KUBERAY] == ["raycluster.yaml", "rayjob.yaml"]
    assert NETWORK_POLICY.is_file()
    assert ray.__version__ == "2.60.0"      # the Ray these files are written (and validated) for


# -- Ray's own validation ---------------------------------------------------------------------------


def test_ray_accepts_the_config(launcher):
    path, config = launcher
    prepared = ray_check(config)
    assert prepared["provider"]["type"] == path.stem
    # The head gets max_workers 0 and every type keeps the bounds written in the file.
    assert prepared["available_node_types"][config["head_node_type"]]["max_workers"] == 0
    for name, node in workers(config).items():
        assert prepared["available_node_types"][name]["min_workers"] == node["min_workers"]
        assert prepared["available_node_types"][name]["max_workers"] == node["max_workers"]


def test_no_ray_default_leaks_into_the_config(launcher):
    """prepare_config merges the provider's defaults.yaml with a SHALLOW update: any top-level key
    the file leaves out comes from Ray's defaults (for aws/gcp they include setup commands that
    pip install a Ray nightly wheel). So every key of the defaults is set here, and the commands
    Ray will run are exactly the file's."""
    _, config = launcher
    defaults = _get_default_config(config["provider"])
    assert set(defaults) - set(config) == set()
    prepared = ray_check(config)
    for key in COMMAND_LISTS:
        assert isinstance(config[key], list)
    assert prepared["head_setup_commands"] == config["setup_commands"] + config["head_setup_commands"]
    assert prepared["worker_setup_commands"] == config["setup_commands"] + config["worker_setup_commands"]
    assert prepared["head_start_ray_commands"] == config["head_start_ray_commands"]
    assert prepared["worker_start_ray_commands"] == config["worker_start_ray_commands"]


def _drop_provider(c):
    del c["provider"]


def _unknown_top_level_key(c):
    c["max_worker"] = 4            # a typo of max_workers


def _negative_max_workers(c):
    c["max_workers"] = -1


def _node_type_without_resources(c):
    del c["available_node_types"]["gen_l4"]["resources"]


def _fractional_gpu_resource(c):
    c["available_node_types"]["gen_l4"]["resources"]["GPU"] = 0.5


def _unknown_node_type_key(c):
    c["available_node_types"]["gen_l4"]["min_worker"] = 1


def _unknown_docker_key(c):
    c["docker"]["runOptions"] = ["--gpus all"]


def _min_workers_above_cluster_max(c):
    c["available_node_types"]["train_a100"]["min_workers"] = c["max_workers"] + 1


def _head_type_not_defined(c):
    c["head_node_type"] = "no_such_type"


def _command_not_a_string(c):
    c["worker_start_ray_commands"].append(["ray", "start"])


BROKEN = [
    (_drop_provider, jsonschema.ValidationError, "'provider' is a required property"),
    (_unknown_top_level_key, jsonschema.ValidationError, "Additional properties"),
    (_negative_max_workers, jsonschema.ValidationError, "less than the minimum"),
    (_node_type_without_resources, jsonschema.ValidationError, "'resources' is a required property"),
    (_fractional_gpu_resource, jsonschema.ValidationError, "is not of type 'integer'"),
    (_unknown_node_type_key, jsonschema.ValidationError, "Additional properties"),
    (_unknown_docker_key, jsonschema.ValidationError, "Additional properties"),
    (_min_workers_above_cluster_max, ValueError, "sum of `min_workers`"),
    (_head_type_not_defined, ValueError, "must be one of `available_node_types`"),
    (_command_not_a_string, jsonschema.ValidationError, "is not of type 'string'"),
]


@pytest.mark.parametrize("break_it,error,message", BROKEN, ids=[b[0].__name__[1:] for b in BROKEN])
def test_ray_rejects_a_broken_copy(launcher, break_it, error, message):
    """The same validator refuses a broken copy of each file (applied to the prepared config, so
    no default hides the break), i.e. test_ray_accepts_the_config can fail."""
    _, config = launcher
    prepared = ray_check(config)
    break_it(prepared)
    with pytest.raises(error, match=re.escape(message)):
        validate_config(prepared)


def test_ray_rejects_a_typo_through_the_whole_pipeline(launcher):
    _, config = launcher
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gen_l4"]["max_worker"] = 16
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        ray_check(broken)


# -- structure --------------------------------------------------------------------------------------


def test_the_head_is_cpu_only_and_runs_no_tasks(launcher):
    _, config = launcher
    head = node_types(config)[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert head["resources"]["CPU"] == 0
    node_config = head["node_config"]
    assert machine(node_config) not in MACHINES
    assert not re.match(r"^(g\d|p\d|a\d)", machine(node_config))    # no GPU instance family
    assert "guestAccelerators" not in node_config
    assert not is_spot(node_config)
    # GPUs are handed to the worker containers only (`--gpus all` fails on a host without GPUs).
    assert not any("--gpus" in opt for opt in config["docker"].get("run_options", []))
    assert not any("--gpus" in opt for opt in config["docker"].get("head_run_options", []))
    assert "--gpus all" in config["docker"]["worker_run_options"]


def test_gpu_worker_types_sized_and_bounded(launcher):
    path, config = launcher
    types = workers(config)
    for name, expected in EXPECTED_TYPES[path.stem].items():
        assert machine(types[name]["node_config"]) == expected, name
    for name, node in types.items():
        spec = MACHINES[machine(node["node_config"])]
        assert node["resources"]["GPU"] == spec["GPU"], name
        assert 0 < node["resources"]["CPU"] <= spec["CPU"], name
        assert 0 <= node["min_workers"] <= node["max_workers"] <= config["max_workers"], name
    assert sum(node.get("min_workers", 0) for node in node_types(config).values()) <= config["max_workers"]
    assert config["idle_timeout_minutes"] > 0
    assert config["provider"]["cache_stopped_nodes"] is False


@pytest.mark.parametrize("job", sorted(p.name for p in (ROOT / "jobs").glob("train*.yaml")))
def test_every_training_job_fits_one_training_node(launcher, job):
    """The comments promise one node per training run (NVLink, no inter-node collectives)."""
    _, config = launcher
    scaling = load(ROOT / "jobs" / job).get("scaling", {})
    ranks = scaling.get("num_workers", 1)
    cpus = ranks * scaling.get("cpus_per_worker", 1)
    for name in ("train_a100", "train_h100"):
        resources = node_types(config)[name]["resources"]
        assert ranks <= resources["GPU"] and cpus <= resources["CPU"], (job, name)


def test_image_is_rays_cuda_image_for_this_ray_and_python(launcher):
    _, config = launcher
    images = [config["docker"][k] for k in ("image", "head_image", "worker_image") if k in config["docker"]]
    images += [t["docker"]["worker_image"] for t in node_types(config).values()
               if "worker_image" in t.get("docker", {})]
    for image in images:
        match = IMAGE_RE.match(image)
        assert match, image
        assert match["ray"] == ray.__version__
        assert "ray-ml" not in image
    assert any("ray[" in dep and ray.__version__.rsplit(".", 1)[0] in dep
               for dep in pyproject()["project"]["dependencies"])


def test_setup_installs_the_repo_with_its_gpu_extra(launcher):
    _, config = launcher
    assert "gpu" in pyproject()["project"]["optional-dependencies"]
    assert config["file_mounts"] == {"~/synthface-ray": "."}
    installs = [c for c in config["setup_commands"] if re.search(r'pip install .*-e "\$HOME/synthface-ray\[gpu\]"', c)]
    assert len(installs) == 1
    # a quoted "~" is not expanded by the shell, and pip does not expand it either
    assert not any(re.search(r"""["']~/""", c) for c in config["setup_commands"])
    for excluded in (".venv", "runs", ".git", ".env"):
        assert excluded in config["rsync_exclude"]


def test_spot_is_an_option_and_training_is_on_demand(launcher):
    path, config = launcher
    types = workers(config)
    spot = {name for name, node in types.items() if is_spot(node["node_config"])}
    assert spot == {"gen_l4_spot"}
    option, on_demand = types["gen_l4_spot"], types["gen_l4"]
    assert option["min_workers"] == 0
    assert option["resources"] == on_demand["resources"]
    assert option.get("priority", 0) > on_demand.get("priority", 0)   # preferred when enabled
    if path.stem == "aws":
        assert option["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}
    else:
        assert option["node_config"]["scheduling"]["provisioningModel"] == "SPOT"
        # The Compute API takes `scheduling` as an object (Ray's example YAMLs write a list).
        for node in node_types(config).values():
            assert isinstance(node["node_config"].get("scheduling", {}), dict)
    for name in ("train_a100", "train_h100"):
        assert not is_spot(types[name]["node_config"]), name


# -- security ---------------------------------------------------------------------------------------


def ray_start_flags() -> set[str]:
    from ray.scripts.scripts import start

    return {opt for param in start.params for opt in param.opts}


def test_token_auth_on_every_node(launcher):
    path, config = launcher
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        cmd = start_command(config, key)
        assert "export RAY_AUTH_MODE=token;" in cmd, key
        assert cmd.index("RAY_AUTH_MODE=token") < cmd.index("ray start")
        # the token comes from the secret store at start time, never a literal
        token = re.search(r'export RAY_AUTH_TOKEN="\$\((?P<fetch>.+?)\)";', cmd)
        assert token, key
        fetch = token["fetch"]
        if path.stem == "aws":
            assert '"ssm"' in fetch and "/synthface/ray-auth-token" in fetch and "WithDecryption=True" in fetch
            assert f'region_name="{config["provider"]["region"]}"' in fetch
        else:
            assert "secretmanager" in fetch and "synthface-ray-auth-token" in fetch
        # a node without a token does not start an open cluster
        assert re.search(r'test -n "\$RAY_AUTH_TOKEN" \|\| \{ .*exit 1; \}', cmd), key


def test_dashboard_is_local_to_the_head_and_metrics_are_exported(launcher):
    _, config = launcher
    head = start_command(config, "head_start_ray_commands")
    worker = start_command(config, "worker_start_ray_commands")
    assert "--head" in head and "--head" not in worker
    assert "--dashboard-host=127.0.0.1" in head
    for cmd in (head, worker):
        assert "0.0.0.0" not in cmd
        assert "--metrics-export-port=8080" in cmd
        assert "--disable-usage-stats" in cmd


def test_every_ray_start_flag_exists_in_this_ray(launcher):
    _, config = launcher
    known = ray_start_flags()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        cmd = start_command(config, key)
        flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", cmd.split("ray start", 1)[1]))
        assert flags and flags <= known, (key, flags - known)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_every_command_is_valid_bash(launcher):
    _, config = launcher
    for key in COMMAND_LISTS:
        for cmd in config[key]:
            result = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True)
            assert result.returncode == 0, (key, cmd, result.stderr)


def test_cloud_access_comes_from_roles_not_keys(launcher):
    path, config = launcher
    assert "ssh_private_key" not in config["auth"]
    assert "aws_credentials" not in config["provider"]
    assert "gcp_credentials" not in config["provider"]
    for name, node in node_types(config).items():
        node_config = node["node_config"]
        if path.stem == "aws":
            assert set(node_config["IamInstanceProfile"]) <= {"Name", "Arn"}, name
            assert node_config["MetadataOptions"]["HttpTokens"] == "required", name
            assert all(d["Ebs"]["Encrypted"] for d in node_config["BlockDeviceMappings"]), name
        else:
            (account,) = node_config["serviceAccounts"]
            assert account["email"].endswith(".iam.gserviceaccount.com"), name
            assert account["scopes"], name


# -- KubeRay ----------------------------------------------------------------------------------------
# The required fields of the ray.io/v1 CRDs (KubeRay v1.5.1 to v1.7.0: RayCluster.spec requires
# headGroupSpec; headGroupSpec requires template; a worker group requires groupName, minReplicas,
# maxReplicas and template; a container requires name), plus what this project relies on:
# rayStartParams present (a map of strings: an unquoted number is refused by the CRD), an image
# in every container, and RayJob.spec.{entrypoint, rayClusterSpec}.

_CONTAINER = {"type": "object", "required": ["name", "image"],
              "properties": {"name": {"type": "string", "minLength": 1},
                             "image": {"type": "string", "minLength": 1}}}
_POD_TEMPLATE = {"type": "object", "required": ["spec"], "properties": {"spec": {
    "type": "object", "required": ["containers"],
    "properties": {"containers": {"type": "array", "minItems": 1, "items": _CONTAINER},
                   "serviceAccountName": {"type": "string"}}}}}
_START_PARAMS = {"type": "object", "additionalProperties": {"type": "string"}}
_REPLICAS = {"type": "integer", "minimum": 0}
_CLUSTER_SPEC = {"type": "object", "required": ["headGroupSpec"], "properties": {
    "rayVersion": {"type": "string"},
    "enableInTreeAutoscaling": {"type": "boolean"},
    "authOptions": {"type": "object", "additionalProperties": False, "properties": {
        "mode": {"enum": ["disabled", "token"]}, "secretName": {"type": "string"},
        "enableK8sTokenAuth": {"type": "boolean"}}},
    "headGroupSpec": {"type": "object", "required": ["rayStartParams", "template"], "properties": {
        "rayStartParams": _START_PARAMS, "template": _POD_TEMPLATE, "serviceType": {"type": "string"}}},
    "workerGroupSpecs": {"type": "array", "items": {
        "type": "object", "required": ["groupName", "minReplicas", "maxReplicas", "template"],
        "properties": {"groupName": {"type": "string", "minLength": 1}, "replicas": _REPLICAS,
                       "minReplicas": _REPLICAS, "maxReplicas": _REPLICAS,
                       "rayStartParams": _START_PARAMS, "template": _POD_TEMPLATE}}}}}
_METADATA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}}
SCHEMAS = {
    "RayCluster": {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {
        "apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayCluster"},
        "metadata": _METADATA, "spec": _CLUSTER_SPEC}},
    "RayJob": {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {
        "apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayJob"}, "metadata": _METADATA,
        "spec": {"type": "object", "required": ["entrypoint", "rayClusterSpec"], "properties": {
            "entrypoint": {"type": "string", "minLength": 1},
            "rayClusterSpec": _CLUSTER_SPEC,
            "runtimeEnvYAML": {"type": "string"},
            "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
            "shutdownAfterJobFinishes": {"type": "boolean"},
            "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0}}}}},
}


def cluster_spec(manifest: dict) -> dict:
    return manifest["spec"]["rayClusterSpec"] if manifest["kind"] == "RayJob" else manifest["spec"]


def check_manifest(manifest: dict) -> None:
    """The schema above, then minReplicas <= replicas <= maxReplicas (KubeRay's own validation)."""
    jsonschema.validate(manifest, SCHEMAS[manifest.get("kind", "RayCluster")])
    for group in cluster_spec(manifest).get("workerGroupSpecs", []):
        replicas = group.get("replicas", group["minReplicas"])
        if not group["minReplicas"] <= replicas <= group["maxReplicas"]:
            raise ValueError(f"worker group {group['groupName']}: replicas {replicas} outside "
                             f"[{group['minReplicas']}, {group['maxReplicas']}]")


def pod_templates(manifest: dict) -> list[dict]:
    spec = cluster_spec(manifest)
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec.get("workerGroupSpecs", [])]


def containers(manifest: dict) -> list[dict]:
    return [c for t in pod_templates(manifest) for c in t["spec"]["containers"]]


def walk(obj):
    if isinstance(obj, dict):
        yield obj
        for value in obj.values():
            yield from walk(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from walk(value)


@pytest.fixture(scope="module", params=KUBERAY, ids=lambda p: p.name)
def manifest(request) -> dict:
    docs = [d for d in yaml.safe_load_all(request.param.read_text()) if d is not None]
    assert len(docs) == 1
    return docs[0]


def test_kuberay_manifest_has_the_crd_fields(manifest):
    check_manifest(manifest)
    assert manifest["kind"] in ("RayCluster", "RayJob")


def _k_drop_api_version(m):
    del m["apiVersion"]


def _k_old_api_version(m):
    m["apiVersion"] = "ray.io/v1alpha1"


def _k_no_head_template(m):
    del cluster_spec(m)["headGroupSpec"]["template"]


def _k_container_without_image(m):
    del cluster_spec(m)["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]


def _k_no_containers(m):
    cluster_spec(m)["workerGroupSpecs"][0]["template"]["spec"]["containers"] = []


def _k_group_without_name(m):
    del cluster_spec(m)["workerGroupSpecs"][0]["groupName"]


def _k_negative_min_replicas(m):
    cluster_spec(m)["workerGroupSpecs"][0]["minReplicas"] = -1


def _k_unquoted_start_param(m):
    cluster_spec(m)["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0


def _k_replicas_above_max(m):
    group = cluster_spec(m)["workerGroupSpecs"][0]
    group["replicas"] = group["maxReplicas"] + 1


def _k_unknown_auth_mode(m):
    cluster_spec(m)["authOptions"]["mode"] = "password"


KUBERAY_BROKEN = [
    (_k_drop_api_version, jsonschema.ValidationError),
    (_k_old_api_version, jsonschema.ValidationError),
    (_k_no_head_template, jsonschema.ValidationError),
    (_k_container_without_image, jsonschema.ValidationError),
    (_k_no_containers, jsonschema.ValidationError),
    (_k_group_without_name, jsonschema.ValidationError),
    (_k_negative_min_replicas, jsonschema.ValidationError),
    (_k_unquoted_start_param, jsonschema.ValidationError),
    (_k_replicas_above_max, ValueError),
    (_k_unknown_auth_mode, jsonschema.ValidationError),
]


@pytest.mark.parametrize("break_it,error", KUBERAY_BROKEN, ids=[b[0].__name__[3:] for b in KUBERAY_BROKEN])
def test_kuberay_check_rejects_a_broken_copy(manifest, break_it, error):
    broken = copy.deepcopy(manifest)
    break_it(broken)
    with pytest.raises(error):
        check_manifest(broken)


def test_rayjob_without_entrypoint_is_rejected():
    rayjob = load(CLUSTERS / "kuberay" / "rayjob.yaml")
    del rayjob["spec"]["entrypoint"]
    with pytest.raises(jsonschema.ValidationError, match="'entrypoint' is a required property"):
        check_manifest(rayjob)


def test_kuberay_dashboard_is_not_exposed(manifest):
    spec = cluster_spec(manifest)
    head = spec["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP"
    assert head.get("headService", {}).get("spec", {}).get("type", "ClusterIP") == "ClusterIP"
    for node in walk(manifest):
        assert node.get("type") not in ("LoadBalancer", "NodePort")
        assert node.get("serviceType") not in ("LoadBalancer", "NodePort")
        assert node.get("enableIngress") is not True
    # 0.0.0.0 inside the Pod (the operator and RayJob submitters call the dashboard through the
    # ClusterIP Service); KubeRay would default to it anyway, the file says it on purpose.
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"


# -- NetworkPolicy: only the cluster's own Pods reach its ports ------------------------------------
# Inside a Pod Ray listens on all interfaces (dashboard 8265, metrics 8080 without authentication,
# GCS 6379, raylet / object manager / worker ports). networkpolicy.yaml holds one policy per
# manifest: its podSelector picks every Pod of that Ray cluster; one rule admits those same Pods on
# every port; any other rule names its peers and is limited to the dashboard (8265: the RayJob's
# submitter, the operator) or the metrics port (8080: Prometheus).

_SELECTOR = {"type": "object", "required": ["matchLabels"], "additionalProperties": False,
             "properties": {"matchLabels": {"type": "object", "minProperties": 1,
                                            "additionalProperties": {"type": "string"}}}}
_PEER = {"type": "object", "minProperties": 1, "additionalProperties": False,
         "properties": {"podSelector": _SELECTOR, "namespaceSelector": _SELECTOR}}
NETWORK_POLICY_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {
        "apiVersion": {"const": "networking.k8s.io/v1"}, "kind": {"const": "NetworkPolicy"},
        "metadata": _METADATA,
        "spec": {"type": "object", "required": ["podSelector", "policyTypes", "ingress"],
                 "additionalProperties": False, "properties": {
                     "podSelector": _SELECTOR,
                     "policyTypes": {"type": "array", "contains": {"const": "Ingress"}},
                     "ingress": {"type": "array", "minItems": 1, "items": {
                         "type": "object", "required": ["from"], "additionalProperties": False,
                         "properties": {
                             "from": {"type": "array", "minItems": 1, "items": _PEER},
                             "ports": {"type": "array", "minItems": 1, "items": {
                                 "type": "object", "required": ["port"], "properties": {
                                     "protocol": {"const": "TCP"}, "port": {"type": "integer"}}}}}}}}}}}
#: ports a peer from outside the Ray cluster may be admitted to, and what for
OUTSIDE_PORTS = {8265: "dashboard / Jobs API", 8080: "metrics"}


def network_policies() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(NETWORK_POLICY.read_text()) if d is not None]
    return {d["metadata"]["name"]: d for d in docs}


def pod_labels(manifest: dict) -> list[dict]:
    """The labels every Pod of the manifest's Ray cluster has: its pod template's, plus
    ray.io/cluster (KubeRay's) when the RayCluster's name is fixed (not a RayJob's)."""
    own = {"ray.io/cluster": manifest["metadata"]["name"]} if manifest["kind"] == "RayCluster" else {}
    return [{**own, **t.get("metadata", {}).get("labels", {})} for t in pod_templates(manifest)]


def check_network_policy(policy: dict, manifest: dict) -> None:
    """The schema; the policy selects every Pod of ``manifest`` and admits them on every port;
    every other rule is limited to OUTSIDE_PORTS."""
    jsonschema.validate(policy, NETWORK_POLICY_SCHEMA)
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for labels in pod_labels(manifest):
        if not selector.items() <= labels.items():
            raise ValueError(f"{policy['metadata']['name']}: podSelector {selector} misses Pods labelled {labels}")
    own = [r for r in policy["spec"]["ingress"] if r["from"] == [{"podSelector": {"matchLabels": selector}}]]
    if len(own) != 1 or "ports" in own[0]:
        raise ValueError(f"{policy['metadata']['name']}: no rule admitting the cluster's own Pods on every port")
    for rule in policy["spec"]["ingress"]:
        if rule is own[0]:
            continue
        ports = [p["port"] for p in rule.get("ports", [])]
        if not ports or set(ports) - set(OUTSIDE_PORTS):
            raise ValueError(f"{policy['metadata']['name']}: a rule admits {rule['from']} to ports "
                             f"{ports or 'all'}; outside Pods may reach only {sorted(OUTSIDE_PORTS)}")


POLICY_OF = {"raycluster.yaml": "synthface-ray", "rayjob.yaml": "synthface-generate"}


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_network_policy_admits_only_the_clusters_own_pods(path):
    manifest = load(path)
    policies = network_policies()
    assert sorted(policies) == sorted(POLICY_OF.values())
    check_network_policy(policies[POLICY_OF[path.name]], manifest)


def test_rayjob_network_policy_admits_its_submitter_to_the_dashboard_only():
    rayjob = load(CLUSTERS / "kuberay" / "rayjob.yaml")
    policy = network_policies()["synthface-generate"]
    submitter = {"podSelector": {"matchLabels": {"batch.kubernetes.io/job-name": rayjob["metadata"]["name"]}}}
    (rule,) = [r for r in policy["spec"]["ingress"] if submitter in r["from"]]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8265}]
    for peer in rule["from"]:      # the operator: its own namespace and its own Pods, not a namespace
        assert "podSelector" in peer


def _np_no_pod_selector(p, m):
    del p["spec"]["podSelector"]


def _np_selects_another_cluster(p, m):
    p["spec"]["podSelector"]["matchLabels"] = {"ray.io/cluster": "other"}


def _np_admits_everyone(p, m):
    p["spec"]["ingress"].append({"from": [{"namespaceSelector": {"matchLabels": {}}}]})


def _np_outside_peer_on_gcs(p, m):
    p["spec"]["ingress"][-1]["ports"] = [{"protocol": "TCP", "port": 6379}]


def _np_outside_peer_on_every_port(p, m):
    del p["spec"]["ingress"][-1]["ports"]


def _np_no_own_pods_rule(p, m):
    del p["spec"]["ingress"][0]


def _np_ip_block(p, m):
    p["spec"]["ingress"][0]["from"].append({"ipBlock": {"cidr": "0.0.0.0/0"}})


def _np_worker_without_label(p, m):
    for template in pod_templates(m):
        template.pop("metadata", None)
    if m["kind"] == "RayCluster":
        m["metadata"]["name"] = "renamed"


NETWORK_POLICY_BROKEN = [
    (_np_no_pod_selector, jsonschema.ValidationError),
    (_np_selects_another_cluster, ValueError),
    (_np_admits_everyone, jsonschema.ValidationError),
    (_np_outside_peer_on_gcs, ValueError),
    (_np_outside_peer_on_every_port, ValueError),
    (_np_no_own_pods_rule, ValueError),
    (_np_ip_block, jsonschema.ValidationError),
    (_np_worker_without_label, ValueError),
]


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
@pytest.mark.parametrize("break_it,error", NETWORK_POLICY_BROKEN,
                         ids=[b[0].__name__[4:] for b in NETWORK_POLICY_BROKEN])
def test_network_policy_check_rejects_a_broken_copy(path, break_it, error):
    manifest = load(path)
    policy = copy.deepcopy(network_policies()[POLICY_OF[path.name]])
    break_it(policy, manifest)
    with pytest.raises(error):
        check_network_policy(policy, manifest)


def test_readme_documents_port_forwarding_and_the_network_policy():
    readme = (CLUSTERS / "README.md").read_text()
    assert "kubectl apply -f clusters/kuberay/networkpolicy.yaml" in readme
    assert "kubectl port-forward svc/synthface-head-svc 8265:8265" in readme
    assert "kubectl port-forward" in readme and "8080:8080" in readme


def test_kuberay_token_auth_and_no_literal_secrets(manifest):
    spec = cluster_spec(manifest)
    assert spec["rayVersion"] == ray.__version__          # KubeRay needs >= 2.52.0 for token mode
    if "authOptions" in spec:
        assert spec["authOptions"]["mode"] == "token"
    else:                                                 # an operator older than v1.5.1
        for container in containers(manifest):
            env = {e["name"]: e for e in container.get("env", [])}
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
    for container in containers(manifest):
        for env in container.get("env", []):
            if re.search(r"TOKEN|SECRET|PASSWORD|KEY", env["name"], re.IGNORECASE):
                assert "value" not in env and "valueFrom" in env, env["name"]


def test_kuberay_pods_use_the_service_account_and_the_project_image(manifest):
    images = {c["image"] for c in containers(manifest)}
    assert len(images) == 1
    (image,) = images
    assert f"ray{ray.__version__}-py311-cu12" in image and "ray-ml" not in image
    for template in pod_templates(manifest):
        assert template["spec"]["serviceAccountName"] == "synthface"


def test_kuberay_groups(manifest):
    spec = cluster_spec(manifest)
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"]["metrics-export-port"] == "8080"
    (head_container,) = head["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in head_container["resources"]["limits"]
    gpus = {g["groupName"]: g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
            for g in spec["workerGroupSpecs"]}
    expected = {"gen-l4": 1, "train-a100": 8} if manifest["kind"] == "RayCluster" else {"gen-l4": 1}
    assert gpus == expected
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] == 0 < group["maxReplicas"]


def test_rayjob_runs_generate_and_cleans_up():
    rayjob = load(CLUSTERS / "kuberay" / "rayjob.yaml")
    spec = rayjob["spec"]
    entrypoint = spec["entrypoint"].split()
    assert entrypoint[:3] == ["synthface", "generate", "--config"]
    assert (ROOT / entrypoint[3]).is_file()
    assert spec.get("submissionMode", "K8sJobMode") == "K8sJobMode"
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == "/home/ray/synthface-ray"


def test_readme_project_image_builds_from_the_launcher_image():
    readme = (CLUSTERS / "README.md").read_text()
    (base,) = re.findall(r"^FROM (\S+)$", readme, re.MULTILINE)
    assert {load(p)["docker"]["image"] for p in LAUNCHER} == {base}
    assert re.search(r'pip install --no-cache-dir "\.\[gpu\]"', readme)
    assert "WORKDIR /home/ray/synthface-ray" in readme     # the RayJob's working_dir


# -- no credentials anywhere under clusters/ -------------------------------------------------------

CREDENTIAL_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key setting": re.compile(r"aws_secret_access_key|aws_access_key_id|aws_session_token", re.IGNORECASE),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY"),
    "service account key file": re.compile(r'"private_key(_id)?"\s*:|"type"\s*:\s*"service_account"'),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "password setting": re.compile(r"passw(or)?d\s*[:=]", re.IGNORECASE),
    "literal Ray token": re.compile(r"RAY_AUTH_TOKEN\s*[:=]\s*(?![\"']?\$\()(?!\s*$)\S"),
    "token on a kubectl command line": re.compile(r"--from-literal=\S*token", re.IGNORECASE),
    "literal secret value": re.compile(
        r"(secret|token|passw(or)?d|api[_-]?key)[\"']?\s*[:=]\s*[\"']?"
        r"(?=[A-Za-z0-9+/=_]*[0-9])(?=[A-Za-z0-9+/=_]*[A-Za-z])[A-Za-z0-9+/=_]{20,}", re.IGNORECASE),
}


def credential_hits(text: str) -> list[tuple[str, int]]:
    return [(name, n) for n, line in enumerate(text.splitlines(), 1)
            for name, pattern in CREDENTIAL_PATTERNS.items() if pattern.search(line)]


@pytest.mark.parametrize("path", sorted(p for p in CLUSTERS.rglob("*") if p.is_file()),
                         ids=lambda p: str(p.relative_to(CLUSTERS)))
def test_no_credentials_in_clusters(path):
    assert credential_hits(path.read_text()) == []


PLANTED = {
    "AWS access key id": "aws_key: " + "AKIA" + "IOSFODNN7EXAMPLE",
    "AWS secret key setting": "aws_secret_access_key = x",
    "private key": "-----BEGIN " + "RSA PRIVATE KEY-----",
    "service account key file": '{"type": "service_account", "project_id": "p"}',
    "Google API key": "key=" + "AIza" + "Sy" + "A" * 33,
    "password setting": "redis-password: hunter2",
    "literal Ray token": "export RAY_AUTH_TOKEN=3f9a0c2b",
    "token on a kubectl command line": "kubectl create secret generic t --from-literal=auth_token=abc",
    "literal secret value": "auth_token: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
}


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_the_credential_scan_catches_a_planted_secret(kind):
    assert (kind, 1) in credential_hits(PLANTED[kind])


@pytest.mark.parametrize("line", [
    'export RAY_AUTH_TOKEN="$(aws ssm get-parameter --with-decryption --name /synthface/ray-auth-token)"',
    "    valueFrom: {secretKeyRef: {name: synthface-ray-auth-token, key: auth_token}}",
    "gcloud secrets versions access latest --secret=synthface-ray-auth-token",
    "reads the token from `RAY_AUTH_TOKEN`,",
])
def test_the_credential_scan_lets_references_pass(line):
    assert credential_hits(line) == []
