"""Typed configuration: dataclass sections, YAML loading, ``--set a.b=c`` overrides.

Every section is a frozen-free dataclass whose defaults are the project's single source of
defaults. Sections validate themselves in ``__post_init__`` with the helpers below, so a bad value
fails at load time with a message naming the key and what is allowed. Unknown keys are rejected.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

SECRET = "<redacted>"
#: words that mark the last part of a dotted key as a credential (storage.secret_access_key,
#: storage.session_token, storage.access_key_id, a password, an API token, ...)
SECRET_WORDS = ("secret", "password", "passwd", "token", "credential", "credentials")
SECRET_PARTS = ("access_key", "api_key", "private_key")


class ConfigError(ValueError):
    """A configuration key is unknown or its value is not allowed."""


# validation helpers used by every section's __post_init__ -------------------------------------
def check_range(key: str, value: float, lo: float | None = None, hi: float | None = None) -> None:
    """Raise :class:`ConfigError` unless ``lo <= value <= hi`` (either bound may be None)."""
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else repr(lo)
        hi_s = "inf" if hi is None else repr(hi)
        raise ConfigError(f"{key}={value!r} is out of range: allowed values are in [{lo_s}, {hi_s}]")


def check_choice(key: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not allowed: choose one of {choices}")


#: largest seed: seeds end up in int64 columns and 64-bit RNG states (torch refuses bigger ones)
MAX_SEED = 2**63 - 1
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+.")


def check_seed(key: str, value: int) -> None:
    """Raise :class:`ConfigError` unless ``0 <= value <= MAX_SEED``."""
    if not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{key}={value} is not a usable seed: seeds are 64-bit, give one in [0, {MAX_SEED}]")


def check_file_name(key: str, name: str, names: str = "a folder") -> None:
    """Raise :class:`ConfigError` unless ``name`` is a safe file name: ASCII letters, digits and
    ``_-+.``, not starting with ``.`` (names also become metric tags and table keys)."""
    if not name or not set(name) <= _NAME_CHARS or name.startswith("."):
        bad = sorted(set(name) - _NAME_CHARS)
        what = f" ({', '.join(map(repr, bad))} not allowed)" if bad else ""
        raise ConfigError(f"{key}={name!r}{what}: give a name of ASCII letters, digits and _-+. "
                          f"(not starting with '.'; it names {names}), e.g. run-2")


def secret_field(default: Any = None) -> Any:
    """A field whose value is never printed nor written into a resolved config."""
    return dataclasses.field(default=default, repr=False, metadata={"secret": True})


# secrets in dotted keys (``--set`` overrides, job files' ``set`` lists) -------------------------
def is_secret_key(key: str) -> bool:
    """Whether a dotted key names a credential, by its last part: one of :data:`SECRET_WORDS`
    as a ``_``-separated word (``session_token``, not ``context_tokens``) or one of
    :data:`SECRET_PARTS` anywhere in it (``access_key_id``)."""
    last = str(key).strip().rsplit(".", 1)[-1].lower()
    return any(w in last.split("_") for w in SECRET_WORDS) or any(p in last for p in SECRET_PARTS)


def redact_override(text: str) -> str:
    """``a.b=value`` as it may be shown: the value replaced by ``<redacted>`` when the key names
    a credential (:func:`is_secret_key`); anything else unchanged."""
    key, sep, _ = str(text).partition("=")
    return f"{key}={SECRET}" if sep and is_secret_key(key) else text


def secret_overrides(overrides: Iterable[str]) -> list[str]:
    """The keys of the ``a.b=value`` overrides that name credentials, in order."""
    return [t.partition("=")[0].strip() for t in overrides if "=" in t and is_secret_key(t.partition("=")[0])]


def find_secrets(obj: Any, prefix: str = "") -> list[str]:
    """Where a config holds a credential: the dotted path of every secret field that is set,
    every ``a.b=value`` string (a ``--set`` list, e.g. a pipeline step's ``set``) and every
    dotted-key mapping entry (e.g. ``downstream.set``) whose key names one."""
    if dataclasses.is_dataclass(obj):
        found = []
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("secret"):
                found += [prefix + f.name] if value is not None else []
            else:
                found += find_secrets(value, f"{prefix}{f.name}.")
        return found
    where = prefix.rstrip(".")
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in find_secrets(v, f"{where}[{i}].")]
    if isinstance(obj, Mapping):
        found = []
        for k, v in obj.items():
            if is_secret_key(str(k)) and v is not None:
                found.append(f"{prefix}{k}")
            else:
                found += find_secrets(v, f"{prefix}{k}.")
        return found
    if isinstance(obj, str) and "=" in obj and is_secret_key(obj.partition("=")[0]):
        return [f"{where} ({obj.partition('=')[0].strip()})"]
    return []


def secret_values(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of every secret field of a config that is set: what :func:`to_dict`
    hides, to put back with :func:`apply_dotted` where the config is rebuilt from it."""
    if not dataclasses.is_dataclass(obj):
        return {}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("secret"):
            out.update({prefix + f.name: value} if value is not None else {})
        else:
            out.update(secret_values(value, f"{prefix}{f.name}."))
    return out


def _shown(key: str, value: Any) -> str:
    """``repr(value)`` for an error message, or ``<redacted>`` if ``key`` names a credential."""
    return SECRET if is_secret_key(key) else repr(value)


# building dataclasses from plain data ---------------------------------------------------------
def from_dict(cls: type[T], data: Mapping[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, recursing into nested sections.

    Unknown keys raise :class:`ConfigError` naming the key and the allowed ones; values are
    coerced to the annotated type where that is lossless (int -> float, str -> Path-like str).
    A section type with a ``from_section(data, prefix)`` classmethod builds itself from its
    mapping (e.g. the sampler: a named recipe's settings, then the section's keys on top).
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(
            f"unknown config key(s) {[prefix + k for k in unknown]} in {where}; "
            f"allowed keys: {sorted(prefix + k for k in fields)}"
        )
    for name, value in data.items():
        _refuse_redacted(fields[name], value, prefix + name)
        default = _field_default(fields[name])
        if isinstance(value, Mapping) and dataclasses.is_dataclass(default) and not _builds_itself(type(default)):
            # a section given in part keeps its parent's defaults for the rest (e.g. a command's
            # own output.path when only output.overwrite is set)
            data[name] = _deep_merge(to_dict(default, redact=False), value)
    kwargs = {name: _coerce(hints[name], value, prefix + name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - defensive: dataclass signature mismatch
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from exc


def _refuse_redacted(f: dataclasses.Field, value: Any, key: str) -> None:
    """A secret read back as ``<redacted>`` (a saved config.yaml / job.json) is not a credential."""
    if f.metadata.get("secret") and value == SECRET:
        raise ConfigError(
            f"{key} is {SECRET}: this config was saved with its secrets hidden. Delete the key and "
            f"give the credential another way (for storage.*: the AWS_ACCESS_KEY_ID / "
            f"AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN environment variables, storage.profile or "
            f"the machine's role), or set it again with --set {key}=...")


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _builds_itself(cls: type) -> bool:
    return callable(getattr(cls, "from_section", None))


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping of keys to values, got {_shown(key, value)}")
        if _builds_itself(hint):
            return hint.from_section(value, key + ".")
        return from_dict(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}={_shown(key, value)}: {'; '.join(errors)}")
    if origin is typing.Literal:
        check_choice(key, value, args)
        return value
    if origin in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {_shown(key, value)}")
        item = args[0] if args else Any
        out = [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {_shown(key, value)}")
        return dict(value)
    return _coerce_scalar(hint, value, key)


def _coerce_scalar(hint: Any, value: Any, key: str) -> Any:
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {_shown(key, value)}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key} must be an integer, got {_shown(key, value)}")
    if hint in (float, str) and not isinstance(value, hint):
        raise ConfigError(f"{key} must be a {hint.__name__}, got {_shown(key, value)}")
    return value


def to_dict(obj: Any, redact: bool = True) -> Any:
    """Plain-data view of a config (secrets replaced by ``<redacted>`` unless ``redact=False``)."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if redact and f.metadata.get("secret") and value is not None:
                out[f.name] = SECRET
            else:
                out[f.name] = to_dict(value, redact)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_dict(v, redact) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v, redact) for k, v in obj.items()}
    return obj


# overrides ------------------------------------------------------------------------------------
def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as YAML (``3`` -> int, ``[1,2]`` -> list)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set toyfaces.identities=100")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: the key must be dotted names, e.g. toyfaces.seed=1")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _set_path(data: dict[str, Any], path: list[str], value: Any, what: str) -> None:
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{what}: '{part}' is a value, not a section")
        node = child
    node[path[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with every ``a.b=c`` override applied (nested dicts created)."""
    out = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        _set_path(out, path, value, f"--set {text!r}")
    return out


def apply_dotted(data: dict[str, Any], values: Mapping[str, Any], what: str = "override") -> dict[str, Any]:
    """Return a copy of ``data`` with ``{"a.b": value}`` entries set (values already typed, as
    given in a YAML mapping of dotted keys)."""
    out = _deep_copy(data)
    for key, value in values.items():
        path = str(key).split(".")
        if any(not part for part in path):
            raise ConfigError(f"{what} {key!r}: the key must be dotted names, e.g. optim.max_steps")
        _set_path(out, path, _deep_copy(value), f"{what} {key!r}")
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    return data


def read_yaml(path: str) -> dict[str, Any]:
    """The mapping in a YAML config file (empty file: ``{}``), with errors that name the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist; pass an existing YAML file to --config") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path!r} is not valid YAML: {exc}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping at the top level")
    return loaded or {}


def load(cls: type[T], path: str | None = None, overrides: Sequence[str] = ()) -> T:
    """Load ``cls`` from an optional YAML file plus dotted overrides."""
    data = read_yaml(path) if path else {}
    return from_dict(cls, apply_overrides(data, overrides))


def dump_yaml(obj: Any) -> str:
    """YAML text of a resolved config, secrets redacted."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)
