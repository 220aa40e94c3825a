"""One encoder and one decoder between the lab's result dataclasses and JSON.

Why one: the reports (matrix.json, evidence.json, train.json) are read back by ``lab
diff`` and ``lab merge`` and validated against a schema, so every result type must
serialise the same way and round-trip.  Hand-written ``to_json`` methods drifted (13 of
them, each rounding and renaming in its own way); here the dataclass fields *are* the
format, and three per-field metadata keys cover what differed:

* ``key``: the JSON name when it is not the field's name;
* ``digits``: round a float to this many digits;
* ``json=False``: leave the field out (caches, private counters).

A class attribute ``JSON_PROPERTIES`` lists derived properties (or methods without
arguments) written beside the fields, never read back.  Paths are written relative to
``relative_to`` when given, so a run folder can be moved, zipped and downloaded;
``from_json(..., base=)`` makes them absolute
again.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROUND3: Mapping[str, Any] = {"digits": 3}
SKIP: Mapping[str, Any] = {"json": False}


def keyed(name: str, **more: Any) -> dict[str, Any]:
    """Field metadata for a JSON name other than the field's."""
    return {"key": name, **more}


def to_json(value: Any, relative_to: Path | None = None) -> Any:
    """``value`` as JSON-ready data (dicts, lists, strings, numbers, None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _encode_dataclass(value, relative_to)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return _path_text(value, relative_to)
    if isinstance(value, Mapping):
        return {str(k): to_json(v, relative_to) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v, relative_to) for v in value]
    if isinstance(value, set | frozenset):
        return [to_json(v, relative_to) for v in sorted(value)]
    return value


def _encode_dataclass(obj: Any, relative_to: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.metadata.get("json", True) is False:
            continue
        value = to_json(getattr(obj, f.name), relative_to)
        digits = f.metadata.get("digits")
        if digits is not None and isinstance(value, float):
            value = round(value, digits)
        out[f.metadata.get("key", f.name)] = value
    for name in getattr(type(obj), "JSON_PROPERTIES", ()):
        value = getattr(obj, name)
        out[name] = to_json(value() if callable(value) else value, relative_to)
    return out


def _path_text(path: Path, relative_to: Path | None) -> str:
    if relative_to is None or not path.is_absolute():
        return path.as_posix()
    return Path(os.path.relpath(path, relative_to)).as_posix()


def from_json(cls: type[T], data: Any, base: Path | None = None) -> T:
    """Rebuild a ``cls`` (a dataclass) from :func:`to_json` output; unknown keys are ignored."""
    return typing.cast(T, _decode(cls, data, base))


def _decode(hint: Any, data: Any, base: Path | None) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any or data is None and _optional(hint):
        return data
    if origin in (typing.Union, types.UnionType):
        return _decode_union(args, data, base)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _decode_dataclass(hint, data, base)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(data)
    if hint is Path:
        path = Path(data)
        return base / path if base is not None and not path.is_absolute() else path
    if origin in (list, set, frozenset):
        items = [_decode(args[0] if args else Any, v, base) for v in data]
        return items if origin is list else origin(items)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v, base) for v in data)
        return tuple(_decode(a, v, base) for a, v in zip(args, data, strict=True))
    if origin in (dict, Mapping) or hint is dict:
        value_hint = args[1] if len(args) == 2 else Any
        return {k: _decode(value_hint, v, base) for k, v in data.items()}
    if hint is float and isinstance(data, int):
        return float(data)
    return data


def _optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)


def _decode_union(args: tuple[Any, ...], data: Any, base: Path | None) -> Any:
    if data is None:
        return None
    candidates = [a for a in args if a is not type(None)]
    for candidate in candidates:
        if _matches(candidate, data):
            return _decode(candidate, data, base)
    return _decode(candidates[0], data, base)


def _matches(hint: Any, data: Any) -> bool:
    origin = typing.get_origin(hint) or hint
    if origin in (list, tuple, set, frozenset):
        return isinstance(data, list)
    if origin in (dict, Mapping) or dataclasses.is_dataclass(origin):
        return isinstance(data, dict)
    if origin is Path:
        return isinstance(data, str)
    return isinstance(origin, type) and isinstance(data, origin)


def _decode_dataclass(cls: type[Any], data: Mapping[str, Any], base: Path | None) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    late: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f.metadata.get("key", f.name)
        if f.metadata.get("json", True) is False or key not in data:
            continue
        value = _decode(hints[f.name], data[key], base)
        (kwargs if f.init else late)[f.name] = value
    obj = cls(**kwargs)
    for name, value in late.items():
        setattr(obj, name, value)
    return obj
