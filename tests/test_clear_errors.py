"""Errors a user can fix print one line naming the file and the fix, exit code 2, no traceback
(issue 21, item 6): a non-ASCII output name, corrupt model weights, counts that cannot fit,
a full disk (also inside a Ray actor), files that are not Parquet or RecordIO, S3 errors and
read-only folders."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import subprocess

import pytest
from gen_helpers import gen_config

from synthface_ray import cli, config, errors, storage

#: what `logging` prints when a handler writes to a closed stream: Ray's driver log handler
#: (ray/_private/log.py PlainRayHandler) keeps the sys.stderr of the moment Ray set up logging,
#: which under pytest is an earlier test's capture, closed since. A real process's stderr never
#: closes, so these blocks exist only in-process here; they are not the command's output.
_CLOSED_STREAM_LOGGING = re.compile(r"--- Logging error ---\n.*?\nArguments: .*?\n", re.DOTALL)


def _fails(argv, capsys, *patterns):
    """``synthface argv`` exits 2 with one error line (no traceback) matching every pattern."""
    assert cli.main(argv) == 2
    err = _CLOSED_STREAM_LOGGING.sub("", capsys.readouterr().err)
    assert "Traceback" not in err, err
    for pattern in patterns:
        assert re.search(pattern, err), f"{pattern!r} not in:\n{err}"
    return err


def _generate(cfg, tmp_path, *extra):
    path = tmp_path / "job.yaml"
    path.write_text(config.dump_yaml(cfg))
    return ["generate", "--config", str(path), *extra]


def test_non_ascii_output_name_is_refused_naming_the_allowed_characters(gen_inputs, tmp_path, capsys):
    """Before, every generator actor died on the name (a metric tag) with a Ray traceback."""
    cfg = gen_config(gen_inputs, tmp_path / "out")
    _fails(_generate(cfg, tmp_path, "--set", "output.name=héllo"), capsys,
           r"output.name='héllo' \('é' not allowed\)", r"ASCII letters, digits and _-\+\.")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage,message", [
    ("truncated", r"backbone.safetensors is not a readable safetensors file"),
    ("other-architecture", r"backbone.safetensors does not hold weights of the model its config describes"),
])
def test_corrupt_fr_weights_name_the_file_and_the_fix(gen_inputs, tmp_path, capsys, damage, message):
    fr = tmp_path / "fr"
    shutil.copytree(gen_inputs["fr"], fr)
    weights = fr / "backbone.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:  # a config of another width than the weights
        cfg = json.loads((fr / "backbone_config.json").read_text())
        (fr / "backbone_config.json").write_text(json.dumps({**cfg, "width": cfg["width"] * 2}))
    argv = _generate(gen_config(gen_inputs, tmp_path / "out", **{"model.fr": str(fr)}), tmp_path)
    _fails(argv, capsys, re.escape(str(weights)), message, r"export folder `synthface train-fr` wrote")
    assert not (tmp_path / "out").exists()


def test_corrupt_generator_weights_name_the_file_and_the_fix(gen_inputs, tmp_path, capsys):
    gen = tmp_path / "gen"
    shutil.copytree(gen_inputs["generator"], gen)
    (gen / "condition" / "condition.safetensors").write_bytes(b"not safetensors")
    argv = _generate(gen_config(gen_inputs, tmp_path / "out", **{"model.generator": str(gen)}), tmp_path)
    _fails(argv, capsys, r"condition.safetensors is not a readable safetensors file",
           r"`synthface train-generator` wrote")


@pytest.fixture(scope="module")
def small_faces(tmp_path_factory):
    out = tmp_path_factory.mktemp("faces") / "tf"
    assert cli.main(["toyfaces", "--out", str(out), "--set", "toyfaces.identities=3",
                     "--set", "toyfaces.images_per_identity=4", "--set", "grid.enabled=false"]) == 0
    return out


def test_counts_that_cannot_fit_are_refused_with_the_estimate(gen_inputs, tmp_path, capsys):
    """Before: numpy's out-of-memory traceback (7.28 TiB for one array)."""
    out = tmp_path / "plan.parquet"
    _fails(["plan", "--identities", gen_inputs["identities"], "--out", str(out),
            "--set", "plan.images_per_identity=100000000000"], capsys,
           r"a plan of 10 identities x 100000000000 images .* = 1,000,000,000,000 rows",
           r"more than the 2,147,483,647 a plan holds", r"needs about 109.1 TiB of memory \(~120 B per row\), "
           r"this machine has [\d.]+ [GMT]iB available", r"lower plan.images_per_identity")
    _fails(["identities", "--set", "source.count=100000000000", "--set", "source.dim=16", "--out", str(out)],
           capsys, r"source.count=100000000000 identities x 16 dimensions = 1,600,000,000,000 values",
           r"needs about 29.1 TiB of memory", r"lower source.count")
    assert not out.exists()
    # a streamed output that cannot fit on its disk: the first batch's size per row is the estimate
    _fails(["toyfaces", "--out", str(tmp_path / "toy"), "--set", "toyfaces.identities=1000000",
            "--set", "toyfaces.images_per_identity=100000"], capsys,
           r"toyfaces.identities x toyfaces.images_per_identity = 100,000,000,000 rows of ~[\d.]+ KiB each",
           r"needs about [\d.]+ TiB on disk, \S+ has [\d.]+ [GMT]iB free", r"write to a disk with more space")
    assert not (tmp_path / "toy").exists()


@pytest.mark.parametrize("command,key", [("plan", "plan.seed"), ("train-fr", "run.seed"),
                                         ("toyfaces", "toyfaces.seed"), ("identities", "source.seed")])
def test_seeds_beyond_64_bits_are_refused(gen_inputs, small_faces, tmp_path, capsys, command, key):
    """Before: plan died with an OverflowError traceback; train-fr's dry run passed and torch
    refused the seed inside the Ray workers."""
    inputs = {"plan": ["--identities", gen_inputs["identities"], "--out", str(tmp_path / "p.parquet")],
              "train-fr": ["--data", str(small_faces), "--set", "optim.micro_batch=2",
                           "--set", "scaling.num_workers=1", "--dry-run"],
              "toyfaces": ["--out", str(tmp_path / "tf")],
              "identities": ["--out", str(tmp_path / "i.parquet")]}
    _fails([command, *inputs[command], "--set", f"{key}={10**20}"], capsys,
           rf"{key}=100000000000000000000 is not a usable seed: seeds are 64-bit, give one in \[0, {2**63 - 1}\]")


# disk full ------------------------------------------------------------------------------------
def _full_disk_write() -> None:
    """A real ENOSPC: the /dev/full device accepts the open and refuses the bytes (opened without
    O_CREAT, so a missing device is never replaced by a file)."""
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)


def _is_char_device(path: str) -> bool:
    return os.path.exists(path) and stat.S_ISCHR(os.stat(path).st_mode)


needs_dev_full = pytest.mark.skipif(not _is_char_device("/dev/full"), reason="no /dev/full device")


@needs_dev_full
def test_disk_full_names_the_file_being_written_and_the_fix(tmp_path):
    loc = storage.resolve(str(tmp_path / "part-00000.parquet"))
    with pytest.raises(OSError) as raised, storage.atomic_local_path(loc):
        _full_disk_write()
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == loc.uri
    assert errors.user_message(raised.value) == (
        f"{loc.uri}: no space left on the device; free space on that disk or write the output elsewhere "
        "(output.path / --out), then re-run")
    assert os.listdir(tmp_path) == []  # the temporary file is gone


@needs_dev_full
def test_disk_full_inside_a_ray_worker_is_one_line_on_the_driver(ray_local, tmp_path):
    """Ray Data hands the driver a UserCodeException whose cause is lost: the message is rebuilt
    from the worker's traceback (before: the whole Ray traceback)."""
    target = storage.resolve(str(tmp_path / "run" / "part-00007.parquet"))

    def write_shard(batch):  # only importable names inside: it runs in a Ray worker
        import os

        from synthface_ray import storage

        with storage.atomic_local_path(target):
            fd = os.open("/dev/full", os.O_WRONLY)  # as _full_disk_write
            try:
                os.write(fd, b"x")
            finally:
                os.close(fd)
        return batch

    with pytest.raises(Exception) as raised:
        ray_local.data.from_items([{"x": 1}]).map_batches(write_shard).materialize()
    assert isinstance(raised.value, ray_local.exceptions.RayTaskError)  # its text: the whole Ray traceback
    assert errors.user_message(raised.value) == (
        f"{target.uri}: no space left on the device; free space on that disk or write the output "
        "elsewhere (output.path / --out), then re-run")


def _mount_tmpfs(path, options: str) -> bool:
    """Mount a tmpfs at ``path`` (root with CAP_SYS_ADMIN only); False where that is not allowed."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def full_disk(tmp_path):
    """A 12 KiB file system: a generated dataset's first shard does not fit."""
    mnt = tmp_path / "full"
    if not _mount_tmpfs(mnt, "size=12k"):
        pytest.skip("mounting a tmpfs needs root with CAP_SYS_ADMIN")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_generate_on_a_full_disk_prints_the_actors_error(gen_inputs, ray_local, full_disk, tmp_path, capsys):
    cfg = gen_config(gen_inputs, full_disk, **{"pool.actors": 1, "grid.enabled": False})
    _fails(_generate(cfg, tmp_path), capsys,
           rf"error: {re.escape(str(full_disk))}/run/part-0000\d.parquet: no space left on the device; "
           r"free space on that disk or write the output elsewhere")


# files that are not what they claim -------------------------------------------------------------
def test_a_plan_that_is_not_parquet_is_named(gen_inputs, tmp_path, capsys):
    """Before: `Could not open Parquet input source '<Buffer>'` (no file name)."""
    bad = tmp_path / "plan.parquet"
    bad.write_text("row_id,identity_id\n0,1\n")
    cfg = gen_config(gen_inputs, tmp_path / "out", **{"input.plan": str(bad)})
    _fails(_generate(cfg, tmp_path), capsys,
           rf"input.plan: {re.escape(str(bad))} is not a Parquet file \(.*magic bytes.*\); "
           r"give the table `synthface plan` writes")


@pytest.mark.parametrize("damage,message", [
    ("rec", r"bad magic 0x[0-9A-F]+ .* at byte offset 0 of {rec}"),
    ("idx", r"{idx} is not a text .idx file"),
])
def test_a_garbage_recordio_pair_is_named(tmp_path, capsys, damage, message):
    """Before: `bad magic ... of <NativeFile>` and `'utf-8' codec can't decode byte` (no file)."""
    folder = tmp_path / "ms1m"
    folder.mkdir()
    rec, idx = folder / "train.rec", folder / "train.idx"
    rec.write_bytes(bytes(range(256)) * 8)
    idx.write_bytes(b"\xff\xfe\x00garbage" if damage == "idx" else b"1\t0\n2\t64\n")
    _fails(["import", "--format", "recordio", "--from", str(folder), "--out", str(tmp_path / "faces")], capsys,
           message.format(rec=re.escape(str(rec)), idx=re.escape(str(idx))),
           r"not an insightface RecordIO pair: check that the .idx belongs to this .rec \(input.idx\)")


# S3 --------------------------------------------------------------------------------------------
_S3_ALL = r"the S3 settings: endpoint \(storage.endpoint_url\), region \(storage.region\), credentials .* bucket name"


def test_s3_missing_bucket_says_what_to_check(gen_inputs, s3, capsys):
    store, _ = s3
    _fails(["plan", "--identities", gen_inputs["identities"], "--out", "s3://no-such-bucket-21/plan.parquet",
            "--set", f"storage.endpoint_url={store.endpoint_url}"], capsys,
           r"bucket 'no-such-bucket-21'.*NO_SUCH_BUCKET", r"Check that the bucket exists", _S3_ALL)


def test_s3_unreachable_endpoint_says_what_to_check(capsys, monkeypatch):
    from conftest import S3_ENV

    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    _fails(["inspect", "s3://bucket/faces", "--set", "storage.endpoint_url=http://127.0.0.1:9"], capsys,
           r"NETWORK_CONNECTION", r"Check that the endpoint \(storage.endpoint_url or AWS_ENDPOINT_URL\) is "
           r"reachable", _S3_ALL)


def test_s3_wrong_credentials_say_what_to_check(gen_inputs, s3, capsys, monkeypatch):
    from moto import settings

    store, bucket = s3
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto now checks credentials
    _fails(["plan", "--identities", gen_inputs["identities"], "--out", f"{bucket}/plan.parquet",
            "--set", f"storage.endpoint_url={store.endpoint_url}"], capsys,
           r"Check that the credentials \(storage.profile, AWS_ACCESS_KEY_ID", _S3_ALL)


# read-only folders ---------------------------------------------------------------------------
@pytest.fixture
def read_only_dir(tmp_path):
    """A folder the user cannot write: a read-only tmpfs as root, else a chmod 555 folder."""
    ro = tmp_path / "ro"
    if os.geteuid() == 0:
        if not _mount_tmpfs(ro, "ro,size=64k"):
            pytest.skip("as root only a read-only mount makes a folder unwritable, and mount is not allowed")
        yield ro
        subprocess.run(["umount", str(ro)], check=True)
        return
    ro.mkdir()
    ro.chmod(0o555)
    yield ro
    ro.chmod(0o755)


def test_a_read_only_folder_names_the_output_and_the_fix(gen_inputs, read_only_dir, capsys):
    """Before: `[Errno 30] Read-only file system: '/.../.p.parquet.tmp-bfded9130114'` (a temporary
    name) and no fix."""
    out = read_only_dir / "plan.parquet"
    _fails(["plan", "--identities", gen_inputs["identities"], "--out", str(out)], capsys,
           rf"error: {re.escape(str(out))}: (read-only file system|permission denied); ",
           r"write the output elsewhere \(output.path / --out\)")
    _fails(["toyfaces", "--out", str(read_only_dir / "tf")], capsys,
           rf"error: {re.escape(str(read_only_dir / 'tf'))}: (read-only file system|permission denied); ")
