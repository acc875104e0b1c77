"""Where settings come from: a TOML file with Restate's keys, `RESTATE_*` and `PERDURE_*`
environment variables, and command-line flags, layered flags > environment > file > defaults.

Restate's names map onto `Settings` through each field's `restate` key: the file path
`worker.invoker.inactivity-timeout` is the variable `RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT`
(`__` nests, `_` is `-`). Perdure-only fields live in the file's `[perdure]` table and in
`PERDURE_<FIELD>` (which also works for Restate-keyed fields and wins over `RESTATE_*`).
Keys Perdure does not use are collected as *ignored* (never fatal: a real `restate.toml` has many);
a value that does not parse is an error naming its source and key.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from perdure.server import config as c
from perdure.server.config import Settings
from perdure.server.units import (
    DurationError,
    SizeError,
    format_duration,
    format_size,
    parse_duration_ms,
    parse_size_bytes,
)

PERDURE_TABLE = "perdure"
CONFIG_FILE_ENV = ("PERDURE_CONFIG", "RESTATE_CONFIG")
REDACTED = "<redacted>"


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names where it came from."""


@dataclass(frozen=True, slots=True)
class Loaded:
    settings: Settings
    ignored: tuple[str, ...]  # Restate keys (file paths or env names) Perdure does not use
    sources: Mapping[str, str]  # field name -> "default" | "file" | "env NAME" | "flag"


def _fields() -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in c.setting_fields()}


def _by_restate_key() -> dict[str, dataclasses.Field[Any]]:
    return {f.metadata["restate"]: f for f in c.setting_fields() if f.metadata["restate"]}


def dashed(name: str) -> str:
    return name.replace("_", "-")


def load_settings(
    config_file: Path | None,
    environ: Mapping[str, str],
    flags: Mapping[str, Any] | None = None,
) -> Loaded:
    """The effective settings. `flags` maps field names to values given on the command line
    (None means not given)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    ignored: list[str] = []
    if config_file is not None:
        for name, value in _from_file(config_file, ignored):
            values[name], sources[name] = value, "file"
    for name, value, source in _from_env(environ, ignored, values):
        values[name], sources[name] = value, source
    for name, raw in (flags or {}).items():
        if raw is None:
            continue
        values[name] = _convert(_fields()[name], raw, f"--{dashed(name)}")
        sources[name] = "flag"
    settings = Settings(**values)
    try:
        settings.validate()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    all_sources = {f: sources.get(f, "default") for f in _fields()}
    return Loaded(settings, tuple(dict.fromkeys(ignored)), all_sources)


def config_file_from_env(environ: Mapping[str, str]) -> Path | None:
    for name in CONFIG_FILE_ENV:
        if environ.get(name):
            return Path(environ[name])
    return None


# --- the file ---


def _from_file(path: Path, ignored: list[str]) -> Iterator[tuple[str, Any]]:
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    restate_keys = _by_restate_key()
    fields = _fields()
    perdure = doc.pop(PERDURE_TABLE, {})
    if not isinstance(perdure, dict):
        raise ConfigError(f"{path}: [{PERDURE_TABLE}] must be a table")
    for key, value in _walk(doc, "", restate_keys, ignored):
        f = restate_keys[key]
        yield f.name, _convert(f, value, f"{path}: {key}")
    for key, value in perdure.items():
        pf = fields.get(key.replace("-", "_"))
        if pf is None:
            ignored.append(f"{PERDURE_TABLE}.{key}")
            continue
        yield pf.name, _convert(pf, value, f"{path}: {PERDURE_TABLE}.{key}")


def _walk(
    table: Mapping[str, Any], prefix: str, known: Mapping[str, Any], ignored: list[str]
) -> Iterator[tuple[str, Any]]:
    """(restate key, value) for every known key; whole tables for table-valued fields."""
    for key, value in table.items():
        path = prefix + key
        if path in known:
            yield path, value
        elif isinstance(value, dict):
            yield from _walk(value, path + ".", known, ignored)
        else:
            ignored.append(path)


# --- the environment ---


def restate_env_name(key: str) -> str:
    """`worker.invoker.inactivity-timeout` -> `RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT`."""
    return "RESTATE_" + "__".join(part.replace("-", "_").upper() for part in key.split("."))


def _from_env(
    environ: Mapping[str, str], ignored: list[str], current: Mapping[str, Any]
) -> Iterator[tuple[str, Any, str]]:
    restate_keys = _by_restate_key()
    header_keys = {k: f for k, f in restate_keys.items() if f.metadata["kind"] == c.HEADERS}
    fields = _fields()
    merged_headers: dict[str, dict[str, str]] = {}
    for name in sorted(environ):
        if not name.startswith("RESTATE_") or name in CONFIG_FILE_ENV:
            continue
        key = ".".join(part.lower().replace("_", "-") for part in name[len("RESTATE_") :].split("__"))
        f = restate_keys.get(key)
        if f is not None:
            yield f.name, _convert(f, environ[name], f"env {name}"), f"env {name}"
            continue
        table = next((k for k in header_keys if key.startswith(k + ".")), None)
        if table is None:
            ignored.append(name)
            continue
        # RESTATE_..._ADDITIONAL_REQUEST_HEADERS__X_TENANT=a adds the header x-tenant: a.
        f = header_keys[table]
        headers = merged_headers.setdefault(f.name, dict(current.get(f.name, _default(f))))
        headers[key[len(table) + 1 :]] = environ[name]
        yield f.name, dict(headers), f"env {name}"
    for f in fields.values():
        name = f"PERDURE_{f.name.upper()}"
        if name in environ:
            yield f.name, _convert(f, environ[name], f"env {name}"), f"env {name}"


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


# --- values ---


def _convert(f: dataclasses.Field[Any], value: Any, where: str) -> Any:
    """A file, env or flag value as the field's type; ConfigError naming `where` otherwise."""
    kind: str = f.metadata["kind"]
    try:
        return _CONVERTERS[kind](value, f)
    except (ValueError, TypeError, DurationError, SizeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _int(value: Any, _f: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    return int(_text(value).strip().replace("_", ""))


def _float(value: Any, _f: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return float(_text(value).strip())


def _bool(value: Any, _f: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise ValueError(f"expected true or false, got '{value}'")
    return text in ("true", "1")


def _duration(value: Any, _f: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # a bare number is milliseconds (PERDURE_*_MS variables)
    text = _text(value)
    if text.strip().isdigit():
        return int(text)
    return parse_duration_ms(text)


def _size(value: Any, _f: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"expected a size, got {value!r}")
    return parse_size_bytes(value if isinstance(value, int) else _text(value))


def _inline(text: str) -> Any:
    """An env or flag text holding a TOML (or JSON) value: `{x-a = "1"}`, `[{name = "k"}]`."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"expected a TOML or JSON value, got '{text}'") from None


def _headers(value: Any, _f: Any) -> dict[str, str]:
    if isinstance(value, str):
        value = _inline(value)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TypeError("expected a table of header names to string values")
    return {str(k).lower(): v for k, v in value.items()}


def _raw(value: Any, _f: Any) -> Any:
    return _inline(value) if isinstance(value, str) else value


def _choice(value: Any, f: dataclasses.Field[Any]) -> str:
    text = _text(value).strip().lower()
    choices: tuple[str, ...] = f.metadata["choices"]
    if text not in choices:
        raise ValueError(f"expected one of {', '.join(choices)}, got '{value}'")
    return text


def _optional_text(value: Any, _f: Any) -> str | None:
    return _text(value) or None


def _path(value: Any, _f: Any) -> Path | None:
    text = _text(value)
    return Path(text) if text else None


_CONVERTERS: dict[str, Any] = {
    c.STR: _optional_text,
    c.INT: _int,
    c.FLOAT: _float,
    c.BOOL: _bool,
    c.PATH: _path,
    c.DURATION: _duration,
    c.SIZE: _size,
    c.HEADERS: _headers,
    c.RAW: _raw,
    c.CHOICE: _choice,
}


# --- printing ---


def _shown(f: dataclasses.Field[Any], value: Any) -> Any:
    kind = f.metadata["kind"]
    if f.metadata[c.SECRET]:
        return REDACTED
    if kind == c.DURATION:
        return format_duration(value)
    if kind == c.SIZE:
        text = format_size(value)
        return text if parse_size_bytes(text) == value else value
    if kind == c.PATH:
        return str(value)
    return value


def dump_settings(settings: Settings) -> str:
    """The effective configuration as TOML, in Restate's layout (Perdure-only keys under
    `[perdure]`); feeding it back as `--config-file` gives the same settings (secrets aside)."""
    doc: dict[str, Any] = {}
    perdure: dict[str, Any] = {}
    for f in c.setting_fields():
        value = getattr(settings, f.name)
        if value is None:
            continue
        shown = _shown(f, value)
        key = f.metadata["restate"]
        if key is None:
            perdure[dashed(f.name)] = shown
            continue
        *parents, leaf = key.split(".")
        table = doc
        for part in parents:
            table = table.setdefault(part, {})
        table[leaf] = shown
    doc[PERDURE_TABLE] = perdure
    return tomli_w.dumps(doc)
