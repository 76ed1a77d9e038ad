from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from synthface_ray import config
from synthface_ray.config import ConfigError, check_range, secret_field


@dataclass
class Inner:
    n: int = 3
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"
    name: str | None = None
    token: str | None = secret_field()

    def __post_init__(self) -> None:
        check_range("inner.n", self.n, 1, 10)


@dataclass
class Outer:
    inner: Inner = field(default_factory=lambda: Inner(n=5))


@dataclass
class Root:
    inner: Inner = field(default_factory=Inner)
    flag: bool = False
    sizes: list[int] = field(default_factory=lambda: [1, 2])


def test_defaults_and_overrides():
    cfg = config.load(Root, None, ["inner.n=7", "inner.rate=1", "flag=true", "sizes=[3, 4]", "inner.name=x"])
    assert cfg.inner.n == 7 and cfg.inner.rate == 1.0 and isinstance(cfg.inner.rate, float)
    assert cfg.flag is True and cfg.sizes == [3, 4] and cfg.inner.name == "x"


def test_yaml_file_then_overrides_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  n: 2\n  mode: b\nflag: true\n")
    cfg = config.load(Root, str(path), ["inner.n=5"])
    assert (cfg.inner.n, cfg.inner.mode, cfg.flag) == (5, "b", True)


@pytest.mark.parametrize(
    "override, words",
    [
        ("inner.bogus=1", ["inner.bogus", "allowed keys", "inner.n"]),
        ("bogus=1", ["bogus", "top level"]),
        ("inner.n=11", ["inner.n=11", "[1, 10]"]),
        ("inner.n=abc", ["inner.n", "integer"]),
        ("inner.n=2.5", ["inner.n", "integer"]),
        ("inner.mode=c", ["inner.mode", "'a'", "'b'"]),
        ("flag=maybe", ["flag", "true or false"]),
        ("inner=3", ["inner", "mapping"]),
        ("novalue", ["KEY=VALUE"]),
    ],
)
def test_bad_keys_and_values_name_the_key(override, words):
    with pytest.raises(ConfigError) as err:
        config.load(Root, None, [override])
    for word in words:
        assert word in str(err.value)


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(Root, str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("inner: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(Root, str(bad))
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        config.load(Root, str(listy))


def test_secrets_are_never_dumped_or_repr():
    cfg = config.load(Root, None, ["inner.token=s3cr3t"])
    assert cfg.inner.token == "s3cr3t"
    assert "s3cr3t" not in repr(cfg)
    assert "s3cr3t" not in config.dump_yaml(cfg)
    assert config.to_dict(cfg, redact=False)["inner"]["token"] == "s3cr3t"


def test_dump_round_trips(tmp_path):
    cfg = config.load(Root, None, ["inner.n=9", "inner.mode=b"])
    path = tmp_path / "resolved.yaml"
    path.write_text(config.dump_yaml(cfg))
    assert config.load(Root, str(path)) == cfg


def test_partial_section_keeps_the_parents_defaults():
    """A section default set by its parent (e.g. a command's own output.path) survives a
    partial override of that section."""
    cfg = config.load(Outer, None, ["inner.rate=0.25"])
    assert cfg.inner.n == 5 and cfg.inner.rate == 0.25
    assert config.load(Outer).inner.n == 5


@pytest.mark.parametrize("key, secret", [
    ("storage.secret_access_key", True), ("storage.access_key_id", True), ("storage.session_token", True),
    ("db.password", True), ("auth.token", True), ("x.credentials", True), ("svc.api_key", True),
    ("Storage.Secret_Access_Key", True),
    ("model.context_tokens", False), ("storage.endpoint_url", False), ("output.name", False),
    ("secret.name", False),  # only the last part counts
])
def test_secret_keys_are_named_by_their_last_part(key, secret):
    assert config.is_secret_key(key) is secret


def test_every_secret_field_has_a_secret_key_name():
    """The fields hidden from resolved configs are the ones the key test recognises, so an
    override of any of them is redacted and refused where it would be shown."""
    import dataclasses

    from synthface_ray.storage import StorageConfig

    hidden = [f.name for f in dataclasses.fields(StorageConfig) if f.metadata.get("secret")]
    assert hidden == ["access_key_id", "secret_access_key", "session_token"]
    assert all(config.is_secret_key(f"storage.{name}") for name in hidden)


def test_overrides_are_shown_with_their_secrets_redacted():
    assert config.redact_override("storage.secret_access_key=wJalr/K7MDENG") == "storage.secret_access_key=<redacted>"
    assert config.redact_override("storage.session_token=a=b") == "storage.session_token=<redacted>"
    assert config.redact_override("output.name=token-run") == "output.name=token-run"
    assert config.redact_override("novalue") == "novalue"
    sets = ["pool.actors=2", "storage.access_key_id=AKIA1", "storage.secret_access_key=s"]
    assert config.secret_overrides(sets) == ["storage.access_key_id", "storage.secret_access_key"]


@pytest.mark.parametrize("override", ["inner.token=12345678", "inner.token=[hunter2]", "inner.token={a: hunter2}"])
def test_a_secret_of_the_wrong_type_is_refused_without_showing_it(override):
    with pytest.raises(ConfigError) as err:
        config.load(Root, None, [override])
    assert "inner.token must be a str" in str(err.value) and "<redacted>" in str(err.value)
    assert "12345678" not in str(err.value) and "hunter2" not in str(err.value)


def test_a_redacted_secret_read_back_is_refused(tmp_path):
    """config.yaml keeps `<redacted>` where a secret was: re-running it must not send that
    string as a credential."""
    saved = tmp_path / "config.yaml"
    saved.write_text(config.dump_yaml(config.load(Root, None, ["inner.token=s3cr3t"])))
    assert "s3cr3t" not in saved.read_text() and "token: <redacted>" in saved.read_text()
    with pytest.raises(ConfigError, match=r"inner.token is <redacted>: this config was saved with its "
                                          r"secrets hidden\. Delete the key"):
        config.load(Root, str(saved))
    assert config.load(Root, str(saved), ["inner.token=again"]).inner.token == "again"
