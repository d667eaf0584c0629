"""Stage configs: typed dataclasses loaded from YAML, overridden with ``key=value``, hashed, dumped beside outputs.

Every stage has exactly one config dataclass (``WorldConfig``, ``BaseConfig``, ...). Each field carries its
documentation as an attribute docstring (the string literal right after the field); ``--help`` and the docs read it
from there, so there is one source of truth per field. Validation lives in ``validate()`` and raises
:class:`ConfigError` naming the field; :func:`from_dict` validates every nested config and prefixes the field's
path (``image.noise``), so a ``validate()`` checks its own fields only.

One name per thing across commands: a config class lists the keys it renamed in ``RENAMED`` (old key ->
:class:`Renamed`); loading reads an old key under its new name with a :class:`ConfigDeprecationWarning` naming both,
until release :data:`RENAMED_UNTIL` (docs/errors.md, "Renamed config keys").

Example::

    cfg = load_config(WorldConfig, "configs/world.yaml", ["prior_strength=0.9", "image.noise=20"])
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
import math
import textwrap
import types
import typing
import warnings
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    """An invalid config value; the message names the field."""


def fail(field: str, message: str) -> typing.NoReturn:
    raise ConfigError(f"config field '{field}': {message}")


RENAMED_UNTIL = "0.2"
"""The release that stops reading renamed config keys under their old names."""


class ConfigDeprecationWarning(FutureWarning):
    """A config key given under its old name; shown by default (the user, not a developer, has to act on it)."""


@dataclasses.dataclass(frozen=True)
class Renamed:
    """The new name of an old config key, in a config class's ``RENAMED`` table."""

    new: str
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Old spellings of values that changed with the name (``precision: bf16`` -> ``dtype: bfloat16``)."""


def renamed_keys(cls: type) -> dict[str, Renamed]:
    """The ``RENAMED`` table of a config class ({old key: :class:`Renamed`}); empty when it renamed nothing."""
    return dict(getattr(cls, "RENAMED", {}))


def _sections(hint: Any) -> tuple[type | None, bool]:
    """The config class a field holds and whether it holds a mapping of them (``dict[str, KindConfig]``)."""
    if dataclasses.is_dataclass(hint):
        return hint, False
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return _sections(args[0])
    if typing.get_origin(hint) is dict and len(args) == 2 and dataclasses.is_dataclass(args[1]):
        return args[1], True
    return None, False


def describe_renamed(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """(old dotted key, new dotted key) of every renamed key of ``cls`` and its nested sections (``--help``)."""
    rows = [(prefix + old, prefix + to.new) for old, to in renamed_keys(cls).items()]
    for name, hint in typing.get_type_hints(cls).items():
        section, many = _sections(hint)
        if section is not None and name in {f.name for f in dataclasses.fields(cls)}:
            rows += describe_renamed(section, f"{prefix}{name}.{'<name>.' if many else ''}")
    return rows


def _rename_one(cls: type, data: dict[str, Any], prefix: str, warn: bool) -> dict[str, Any]:
    """``data`` with ``cls``'s own renamed keys (not its sections') under their new names."""
    out = dict(data)
    for old, to in renamed_keys(cls).items():
        if old not in out:
            continue
        if to.new in out:
            fail(prefix + old, f"was renamed '{prefix}{to.new}'; give only '{prefix}{to.new}'")
        value = out.pop(old)
        value = to.values.get(value, value) if isinstance(value, str) else value
        out[to.new] = value
        if warn:
            spelled = f" ({old}: {data[old]} reads as {to.new}: {value})" if value != data[old] else ""
            warnings.warn(f"config key '{prefix}{old}' is now '{prefix}{to.new}'{spelled}; the old name is read "
                          f"until unprior {RENAMED_UNTIL}", ConfigDeprecationWarning, stacklevel=2)
    return out


def rename_keys(cls: type, data: dict[str, Any], prefix: str = "", warn: bool = True) -> dict[str, Any]:
    """``data`` (a config mapping for ``cls``) with every renamed key, its own and its sections', under its new
    name; warns once per old key (``warn``), raises ConfigError when a mapping gives both the old and new name."""
    out = _rename_one(cls, data, prefix, warn)
    hints = typing.get_type_hints(cls)
    for key, value in out.items():
        section, many = _sections(hints.get(key))
        if section is None or not isinstance(value, dict):
            continue
        if many:
            out[key] = {k: rename_keys(section, v, f"{prefix}{key}.{k}.", warn) if isinstance(v, dict) else v
                        for k, v in value.items()}
        else:
            out[key] = rename_keys(section, value, f"{prefix}{key}.", warn)
    return out


def check_range(obj: object, name: str, lo: float | None = None, hi: float | None = None) -> None:
    """Raise ConfigError if ``obj.name`` is outside [lo, hi] or is a NaN or infinite float."""
    value = getattr(obj, name)
    if isinstance(value, float) and not math.isfinite(value):
        fail(name, f"must be a finite number, got {value!r}")
    if lo is not None and value < lo:
        fail(name, f"must be >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        fail(name, f"must be <= {hi}, got {value!r}")


def check_choice(obj: object, name: str, choices: typing.Iterable[str]) -> None:
    value = getattr(obj, name)
    choices = tuple(choices)
    if value not in choices:
        fail(name, f"must be one of {', '.join(choices)}; got {value!r}")


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass: {field name: the string literal that follows its annotation}."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, [*body[1:], None], strict=True):
            is_field = isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            value = nxt.value if isinstance(nxt, ast.Expr) else None
            is_doc = isinstance(value, ast.Constant) and isinstance(value.value, str)
            if is_field and is_doc:
                docs[node.target.id] = " ".join(value.value.split())  # type: ignore[union-attr]
    return docs


def describe(cls: type, prefix: str = "", default: Any = None) -> list[tuple[str, str, str]]:
    """(dotted name, default, doc) for every field, recursing into sections with their field's default (not their
    class's: the demo's ``train.lora`` differs)."""
    rows = []
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    default = cls() if default is None else default
    for f in dataclasses.fields(cls):
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            rows += describe(hints[f.name], prefix + f.name + ".", value)
        else:
            rows.append((prefix + f.name, json.dumps(value, default=dataclasses.asdict), docs.get(f.name, "")))
    return rows


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Convert a YAML value to the field's declared type, or raise ConfigError naming the field."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except ConfigError as e:
                errors.append(str(e))
        fail(name, f"{value!r} matches none of {hint}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            fail(name, f"expected a mapping, got {value!r}")
        return from_dict(hint, value, prefix=name + ".")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            fail(name, f"expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        items = [_coerce(v, item, f"{name}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            fail(name, f"expected a mapping, got {value!r}")
        _, vt = typing.get_args(hint) or (Any, Any)
        return {str(k): _coerce(v, vt, f"{name}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            fail(name, f"must be one of {typing.get_args(hint)}, got {value!r}")
        return value
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        fail(name, f"expected true/false, got {value!r}")
    if hint is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        try:  # YAML 1.1 reads "1e-3" as a string
            number = float(value)
        except ValueError:
            number = None
        if number is not None and not math.isfinite(number):  # .nan, .inf, "nan": never a usable setting
            fail(name, f"must be a finite number, got {value!r}")
        if number is not None:
            return number
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if hint is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    fail(name, f"expected {getattr(hint, '__name__', hint)}, got {value!r}")


def from_dict(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    """Build ``cls`` from a (possibly partial) mapping; unknown keys and wrong types raise ConfigError; renamed keys
    are read under their new names (with a warning). A class with a ``preset(name)`` static method reads
    ``preset: NAME`` as that preset's fields, with the mapping's other keys merged over them."""
    data = _rename_one(cls, data, prefix, warn=True)
    if "preset" in data and callable(getattr(cls, "preset", None)):
        try:
            data = _merge(to_dict(cls.preset(data["preset"])), {k: v for k, v in data.items() if k != "preset"})
        except KeyError as e:
            fail(prefix + "preset", str(e.args[0]))
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        fail(prefix + unknown[0], f"unknown field for {cls.__name__}; known fields: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as e:
            if prefix and "config field '" in str(e):
                raise ConfigError(str(e).replace("config field '", f"config field '{prefix}", 1)) from None
            raise
    return obj


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (JSON/YAML-safe) of a config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``dotted`` = ``"a.b"``, creating the sections on the way."""
    node = data
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            fail(dotted, f"'{p}' is not a section")
    node[leaf] = value


def parse_overrides(pairs: typing.Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "name=x"]`` -> nested dict; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} is not of the form key=value")
        set_dotted(out, key.strip(), yaml.safe_load(raw) if raw != "" else "")
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def load_config(cls: type[C], path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> C:
    """Defaults <- YAML file <- ``key=value`` overrides, validated."""
    data: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text()
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data = rename_keys(cls, loaded)
    return from_dict(cls, _merge(data, rename_keys(cls, parse_overrides(overrides))))


def dump_yaml(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat |= _flatten(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {prefix + key: value}
    return flat


ABSENT = "<absent>"


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``["lr: 0.001 -> 0.002", "lora.r: 8 -> 16"]``: the dotted fields whose values differ between two config
    dicts (a field only one of them has shows as ``<absent>`` on the other side)."""
    a, b = _flatten(old), _flatten(new)

    def show(value: Any) -> str:
        return value if value is ABSENT else json.dumps(value)

    return [f"{k}: {show(a.get(k, ABSENT))} -> {show(b.get(k, ABSENT))}"
            for k in sorted({*a, *b}) if a.get(k, ABSENT) != b.get(k, ABSENT)]


def describe_changes(old: dict[str, Any], new: dict[str, Any], limit: int = 8) -> str:
    """:func:`config_changes` as one clause: ``"lr: 0.001 -> 0.002; seed: 0 -> 1"`` (at most ``limit`` fields)."""
    changes = config_changes(old, new)
    more = f"; (+{len(changes) - limit} more)" if len(changes) > limit else ""
    return "; ".join(changes[:limit]) + more if changes else "no field differs"


def config_hash(cfg: Any, n: int = 12) -> str:
    """Stable short hash of a config's content (order-independent JSON)."""
    blob = json.dumps(to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:n]
