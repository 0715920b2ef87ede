"""A context as JSON: the body a web route answers with, shared (resource) fields left out.

Framework-free and pure Python, so the Flask integration needs no pydantic. The forms follow
pydantic's JSON mode, so the body matches the OpenAPI schema FastAPI shows for the context:
datetimes, dates and times as ISO 8601 strings, timedeltas as ISO 8601 durations, decimals and
UUIDs as strings, enums as their values, sets as lists, `AtomicList`/`AtomicDict` as a snapshot
taken under their lock, nested dataclasses as objects, non-finite floats as `null`.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, cast

from cadence._context import AtomicDict, AtomicList, shared_fields

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["UnencodableError", "context_to_dict", "dumps", "json_fields", "shared_field_names"]

_PLAIN: frozenset[type] = frozenset({str, int, bool, type(None)})

_plans: dict[type, tuple[str, ...]] = {}


class UnencodableError(TypeError):
    """A context holds a value with no JSON form; the message names the field and its type."""


def shared_field_names(cls: type) -> frozenset[str]:
    """Return the shared (resource) fields of the context class `cls`: never answered as JSON."""
    try:
        return shared_fields(cls)
    except (TypeError, ValueError):  # not a class shared_fields understands
        return frozenset()


def json_fields(cls: type) -> tuple[str, ...]:
    """Return the fields of dataclass `cls` that its JSON form carries, in declaration order."""
    plan = _plans.get(cls)
    if plan is None:
        shared = shared_field_names(cls)
        fields = dataclasses.fields(cast("type[DataclassInstance]", cls))
        plan = tuple(f.name for f in fields if f.name not in shared)
        _plans[cls] = plan
    return plan


def context_to_dict(context: object, cadence_name: str = "") -> dict[str, object]:
    """Return the JSON-ready dict of a dataclass context, its shared fields left out.

    Raises:
        UnencodableError: a field holds a value with no JSON form (it names the field).

    """
    cls = type(context)
    out: dict[str, object] = {}
    for name in json_fields(cls):
        value = getattr(context, name)
        try:
            out[name] = _encode(value)
        except UnencodableError as exc:
            where = f"cadence {cadence_name!r}: " if cadence_name else ""
            raise UnencodableError(
                f"{where}field {name!r} of {cls.__name__} holds {exc}, which has no JSON "
                "form; annotate the field as Shared[...] to leave it out of the response, or "
                "hold a JSON-ready value"
            ) from None
    return out


def dumps(context: object, cadence_name: str = "") -> bytes:
    """Return the UTF-8 JSON body of a dataclass context (as Starlette's JSONResponse writes it).

    Raises:
        UnencodableError: a field holds a value with no JSON form (it names the field).

    """
    return json.dumps(
        context_to_dict(context, cadence_name),
        ensure_ascii=False,
        allow_nan=False,
        indent=None,
        separators=(",", ":"),
    ).encode("utf-8")


def _encode(value: object) -> object:  # noqa: PLR0911, PLR0912 # one dispatch, cheapest first
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return value if math.isfinite(cast("float", value)) else None
    if kind is list or kind is tuple:
        return [_encode(item) for item in cast("list[object]", value)]
    if kind is dict:
        return {_key(k): _encode(v) for k, v in cast("dict[object, object]", value).items()}
    plan = _plans.get(kind)
    if plan is not None:  # a dataclass seen before
        return {name: _encode(getattr(value, name)) for name in plan}
    if isinstance(value, enum.Enum):
        return _encode(value.value)
    if isinstance(value, AtomicList):
        return [_encode(item) for item in cast("AtomicList[object]", value).snapshot()]
    if isinstance(value, AtomicDict):
        items = cast("AtomicDict[object, object]", value).snapshot().items()
        return {_key(k): _encode(v) for k, v in items}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _encode(getattr(value, name)) for name in json_fields(type(value))}
    if isinstance(value, str | int):  # str and int subclasses that are not enums
        return str(value) if isinstance(value, str) else int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _duration(value)
    if isinstance(value, Decimal | uuid.UUID | PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {_key(k): _encode(v) for k, v in cast("Mapping[object, object]", value).items()}
    if isinstance(value, list | tuple):
        return [_encode(item) for item in cast("list[object]", value)]
    if isinstance(value, set | frozenset):
        members: list[Any] = [_encode(item) for item in cast("set[object]", value)]  # Any: sorted
        try:
            return sorted(members)  # a set has no order; a sorted list is stable
        except TypeError:
            return members
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    dump = getattr(value, "model_dump", None)  # a pydantic model
    if callable(dump):
        return _encode(dump(mode="json"))
    raise UnencodableError(f"a value of type {kind.__name__}")


def _key(key: object) -> str:
    if type(key) is str:
        return key
    encoded = _encode(key)
    if isinstance(encoded, str):
        return encoded
    if encoded is None or isinstance(encoded, bool | int | float):
        return json.dumps(encoded)
    raise UnencodableError(f"a dict key of type {type(key).__name__}")


def _duration(delta: dt.timedelta) -> str:
    """Return `delta` as an ISO 8601 duration, as pydantic writes it (`P1DT2H3M4.5S`)."""
    sign = "-" if delta < dt.timedelta(0) else ""
    delta = abs(delta)
    hours, rest = divmod(delta.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    out = f"{sign}P"
    if delta.days:
        out += f"{delta.days}D"
    clock = ""
    if hours:
        clock += f"{hours}H"
    if minutes:
        clock += f"{minutes}M"
    if seconds or delta.microseconds or not (delta.days or clock):
        whole = f"{seconds}.{delta.microseconds:06d}".rstrip("0").rstrip(".")
        clock += f"{whole}S"
    return f"{out}T{clock}" if clock else out
