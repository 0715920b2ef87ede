"""Contexts: the dataclass a cadence runs over, its frozen variant, and shared atomic containers."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Self, SupportsIndex, TypeVar, cast, overload

from cadence._errors import CadenceDefinitionError

if TYPE_CHECKING:
    from _typeshed import (
        DataclassInstance,
        SupportsKeysAndGetItem,
        SupportsRichComparison,
        SupportsRichComparisonT,
    )

__all__ = ["AtomicDict", "AtomicList", "Context", "ImmutableContext"]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

_SCALARS: frozenset[type] = frozenset(
    {int, float, complex, bool, str, bytes, type(None), frozenset, range}
)


class Context:
    """Base of every cadence context; subclass it and decorate the subclass with `@dataclass`.

    `Context` declares no fields, so subclasses may declare fields without defaults. A subclass
    that defines `__post_init__` should call `super().__post_init__()`.
    """

    __slots__ = ()

    def __post_init__(self) -> None:
        """Finish construction; a hook for subclasses (it does nothing here)."""


class ImmutableContext(Context):
    """Base of frozen contexts: decorate subclasses with `@dataclass(frozen=True)`.

    A beat over an immutable context returns the changed context instead of mutating it.
    """

    __slots__ = ()

    def with_field(self, name: str, value: object) -> Self:
        """Return a copy with field `name` set to `value`; this object is left unchanged.

        Raises:
            AttributeError: `name` is not an init field of this context.

        """
        return self.with_fields(**{name: value})

    def with_fields(self, **changes: object) -> Self:
        """Return a copy with several fields changed; this object is left unchanged.

        Raises:
            AttributeError: a name is not an init field of this context.

        """
        cls = type(self)
        by_name = {f.name: f for f in dataclasses.fields(cast("DataclassInstance", self))}
        for name in changes:
            field = by_name.get(name)
            if field is None:
                hint = difflib.get_close_matches(name, by_name, n=1)
                did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
                known = ", ".join(sorted(by_name)) or "none"
                raise AttributeError(
                    f"{cls.__qualname__} has no field {name!r}{did_you_mean} (fields: {known})"
                )
            if not field.init:
                raise AttributeError(
                    f"{cls.__qualname__}.{name} is declared with init=False and cannot be "
                    "replaced with with_field"
                )
        new = copy.copy(self)
        for name, value in changes.items():
            object.__setattr__(new, name, value)
        return new


class AtomicList(list[T]):
    """A thread-safe list, shared (not copied) between the parallel beats of one run.

    It is a real `list`, so it serialises as one. Mutations take a lock; a fresh run of a
    cadence gets its own copy of the template's list.
    """

    def __init__(self, iterable: Iterable[T] = (), /) -> None:
        super().__init__(iterable)
        self._lock = threading.RLock()

    def __deepcopy__(self, memo: dict[int, Any]) -> AtomicList[T]:  # Any: copy's memo type
        if _sharing.active:
            return self
        with self._lock:
            return AtomicList(copy.deepcopy(list(self), memo))

    def __reduce__(self) -> tuple[type[AtomicList[T]], tuple[list[T]]]:
        return type(self), (self.snapshot(),)

    def snapshot(self) -> list[T]:
        """Return a plain list copy taken under the lock."""
        with self._lock:
            return list(self)

    def append(self, item: T, /) -> None:
        """Append `item` atomically."""
        with self._lock:
            super().append(item)

    def extend(self, items: Iterable[T], /) -> None:
        """Extend with `items` atomically."""
        items = list(items)
        with self._lock:
            super().extend(items)

    def insert(self, index: SupportsIndex, item: T, /) -> None:
        """Insert `item` before `index` atomically."""
        with self._lock:
            super().insert(index, item)

    def pop(self, index: SupportsIndex = -1, /) -> T:
        """Remove and return the item at `index` atomically."""
        with self._lock:
            return super().pop(index)

    def remove(self, item: T, /) -> None:
        """Remove the first occurrence of `item` atomically."""
        with self._lock:
            super().remove(item)

    def clear(self) -> None:
        """Remove every item atomically."""
        with self._lock:
            super().clear()

    @overload
    def sort(
        self: AtomicList[SupportsRichComparisonT], *, key: None = None, reverse: bool = False
    ) -> None: ...
    @overload
    def sort(
        self, *, key: Callable[[T], SupportsRichComparison], reverse: bool = False
    ) -> None: ...
    def sort(
        self, *, key: Callable[[T], Any] | None = None, reverse: bool = False
    ) -> None:  # Any: the overloads above
        """Sort in place atomically."""
        with self._lock:
            # list.sort through the class: super().sort's overloads cannot take both key forms.
            list.sort(cast("list[Any]", self), key=key, reverse=reverse)  # pyright: ignore[reportUnknownMemberType]

    def __imul__(self, times: SupportsIndex, /) -> Self:
        with self._lock:
            return super().__imul__(times)

    def reverse(self) -> None:
        """Reverse in place atomically."""
        with self._lock:
            super().reverse()

    @overload
    def __setitem__(self, key: SupportsIndex, value: T, /) -> None: ...
    @overload
    def __setitem__(self, key: slice, value: Iterable[T], /) -> None: ...
    def __setitem__(
        self, key: SupportsIndex | slice, value: Any, /
    ) -> None:  # Any: overloads above
        with self._lock:
            super().__setitem__(key, value)

    def __delitem__(self, key: SupportsIndex | slice, /) -> None:
        with self._lock:
            super().__delitem__(key)

    def __iadd__(self, items: Iterable[T], /) -> Self:  # type: ignore[override,misc] # typeshed's list.__iadd__ returns Self too, but mypy sees list
        self.extend(items)
        return self


class AtomicDict(dict[K, V]):
    """A thread-safe dict, shared (not copied) between the parallel beats of one run.

    It is a real `dict`, so it serialises as one. Mutations take a lock; a fresh run of a
    cadence gets its own copy of the template's dict.
    """

    def __init__(
        self, source: SupportsKeysAndGetItem[K, V] | Iterable[tuple[K, V]] = (), /, **kwargs: V
    ) -> None:
        super().__init__(source, **kwargs)
        self._lock = threading.RLock()

    def __deepcopy__(self, memo: dict[int, Any]) -> AtomicDict[K, V]:  # Any: copy's memo type
        if _sharing.active:
            return self
        with self._lock:
            return AtomicDict(copy.deepcopy(dict(self), memo))

    def __reduce__(self) -> tuple[type[AtomicDict[K, V]], tuple[dict[K, V]]]:
        return type(self), (self.snapshot(),)

    def snapshot(self) -> dict[K, V]:
        """Return a plain dict copy taken under the lock."""
        with self._lock:
            return dict(self)

    def __setitem__(self, key: K, value: V, /) -> None:
        with self._lock:
            super().__setitem__(key, value)

    def __delitem__(self, key: K, /) -> None:
        with self._lock:
            super().__delitem__(key)

    def setdefault(self, key: K, default: V, /) -> V:
        """Return the value at `key`, first setting it to `default` if missing, atomically."""
        with self._lock:
            return super().setdefault(key, default)

    @overload
    def pop(self, key: K, /) -> V: ...
    @overload
    def pop(self, key: K, default: V, /) -> V: ...
    @overload
    def pop(self, key: K, default: T, /) -> V | T: ...
    def pop(self, key: K, /, *default: Any) -> Any:  # Any: the overloads above type it
        """Remove `key` and return its value (or `default`) atomically."""
        with self._lock:
            return super().pop(key, *default)

    def popitem(self) -> tuple[K, V]:
        """Remove and return the last inserted item atomically."""
        with self._lock:
            return super().popitem()

    def clear(self) -> None:
        """Remove every item atomically."""
        with self._lock:
            super().clear()

    def update(
        self, other: SupportsKeysAndGetItem[K, V] | Iterable[tuple[K, V]] = (), /, **kwargs: V
    ) -> None:
        """Update from a mapping or pairs atomically."""
        with self._lock:
            super().update(other, **kwargs)

    def compute(self, key: K, update: Callable[[V | None], V]) -> V:
        """Set `key` to `update(current value or None)` atomically and return the new value."""
        with self._lock:
            value = update(super().get(key))
            super().__setitem__(key, value)
            return value

    def __ior__(self, other: Mapping[K, V], /) -> Self:  # type: ignore[override,misc]  # pyright: ignore[reportIncompatibleMethodOverride] # dict's __ior__ also takes pairs
        self.update(other)
        return self


class _Sharing(threading.local):
    """While `active`, atomic containers deep-copy to themselves (parallel branch isolation)."""

    active = False


_sharing = _Sharing()


def copy_context(context: T, *, share_atomics: bool) -> T:
    """Return a deep copy of `context` without calling its `__init__` or `__post_init__`.

    Scalars are kept, everything else is deep-copied with one memo (so aliasing between fields
    survives). With `share_atomics`, `AtomicList`/`AtomicDict` values (at any depth) are shared.
    """
    state = getattr(context, "__dict__", None)
    if state is None:  # slotted dataclass: fall back to the general protocol
        return _deepcopy(context, share_atomics=share_atomics)
    new = object.__new__(type(context))
    if all(type(value) in _SCALARS for value in state.values()):
        new.__dict__.update(state)  # nothing to deep-copy: the common case of a flat context
        return new
    memo: dict[int, Any] = {}  # Any: copy's memo type
    if share_atomics:
        _sharing.active = True
    try:
        new.__dict__.update(
            {
                key: value if type(value) in _SCALARS else copy.deepcopy(value, memo)
                for key, value in state.items()
            }
        )
    finally:
        _sharing.active = False
    return new


def _deepcopy(value: T, *, share_atomics: bool) -> T:
    _sharing.active = share_atomics
    try:
        return copy.deepcopy(value)
    finally:
        _sharing.active = False


def context_fields(context: object) -> Mapping[str, object]:
    """Return the current field values of `context` (its `__dict__`, or its dataclass fields)."""
    state: dict[str, object] | None = getattr(context, "__dict__", None)
    if state is not None:
        return state
    fields = dataclasses.fields(cast("DataclassInstance", context))  # checked by Cadence
    return {f.name: getattr(context, f.name) for f in fields}


def is_frozen(cls: type) -> bool:
    """Return whether `cls` is a frozen dataclass."""
    params = getattr(cls, "__dataclass_params__", None)
    return bool(params is not None and params.frozen)


def check_context_class(cls: type, where: str) -> None:
    """Raise `CadenceDefinitionError` unless `cls` is a usable context class."""
    if not issubclass(cls, Context):
        raise CadenceDefinitionError(
            f"{where}: the context must be an instance of a Context subclass, "
            f"got {cls.__qualname__}"
        )
    if not dataclasses.is_dataclass(cast("object", cls)):
        raise CadenceDefinitionError(
            f"{where}: {cls.__qualname__} is a Context but not a dataclass; "
            "decorate it with @dataclass"
        )
    if issubclass(cls, ImmutableContext) and not is_frozen(cls):
        raise CadenceDefinitionError(
            f"{where}: {cls.__qualname__} is an ImmutableContext but not frozen; "
            "decorate it with @dataclass(frozen=True)"
        )
