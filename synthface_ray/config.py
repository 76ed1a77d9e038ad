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


def secret_field(default: Any = None) -> Any:
    """A field whose value is never printed nor written into a resolved config."""
    return dataclasses.field(default=default, repr=False, metadata={"secret": True})


# building dataclasses from plain data ---------------------------------------------------------
def from_dict(cls: type[T], data: Mapping[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, recursing into nested sections.

    Unknown keys raise :class:`ConfigError` naming the key and the allowed ones; values are
    coerced to the annotated type where that is lossless (int -> float, str -> Path-like str).
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
        default = _field_default(fields[name])
        if isinstance(value, Mapping) and dataclasses.is_dataclass(default):
            # a section given in part keeps its parent's defaults for the rest (e.g. a command's
            # own output.path when only output.overwrite is set)
            data[name] = _deep_merge(to_dict(default, redact=False), value)
    kwargs = {name: _coerce(hints[name], value, prefix + name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - defensive: dataclass signature mismatch
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from exc


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


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping of keys to values, got {value!r}")
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
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}={value!r}: {'; '.join(errors)}")
    if origin is typing.Literal:
        check_choice(key, value, args)
        return value
    if origin in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        item = args[0] if args else Any
        out = [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    return _coerce_scalar(hint, value, key)


def _coerce_scalar(hint: Any, value: Any, key: str) -> Any:
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if hint in (float, str) and not isinstance(value, hint):
        raise ConfigError(f"{key} must be a {hint.__name__}, got {value!r}")
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
