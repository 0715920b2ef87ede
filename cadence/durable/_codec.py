"""Contexts as typed JSON (msgspec), never pickle.

A context class is checked once, field by field, when a durable run starts: every field that
is not `Shared[...]` must have a type the codec can write and read back exactly. Shared fields
are never stored; on resume they come from the context the caller passes. A field a beat
deleted (`del ctx.field`) is listed under `"-deleted"` (a key no field can have) and is
absent again when read back, as it was in the run.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import math
import types
import typing
import uuid
from collections.abc import Mapping, MutableMapping, MutableSequence, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from cadence._context import (
    AtomicDict,
    AtomicList,
    Context,
    context_fields,
    context_info,
    is_frozen,
)
from cadence._errors import CadenceDefinitionError
from cadence._steps import Child
from cadence.durable._errors import RunDecodeError, RunEncodeError

if TYPE_CHECKING:
    from collections.abc import Callable

    from cadence._cadence import Cadence

try:
    import msgspec
    import msgspec.json
except ImportError as exc:  # pragma: no cover - msgspec is installed in the test venv
    raise ImportError("durable runs need msgspec: pip install 'cadence-flow[durable]'") from exc

__all__ = ["ContextCodec", "check_storable", "codec_for"]

C = TypeVar("C", bound=Context)

_DELETED = "-deleted"  # the stored key that lists the fields a beat deleted

# Written as JSON strings, read back by their type: values, and dict keys too.
_STRING_LIKE: frozenset[object] = frozenset(
    {
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        uuid.UUID,
        decimal.Decimal,
    }
)
_LEAVES: frozenset[object] = _STRING_LIKE | {
    int,
    float,
    str,
    bool,
    bytes,
    bytearray,
    type(None),
    None,
    Any,
    object,
}
_CONTAINERS: frozenset[object] = frozenset(
    {
        list,
        tuple,
        set,
        frozenset,
        dict,
        MutableSequence,
        Mapping,
        MutableMapping,
        AbstractSet,
        AtomicList,
        AtomicDict,
    }
)


def load_msgspec() -> types.ModuleType:
    """Import msgspec, or raise `ImportError` with the install hint."""
    try:
        import msgspec  # noqa: PLC0415 # optional dependency, imported when a durable run starts
    except ImportError as exc:  # pragma: no cover - msgspec is installed in the test venv
        raise ImportError("durable runs need msgspec: pip install 'cadence-flow[durable]'") from exc
    return msgspec


def _convert(value: object, kind: object) -> object:
    """Convert decoded JSON to `kind`; dict keys come as JSON's strings (`{"1": ...}`)."""
    return msgspec.convert(value, kind, dec_hook=_dec_hook, str_keys=True)


def _dec_hook(kind: Any, value: Any) -> Any:  # Any: msgspec's hook signature
    """Rebuild the atomic containers msgspec does not know, with typed items.

    An `object` field is plain JSON, as `Any` is (msgspec takes `object` for a class of its own).
    """
    if kind is object:
        return value
    origin = typing.get_origin(kind) or kind
    args = typing.get_args(kind)
    if origin is AtomicList:
        items: object = list[args[0]] if args else list  # type: ignore[valid-type] # a runtime type argument
        return AtomicList(cast("list[object]", _convert(value, items)))
    if origin is AtomicDict:
        pairs: object = dict[args[0], args[1]] if args else dict  # type: ignore[valid-type] # runtime type arguments
        return AtomicDict(cast("dict[object, object]", _convert(value, pairs)))
    raise NotImplementedError(f"cannot decode {kind!r}")


def _unsupported(kind: object, seen: set[int]) -> str | None:  # noqa: PLR0911, PLR0912 # one answer per kind of type
    """Return why `kind` cannot round-trip through JSON, or `None` if it can."""
    if isinstance(kind, typing.TypeVar):
        return f"type variable {kind}"
    if isinstance(kind, typing.NewType):
        return _unsupported(kind.__supertype__, seen)
    if kind in _LEAVES:
        return None
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is typing.Annotated:
        return _unsupported(args[0], seen)
    if origin is typing.Literal:
        return None
    if origin is typing.Union or origin is types.UnionType:
        for arg in args:
            reason = _unsupported(arg, seen)
            if reason is not None:
                return reason
        return None
    if origin is Sequence or kind is Sequence:  # a tuple would come back as a list
        return "Sequence (JSON cannot tell a tuple from a list: write list[...] or tuple[...])"
    if origin is AbstractSet or kind is AbstractSet:  # a frozenset would come back as a set
        return "Set (JSON cannot tell a frozenset from a set: write set[...] or frozenset[...])"
    if origin in _MAPPINGS and args:
        reason = _unkeyed(args[0])
        if reason is not None:
            return reason
    if origin is AtomicList or origin is AtomicDict:  # msgspec does not look inside them
        builtin: Any = list if origin is AtomicList else dict  # Any: subscripted at run time
        plain: object = builtin[args]
        try:
            msgspec.json.Decoder(plain, dec_hook=_dec_hook)
        except TypeError as exc:
            return str(exc)
    if origin in _CONTAINERS:
        for arg in args:
            if arg is not Ellipsis:
                reason = _unsupported(arg, seen)
                if reason is not None:
                    return reason
        return None
    if origin is not None:
        return f"{kind!r} (a generic the codec does not know)"
    if isinstance(kind, type):
        cls = cast("type[object]", kind)
        title = cls.__qualname__
        if cls in _CONTAINERS or issubclass(cls, enum.Enum):
            return None
        if dataclasses.is_dataclass(cls) or _is_struct(cls):
            if id(cls) in seen:
                return None
            seen.add(id(cls))
            try:
                hints = typing.get_type_hints(cls, include_extras=True)
            except Exception as exc:  # noqa: BLE001 # an unresolvable annotation is the reason
                return f"{title} (its annotations cannot be resolved: {exc})"
            for name in _field_names(cls):  # not its ClassVars and InitVars: never stored
                reason = _unsupported(hints.get(name, Any), seen)
                if reason is not None:
                    return f"{title}.{name}: {reason}"
            return None
    module = cast("str", getattr(kind, "__module__", ""))
    where = "" if module in {"builtins", ""} else f"{module}."
    return f"{where}{_type_name(kind)} (not JSON: mark a resource Shared[...], or use a dataclass)"


def _type_name(kind: object) -> str:
    """Return a type's name for a message: its own, or the whole of a generic (`tuple[int]`)."""
    named = cast("str | None", getattr(kind, "__qualname__", None))  # `tuple[int]`'s: "tuple"
    return named if named and typing.get_origin(kind) is None else repr(kind)


def _is_struct(kind: type) -> bool:
    return issubclass(kind, msgspec.Struct)


def _field_names(cls: type[object]) -> Sequence[str]:
    """Return the fields of a dataclass or a msgspec Struct: what msgspec writes of it."""
    if _is_struct(cls):
        return cast("tuple[str, ...]", getattr(cls, "__struct_fields__"))  # noqa: B009 # a Struct's, unknown to the checkers
    return [f.name for f in dataclasses.fields(cast("Any", cls))]  # Any: a dataclass type


_MAPPINGS: frozenset[object] = frozenset({dict, Mapping, MutableMapping, AtomicDict})
_KEYS: frozenset[object] = _STRING_LIKE | {str, int, float, bytes}


def _unkeyed(kind: object) -> str | None:
    """Return why `kind` cannot be a dict's key type that reads back as itself, or `None`.

    JSON's keys are strings: a key is read back by its type, so a union of key types (`1` and
    `"1"` both stored as `"1"`), a bool, a tuple or a frozenset has no key to come back as.
    """
    title = _type_name(kind)  # before the checks below narrow `kind`
    if isinstance(kind, typing.NewType):
        return _unkeyed(kind.__supertype__)
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is typing.Annotated:
        return _unkeyed(args[0])
    if kind is Any or kind in _KEYS:  # Any: plain JSON, its keys strings
        return None
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return None
    if origin is typing.Literal and (
        all(type(a) is str for a in args) or all(type(a) is int for a in args)
    ):
        return None
    return (
        f"dict keys of type {title} (JSON's keys are "
        "strings, read back by the key type: it must be one of str, int, float, an enum, "
        "UUID, Decimal, a date, time or datetime, or a Literal of str or of int)"
    )


def _may_hold(kind: object, wanted: tuple[type, ...], seen: set[int], *, untyped: bool) -> bool:  # noqa: PLR0911 # one answer per kind of type
    """Return whether a value of `kind` can hold a value of a `wanted` type.

    `untyped`: whether `Any`, `object` and type variables count (they can hold anything).
    """
    if kind is Any or kind is object or isinstance(kind, typing.TypeVar):
        return untyped
    if kind in _LEAVES:
        return isinstance(kind, type) and issubclass(kind, wanted)
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is typing.Annotated:
        return _may_hold(args[0], wanted, seen, untyped=untyped)
    if origin is typing.Literal:
        return any(isinstance(arg, wanted) for arg in args)
    if origin is not None:
        return any(_may_hold(a, wanted, seen, untyped=untyped) for a in args if a is not Ellipsis)
    if not isinstance(kind, type):
        return False
    cls = cast("type[object]", kind)
    if dataclasses.is_dataclass(cls) or _is_struct(cls):
        if id(cls) in seen:
            return False
        seen.add(id(cls))
        hints = typing.get_type_hints(cls, include_extras=True)
        return any(
            _may_hold(hints.get(name, Any), wanted, seen, untyped=untyped)
            for name in _field_names(cls)  # as `_unsupported`: not its ClassVars and InitVars
        )
    return issubclass(cls, wanted)


def _is_non_finite(value: object) -> bool:
    """Whether `value` is a NaN or an infinity (which JSON has no form for)."""
    return isinstance(value, float) and not math.isfinite(value)


def _is_zoned(value: object) -> bool:
    """Whether `value` is a datetime or time in a time zone JSON cannot name.

    A zoneinfo's, or a fixed offset with seconds in it (ISO 8601 keeps whole minutes).
    """
    if not isinstance(value, datetime.datetime | datetime.time) or value.tzinfo is None:
        return False
    if type(value.tzinfo) is not datetime.timezone:
        return True
    offset = value.utcoffset()
    return offset is not None and offset % _MINUTE != _NO_TIME


_MINUTE = datetime.timedelta(minutes=1)
_NO_TIME = datetime.timedelta(0)


def _first(value: object, found: Callable[[object], bool]) -> tuple[str, object] | None:  # noqa: PLR0911, PLR0912 # one answer per kind of value
    """Return where inside `value` (`''` for itself) the first value `found` picks is, and it."""
    if found(value):
        return "", value
    kind = type(value)
    if kind is str or kind is int or kind is bool or kind is float or value is None:
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(cast("list[object]", value)):
            inside = _first(item, found)
            if inside is not None:
                return f"[{index}]{inside[0]}", inside[1]
        return None
    if isinstance(value, (set, frozenset)):
        for item in cast("set[object]", value):
            inside = _first(item, found)
            if inside is not None:
                return " (an item of the set)", inside[1]
        return None
    if isinstance(value, dict):
        for key, item in cast("dict[object, object]", value).items():
            inside = _first(key, found)
            if inside is not None:
                return f" (the key {key!r})", inside[1]
            inside = _first(item, found)
            if inside is not None:
                return f"[{key!r}]{inside[0]}", inside[1]
        return None
    if dataclasses.is_dataclass(value) or isinstance(value, msgspec.Struct):
        names: Sequence[str] = (
            value.__struct_fields__
            if isinstance(value, msgspec.Struct)
            else [f.name for f in dataclasses.fields(value)]
        )
        for name in names:
            inside = _first(getattr(value, name, None), found)
            if inside is not None:
                return f".{name}{inside[0]}", inside[1]
    return None


class ContextCodec(Generic[C]):
    """Write a context class's stored fields as JSON and read them back onto a context.

    Raises:
        CadenceDefinitionError: a stored field's type cannot round-trip (the field is named).

    """

    __slots__ = (
        "_cls",
        "_decoder",
        "_deleted",
        "_encoder",
        "_floats",
        "_frozen",
        "_shared",
        "_stored",
        "_zoned",
    )

    def __init__(self, cls: type[C]) -> None:
        info = context_info(cls)
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception as exc:
            raise CadenceDefinitionError(
                f"durable context {cls.__qualname__}: its annotations cannot be resolved "
                f"({exc}); durable contexts are declared at module level"
            ) from exc
        stored = tuple(name for name in info.fields if name not in info.shared)
        specs: list[tuple[str, object, object]] = []  # name, type, default
        for name in stored:
            kind = hints.get(name, Any)
            reason = _unsupported(kind, set())
            if reason is None:
                try:
                    msgspec.json.Decoder(kind, dec_hook=_dec_hook)
                except TypeError as exc:
                    reason = str(exc)
            if reason is not None:
                raise CadenceDefinitionError(
                    f"durable context {cls.__qualname__}: field {name!r} cannot be stored as "
                    f"JSON: {reason}"
                )
            specs.append((name, kind, msgspec.UNSET))  # absent: deleted, or a corrupted row
        self._floats = tuple(n for n, k, _ in specs if _may_hold(k, (float,), set(), untyped=True))
        # `Any` fields are plain JSON (a datetime comes back a string): not looked at for zones.
        clock = (datetime.datetime, datetime.time)
        self._zoned = tuple(n for n, k, _ in specs if _may_hold(k, clock, set(), untyped=False))
        self._deleted = "deleted_"  # the attribute that reads "-deleted", no field's name
        while self._deleted in stored:
            self._deleted += "_"
        specs.append(
            (self._deleted, list[str], msgspec.field(default_factory=list[str], name=_DELETED))
        )
        state = msgspec.defstruct(
            f"{cls.__name__}State", specs, omit_defaults=False, forbid_unknown_fields=False
        )
        self._cls = cls
        self._stored = stored
        self._shared = info.shared
        self._frozen = is_frozen(cls)
        self._encoder: msgspec.json.Encoder = msgspec.json.Encoder(decimal_format="string")
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(state, dec_hook=_dec_hook)

    @property
    def stored_fields(self) -> tuple[str, ...]:
        """The fields written to the store (every field not marked `Shared[...]`)."""
        return self._stored

    def encode(self, context: C, run_id: str) -> bytes:
        """Return the stored fields of `context` as JSON bytes.

        Raises:
            RunEncodeError: a field holds a value the codec cannot write (the field is named).

        """
        state = context_fields(context)
        values = {name: state[name] for name in self._stored if name in state}
        if len(values) < len(self._stored):
            values[_DELETED] = [name for name in self._stored if name not in state]
        try:
            data = self._encoder.encode(values)
        except (TypeError, ValueError, OverflowError):
            for name, value in values.items():
                try:
                    self._encoder.encode(value)
                except (TypeError, ValueError, OverflowError) as exc:
                    raise RunEncodeError(
                        run_id,
                        f"run {run_id!r}: field {self._cls.__qualname__}.{name} holds a "
                        f"{type(value).__qualname__} that cannot be stored as JSON: {exc}",
                    ) from exc
            raise
        # JSON has no NaN nor infinity: msgspec writes them as null, which would come back as
        # None or fail to decode. Only a field that can hold a float is looked at, and only
        # when the JSON has a null at all.
        if self._floats and b"null" in data:
            self._refuse(
                run_id,
                values,
                self._floats,
                _is_non_finite,
                "which JSON cannot store (it has no NaN nor infinity); store None, a Decimal or "
                "a string instead",
            )
        # JSON keeps a datetime's UTC offset, not its zone: a zoneinfo datetime would come back
        # in a fixed offset, and its arithmetic across a DST change would differ.
        if self._zoned:
            self._refuse(
                run_id,
                values,
                self._zoned,
                _is_zoned,
                "in a time zone JSON cannot keep (only a UTC offset in whole minutes): a resumed "
                "run would hold another value; store it in UTC (.astimezone(datetime.UTC)) and "
                "the zone's name in a field of its own",
            )
        # A value its field's type does not take (an int in a str field, from untyped input)
        # is written as it is, and then no resume nor replay could read it back.
        try:
            self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise RunEncodeError(
                run_id,
                f"run {run_id!r}: {self._cls.__qualname__} holds a value its field's type does "
                f"not take, which would not read back: {exc}",
            ) from exc
        return data

    def _refuse(  # one check's pieces, passed once
        self,
        run_id: str,
        values: Mapping[str, object],
        names: tuple[str, ...],
        found: Callable[[object], bool],
        why: str,
    ) -> None:
        """Raise `RunEncodeError` naming the first value `found` picks in the `names` fields."""
        for name in names:
            inside = _first(values.get(name), found)
            if inside is not None:
                raise RunEncodeError(
                    run_id,
                    f"run {run_id!r}: field {self._cls.__qualname__}.{name}{inside[0]} holds "
                    f"{inside[1]!r}, {why}",
                )

    def decode(self, data: bytes, base: C, run_id: str, *, refill: bool = False) -> C:
        """Return `base` carrying the fields stored in `data` (its shared fields kept).

        A mutable `base` is updated in place and returned; a frozen one is copied. With
        `refill`, a list, dict or set `base` holds is refilled with the stored one of its type
        in place of being replaced: a `child` context built around its parent's containers
        (`context=lambda p: Sub(log=p.log)`) goes on sharing them, as in the run.

        Raises:
            RunDecodeError: `data` is not a stored context of this class.

        """
        try:
            state = self._decoder.decode(data)
        except Exception as exc:
            raise RunDecodeError(
                run_id,
                f"run {run_id!r}: the stored context does not decode as "
                f"{self._cls.__qualname__}: {exc}",
            ) from exc
        target = base
        if self._frozen:
            target = object.__new__(type(base))
            for name, value in context_fields(base).items():
                object.__setattr__(target, name, value)
        setter: Callable[[object, str, object], None] = object.__setattr__
        held: Mapping[str, object] = context_fields(target) if refill else {}
        for name in self._stored:
            value = getattr(state, name)
            if value is msgspec.UNSET:
                self._absent(target, name, getattr(state, self._deleted), run_id)
            elif not (refill and _refilled(held.get(name), value)):
                setter(target, name, value)
        return target

    def _absent(self, target: object, name: str, deleted: list[str], run_id: str) -> None:
        """Delete `name` from `target` if the run had deleted it; else the row lacks it."""
        if name not in deleted:
            raise RunDecodeError(
                run_id,
                f"run {run_id!r}: the stored context does not decode as "
                f"{self._cls.__qualname__}: it has no field {name!r}",
            )
        if name in context_fields(target):
            object.__delattr__(target, name)


def _refilled(held: object, value: object) -> bool:
    """Refill the container `held` with `value`'s items if both are of one type; say if so."""
    if type(held) is not type(value):
        return False
    if isinstance(held, list):
        cast("list[object]", held)[:] = cast("list[object]", value)
    elif isinstance(held, dict | set):
        container = cast("dict[object, object] | set[object]", held)
        container.clear()
        container.update(cast("Any", value))  # Any: the same type as `held`
    else:
        return False
    return True


_CODECS: dict[type, ContextCodec[Any]] = {}


def codec_for(cls: type[C]) -> ContextCodec[C]:
    """Return the (cached) codec of a context class.

    Raises:
        CadenceDefinitionError: a stored field's type cannot round-trip (the field is named).

    """
    codec = _CODECS.get(cls)
    if codec is None:
        codec = ContextCodec(cls)
        _CODECS[cls] = codec
    return codec


def check_storable(cadence: Cadence[Any]) -> None:  # Any: any cadence
    """Refuse, before anything runs, a cadence or `child` context type that cannot be stored.

    A cadence that declares no context type (a child built by its step) is checked when it runs.
    """
    if cadence.context_type is not None:
        codec_for(cadence.context_type)
    for step in cadence.steps:
        if type(step) is Child:
            check_storable(step.cadence)
