"""Typed loading of TOML tables into frozen dataclasses.

Every configuration section is a frozen dataclass whose fields carry defaults. The
loader walks the dataclass's type hints, so a section is declared once, as a class,
and its validation (unknown keys, wrong types, missing required keys) comes from it.
Errors name the dotted key and the file: ``config/gateway.toml: listener.port: expected
an integer, got 'x'``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration problem, with the key and file it concerns."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        super().__init__(f"{file}: {key}: {reason}" if key else f"{file}: {reason}")
        self.file = file
        self.key = key
        self.reason = reason


def _type_name(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin is tuple:
        return "a list"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a table"
    return str(tp)


def _convert(value: Any, tp: Any, key: str, file: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors: list[str] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, file)
            except ConfigError as exc:
                errors.append(exc.reason)
        raise ConfigError(file, key, errors[0] if errors else "invalid value")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(file, key, f"expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(file, key, f"expected a list, got {value!r}")
        item_tp = args[0]
        return tuple(_convert(v, item_tp, f"{key}[{i}]", file) for i, v in enumerate(value))
    if origin is dict or tp is dict:
        args = typing.get_args(tp) or (str, str)
        if not isinstance(value, dict):
            raise ConfigError(file, key, f"expected a table, got {value!r}")
        return types.MappingProxyType(
            {str(k): _convert(v, args[1], f"{key}.{k}", file) for k, v in value.items()}
        )
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(file, key, f"expected a table, got {value!r}")
        return load_dataclass(tp, value, file, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(file, key, f"expected a boolean, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(file, key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(file, key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(file, key, f"expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise ConfigError(file, key, f"unsupported type {tp!r}")  # a bug in a section class


def load_dataclass(cls: type[T], table: Mapping[str, Any], file: str, prefix: str = "") -> T:
    """Build ``cls`` from ``table``; unknown keys, wrong types and missing keys are errors."""
    assert dataclasses.is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            raise ConfigError(file, dotted, "unknown key")
        kwargs[key] = _convert(value, hints[key], dotted, file)
    for name, f in fields.items():
        if name in kwargs:
            continue
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            dotted = f"{prefix}.{name}" if prefix else name
            raise ConfigError(file, dotted, "required key is missing")
    instance = cls(**kwargs)
    check = getattr(instance, "validate", None)
    if callable(check):
        problem = check()
        if problem:
            bad_key, reason = problem
            raise ConfigError(file, f"{prefix}.{bad_key}" if prefix else bad_key, reason)
    return instance


def dump_dataclass(obj: Any, secret_fields: frozenset[str] = frozenset()) -> Any:
    """The effective configuration as plain data, with secret values masked."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("secret") or f.name in secret_fields:
                out[f.name] = "***" if value else value
            else:
                out[f.name] = dump_dataclass(value, secret_fields)
        return out
    if isinstance(obj, tuple):
        return [dump_dataclass(v, secret_fields) for v in obj]
    if isinstance(obj, Mapping):
        return {k: dump_dataclass(v, secret_fields) for k, v in obj.items()}
    return obj


def secret(default: str | None = None) -> Any:
    """A field whose value is masked in ``config check`` output."""
    return dataclasses.field(default=default, metadata={"secret": True})
