from __future__ import annotations

import os

import pytest

from synthface_ray import storage
from synthface_ray.config import ConfigError
from synthface_ray.storage import StorageConfig


def test_resolve_local_and_s3(tmp_path):
    loc = storage.resolve(str(tmp_path / "a"))
    assert not loc.is_s3 and loc.path == str(tmp_path / "a")
    s3 = storage.resolve("s3://bucket/pre/fix/", StorageConfig(endpoint_url="http://127.0.0.1:1"))
    assert s3.is_s3 and s3.path == "bucket/pre/fix" and s3.join("x").uri == "s3://bucket/pre/fix/x"


@pytest.mark.parametrize("uri, match", [("", "empty"), ("s3://", "bucket"), ("gs://b/x", "unsupported")])
def test_resolve_rejects_bad_uris(uri, match):
    with pytest.raises(ConfigError, match=match):
        storage.resolve(uri)


def test_storage_config_validation():
    with pytest.raises(ConfigError, match="endpoint_url"):
        StorageConfig(endpoint_url="127.0.0.1:9000")
    with pytest.raises(ConfigError, match="together"):
        StorageConfig(access_key_id="AKIA")


def test_s3_options_from_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    opts = storage.s3_options(StorageConfig())
    assert opts["endpoint_override"] == "127.0.0.1:9999" and opts["scheme"] == "http"
    assert opts["region"] == "eu-west-1"
    # the config wins over the environment
    opts = storage.s3_options(StorageConfig(endpoint_url="https://s3.example:443", region="us-west-2"))
    assert opts["endpoint_override"] == "s3.example:443" and opts["region"] == "us-west-2"


def test_credentials_are_not_printed():
    cfg = StorageConfig(access_key_id="AKIAEXAMPLE", secret_access_key="very-secret")
    for text in (repr(cfg), str(storage.describe(cfg))):
        assert "very-secret" not in text and "AKIAEXAMPLE" not in text


def test_atomic_write_replaces_in_one_step(tmp_path):
    loc = storage.resolve(str(tmp_path / "sub" / "f.bin"))
    storage.atomic_write_bytes(loc, b"one")
    storage.atomic_write_bytes(loc, b"two")
    assert storage.read_bytes(loc) == b"two"
    assert os.listdir(tmp_path / "sub") == ["f.bin"]  # no temporary left behind


def test_atomic_write_failure_publishes_nothing(tmp_path):
    loc = storage.resolve(str(tmp_path / "out.parquet"))
    with pytest.raises(RuntimeError), storage.atomic_local_path(loc) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"half")
        assert not storage.exists(loc)  # a reader during the write sees nothing
        raise RuntimeError("writer died")
    assert not storage.exists(loc)
    assert os.listdir(tmp_path) == []


def test_atomic_write_failure_keeps_previous_version(tmp_path):
    loc = storage.resolve(str(tmp_path / "m.json"))
    storage.atomic_write_json(loc, {"v": 1})
    with pytest.raises(RuntimeError), storage.atomic_local_path(loc) as tmp:
        with open(tmp, "w") as fh:
            fh.write('{"v": 2, "trunc')
        raise RuntimeError("killed")
    assert storage.read_json(loc) == {"v": 1}


def test_list_files_skips_hidden_temporaries(tmp_path):
    (tmp_path / "a.parquet").write_bytes(b"x")
    (tmp_path / ".a.parquet.tmp-123").write_bytes(b"x")
    (tmp_path / "_SUCCESS").write_bytes(b"")
    assert [os.path.basename(p) for p in storage.list_files(storage.resolve(str(tmp_path)))] == ["a.parquet"]


def test_s3_round_trip_and_atomic_failure(s3):
    cfg, root = s3
    loc = storage.resolve(f"{root}/dir/blob.bin", cfg)
    storage.atomic_write_bytes(loc, b"payload")
    assert storage.read_bytes(loc) == b"payload"
    assert storage.exists(loc) and storage.list_files(storage.resolve(f"{root}/dir", cfg)) == [loc.path]
    bad = storage.resolve(f"{root}/dir/never.bin", cfg)
    with pytest.raises(RuntimeError), storage.atomic_local_path(bad) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"partial")
        raise RuntimeError("died before upload")
    assert not storage.exists(bad)


def test_s3_credentials_from_config(s3, monkeypatch):
    cfg, root = s3
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    with_keys = StorageConfig(endpoint_url=cfg.endpoint_url, access_key_id="k", secret_access_key="s")
    loc = storage.resolve(f"{root}/k.txt", with_keys)
    storage.atomic_write_text(loc, "hi")
    assert storage.read_bytes(loc) == b"hi"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_publish_dir_replaces_the_folder_and_needs_its_marker(where, tmp_path, request):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.bin").write_bytes(b"a")
    if where == "s3":
        cfg, bucket = request.getfixturevalue("s3")
        dest = storage.resolve(f"{bucket}/pub", cfg)
    else:
        dest = storage.resolve(tmp_path / "pub")
    with pytest.raises(FileNotFoundError, match="done.json is missing"):
        storage.publish_dir(str(src), dest, marker="done.json")
    assert not storage.exists(dest.join("sub", "a.bin"))  # nothing published without the marker
    (src / "done.json").write_text("{}")
    storage.publish_dir(str(src), dest, marker="done.json")
    assert storage.read_bytes(dest.join("sub", "a.bin")) == b"a"
    assert storage.read_json(dest.join("done.json")) == {}


def _folder(where, tmp_path, request, name):
    if where == "s3":
        cfg, bucket = request.getfixturevalue("s3")
        return storage.resolve(f"{bucket}/{name}", cfg)
    return storage.resolve(tmp_path / name)


def _write(loc, files: dict[str, bytes]) -> None:
    storage.ensure_dir(loc)
    for rel, data in files.items():
        storage.atomic_write_bytes(loc.join(*rel.split("/")), data)


def _read(loc) -> dict[str, bytes]:
    return {os.path.relpath(p, loc.path).replace(os.sep, "/"): storage.read_bytes(storage.Location(loc.fs, p, p))
            for p in storage.list_all(loc)}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_replace_folder_swaps_a_complete_replacement_in(where, tmp_path, request):
    dest = _folder(where, tmp_path, request, "ds")
    _write(dest, {"old.bin": b"old", "done.json": b"1"})
    new = storage.replacement_of(dest)
    assert new.uri.endswith("/.ds.replacing")
    _write(new, {"sub/a.bin": b"a"})
    with pytest.raises(FileNotFoundError, match="holds no done.json"):
        storage.replace_folder(new, dest, "done.json")  # the replacement is not complete
    assert _read(dest) == {"old.bin": b"old", "done.json": b"1"}  # nothing touched
    _write(new, {"done.json": b"2"})
    storage.replace_folder(new, dest, "done.json")
    assert _read(dest) == {"sub/a.bin": b"a", "done.json": b"2"}
    assert not storage.list_all(new) and not storage.finish_replacement(dest, "done.json")


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_swap_killed_half_way_is_finished_by_the_next_run(where, tmp_path, request):
    """The states a kill can leave between the steps of replace_folder, completed afterwards."""
    dest = _folder(where, tmp_path, request, "ds")
    new = storage.replacement_of(dest)
    _write(new, {"a.bin": b"a", "done.json": b"2"})
    if where == "s3":  # killed after the old marker and some old objects went, before the copy
        _write(dest, {"old2.bin": b"o"})
    else:  # killed between the two renames: the old folder aside, the new one not yet in place
        _write(storage.resolve(tmp_path / ".ds.replaced"), {"old.bin": b"old", "done.json": b"1"})
    assert storage.finish_replacement(dest, "done.json")
    assert _read(dest) == {"a.bin": b"a", "done.json": b"2"}
    assert not storage.list_all(new) and not os.path.exists(tmp_path / ".ds.replaced")


def test_an_incomplete_replacement_is_left_for_its_run(tmp_path):
    dest = storage.resolve(tmp_path / "ds")
    _write(dest, {"old.bin": b"old", "done.json": b"1"})
    _write(storage.replacement_of(dest), {"a.bin": b"a"})  # killed before it was complete
    assert not storage.finish_replacement(dest, "done.json")
    assert _read(dest) == {"old.bin": b"old", "done.json": b"1"}
    assert _read(storage.replacement_of(dest)) == {"a.bin": b"a"}
