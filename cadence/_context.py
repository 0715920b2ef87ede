"""Contexts: the dataclass a cadence runs over, its frozen variant, and shared atomic containers."""

from __future__ import annotations

import ast
import contextvars
import copy
import dataclasses
import difflib
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from types import UnionType
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Self,
    SupportsIndex,
    TypeAlias,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    overload,
)

from cadence._errors import CadenceDefinitionError

if TYPE_CHECKING:
    from _typeshed import (
        DataclassInstance,
        SupportsKeysAndGetItem,
        SupportsRichComparison,
        SupportsRichComparisonT,
    )

__all__ = ["AtomicDict", "AtomicList", "Context", "ImmutableContext", "Shared"]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

SCALARS: frozenset[type] = frozenset(
    {int, float, complex, bool, str, bytes, type(None), frozenset, range}
)


class _SharedMarker:
    """The metadata `Shared[T]` puts on a field's annotation."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "cadence.Shared"


SHARED_MARKER = _SharedMarker()

Shared: TypeAlias = Annotated[T, SHARED_MARKER]
"""Mark a context field as a shared resource: `client: Shared[httpx.AsyncClient]`.

A shared field holds a resource (an HTTP client, a DB session or pool, a lock, a logger): it is
never copied, merged or stored, and is the same object in every parallel branch and in every
run handed it (a fresh run from a template shares the template's object). For type checkers
the field's type is plain `T`.
"""


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


class AtomicWrites:
    """What one durable `sync` branch did to atomic containers, as `atomic_writes` notes it.

    Attributes:
        added: By container id, the container and what the branch appended to it (a list)
            or set in it (a dict, the last value per key): changes a resume can replay.
        other: Whether it changed one in any other way (`compute`, `pop`, `remove`, ...).

    """

    __slots__ = ("added", "other")

    def __init__(self) -> None:
        self.added: dict[int, tuple[object, list[Any] | dict[Any, Any]]] = {}  # Any: any items
        self.other = False

    def note(self, container: object, added: list[Any] | dict[Any, Any] | None = None) -> None:
        """Note a change of `container`: `added` items or keys, else a change of another kind."""
        if added is None:
            self.other = True
            return
        noted = self.added.get(id(container))
        if noted is None:
            self.added[id(container)] = (container, type(added)(added))
        elif isinstance(noted[1], list):
            noted[1].extend(added)
        else:
            noted[1].update(added)


atomic_writes: contextvars.ContextVar[AtomicWrites | None] = contextvars.ContextVar(
    "cadence_atomic_writes", default=None
)
"""Where changes of atomic containers are noted (a durable `sync` branch's own, else none).

A change made where it is not set (a plain run, or a thread a branch started itself: threads
do not inherit context variables) counts in the container's `untracked_changes` instead.
"""


class AtomicList(list[T]):
    """A thread-safe list, shared (not copied) between the parallel beats of one run.

    It is a real `list`, so it serialises as one. Mutations take a lock; a fresh run of a
    cadence gets its own copy of the template's list.

    Attributes:
        untracked_changes: How many changes were made where no durable `sync` branch noted
            them (see `atomic_writes`): a branch whose step saw it grow is not committed alone.

    """

    __slots__ = ("__weakref__", "_lock", "untracked_changes")  # a change pays no dict write

    def __init__(self, iterable: Iterable[T] = (), /) -> None:
        super().__init__(iterable)
        self._lock = threading.RLock()
        self.untracked_changes = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> AtomicList[T]:  # Any: copy's memo type
        if sharing.active:
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
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self, [item])
        else:
            self.untracked_changes += 1
        with self._lock:
            super().append(item)

    def extend(self, items: Iterable[T], /) -> None:
        """Extend with `items` atomically."""
        items = list(items)
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self, items)
        else:
            self.untracked_changes += 1
        with self._lock:
            super().extend(items)

    def insert(self, index: SupportsIndex, item: T, /) -> None:
        """Insert `item` before `index` atomically."""
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self)
        else:
            self.untracked_changes += 1
        with self._lock:
            super().insert(index, item)

    def pop(self, index: SupportsIndex = -1, /) -> T:
        """Remove and return the item at `index` atomically."""
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self)
        else:
            self.untracked_changes += 1
        with self._lock:
            return super().pop(index)

    def remove(self, item: T, /) -> None:
        """Remove the first occurrence of `item` atomically."""
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self)
        else:
            self.untracked_changes += 1
        with self._lock:
            super().remove(item)

    def clear(self) -> None:
        """Remove every item atomically."""
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self)
        else:
            self.untracked_changes += 1
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
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self)
        else:
            self.untracked_changes += 1
        with self._lock:
            # list.sort through the class: super().sort's overloads cannot take both key forms.
            list.sort(cast("list[Any]", self), key=key, reverse=reverse)  # pyright: ignore[reportUnknownMemberType]

    def __imul__(self, times: SupportsIndex, /) -> Self:
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self)
        else:
            self.untracked_changes += 1
        with self._lock:
            return super().__imul__(times)

    def reverse(self) -> None:
        """Reverse in place atomically."""
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self)
        else:
            self.untracked_changes += 1
        with self._lock:
            super().reverse()

    @overload
    def __setitem__(self, key: SupportsIndex, value: T, /) -> None: ...
    @overload
    def __setitem__(self, key: slice, value: Iterable[T], /) -> None: ...
    def __setitem__(
        self, key: SupportsIndex | slice, value: Any, /
    ) -> None:  # Any: overloads above
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self)
        else:
            self.untracked_changes += 1
        with self._lock:
            super().__setitem__(key, value)

    def __delitem__(self, key: SupportsIndex | slice, /) -> None:
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self)
        else:
            self.untracked_changes += 1
        with self._lock:
            super().__delitem__(key)

    def __iadd__(self, items: Iterable[T], /) -> Self:  # type: ignore[override,misc] # typeshed's list.__iadd__ returns Self too, but mypy sees list
        self.extend(items)
        return self


class AtomicDict(dict[K, V]):
    """A thread-safe dict, shared (not copied) between the parallel beats of one run.

    It is a real `dict`, so it serialises as one. Mutations take a lock; a fresh run of a
    cadence gets its own copy of the template's dict.

    Attributes:
        untracked_changes: How many changes were made where no durable `sync` branch noted
            them (see `atomic_writes`): a branch whose step saw it grow is not committed alone.

    """

    __slots__ = ("__weakref__", "_lock", "untracked_changes")  # a change pays no dict write

    def __init__(
        self, source: SupportsKeysAndGetItem[K, V] | Iterable[tuple[K, V]] = (), /, **kwargs: V
    ) -> None:
        super().__init__(source, **kwargs)
        self._lock = threading.RLock()
        self.untracked_changes = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> AtomicDict[K, V]:  # Any: copy's memo type
        if sharing.active:
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
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self, {key: value})
        else:
            self.untracked_changes += 1
        with self._lock:
            super().__setitem__(key, value)

    def __delitem__(self, key: K, /) -> None:
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self)
        else:
            self.untracked_changes += 1
        with self._lock:
            super().__delitem__(key)

    def setdefault(self, key: K, default: V, /) -> V:
        """Return the value at `key`, first setting it to `default` if missing, atomically."""
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self)
        else:
            self.untracked_changes += 1
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
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self)
        else:
            self.untracked_changes += 1
        with self._lock:
            return super().pop(key, *default)

    def popitem(self) -> tuple[K, V]:
        """Remove and return the last inserted item atomically."""
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self)
        else:
            self.untracked_changes += 1
        with self._lock:
            return super().popitem()

    def clear(self) -> None:
        """Remove every item atomically."""
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self)
        else:
            self.untracked_changes += 1
        with self._lock:
            super().clear()

    def update(
        self, other: SupportsKeysAndGetItem[K, V] | Iterable[tuple[K, V]] = (), /, **kwargs: V
    ) -> None:
        """Update from a mapping or pairs atomically."""
        items: dict[Any, V] = {}  # Any: K, or str for kwargs
        items.update(other, **kwargs)  # read once: `other` may be an iterator
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self, items)
        else:
            self.untracked_changes += 1
        with self._lock:
            super().update(items)

    def compute(self, key: K, update: Callable[[V | None], V]) -> V:
        """Set `key` to `update(current value or None)` atomically and return the new value."""
        if (writes := atomic_writes.get()) is not None:  # a durable sync branch's
            writes.note(self)
        else:
            self.untracked_changes += 1
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


sharing = _Sharing()


@dataclasses.dataclass(frozen=True, slots=True)
class ContextInfo:
    """What cadence needs to know of a context class, worked out once per class.

    Attributes:
        cls: The context class.
        fields: The dataclass field names, in declaration order.
        shared: The fields marked `Shared[...]`.

    """

    cls: type
    fields: tuple[str, ...]
    shared: frozenset[str]


_INFO: dict[type, ContextInfo] = {}


def context_info(cls: type) -> ContextInfo:
    """Return the (cached) `ContextInfo` of a dataclass context class."""
    info = _INFO.get(cls)
    if info is None:
        fields = dataclasses.fields(cast("type[DataclassInstance]", cls))
        shared = frozenset(f.name for f in fields if _is_shared(f.type, cls))
        info = ContextInfo(cls, tuple(f.name for f in fields), shared)
        _INFO[cls] = info
    return info


def alias_context_info(cls: type, info: ContextInfo) -> None:
    """Make `context_info(cls)` answer `info` (a branch view's class is its context's)."""
    _INFO[cls] = info


def shared_fields(cls: type) -> frozenset[str]:
    """Return the names of the fields of context class `cls` marked `Shared[...]`."""
    return context_info(cls).shared


def _is_shared(annotation: object, cls: type) -> bool:
    """Return whether a field annotation (an object or, postponed, a string) is `Shared[...]`."""
    if isinstance(annotation, str):
        text = annotation
        try:
            module = sys.modules.get(cls.__module__)
            namespace = dict(vars(module)) if module is not None else {}
            namespace.update(vars(cls))
            annotation = eval(text, namespace)  # noqa: S307 # an annotation, as typing.get_type_hints evaluates it
        except Exception:  # noqa: BLE001 # a name known only to type checkers: read the text
            return _names_shared(text)
    origin = get_origin(annotation)
    if origin is Annotated:
        return any(meta is SHARED_MARKER for meta in get_args(annotation)[1:])
    if origin is Union or origin is UnionType:  # `Shared[Client] | None`: one resource or none
        return any(_is_shared(arg, cls) for arg in get_args(annotation))
    return False


def _names_shared(annotation: str) -> bool:
    """Return whether annotation text reads `Shared[...]` (or `cadence.Shared[...]`).

    Or a union holding one (`Shared[Client] | None`).
    """
    try:
        node = ast.parse(annotation, mode="eval").body
    except SyntaxError:
        return False
    return _reads_shared(node)


def _reads_shared(node: ast.expr) -> bool:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _reads_shared(node.left) or _reads_shared(node.right)
    if not isinstance(node, ast.Subscript):
        return False
    target = node.value
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
    return name == "Shared"


def context_fields(context: object) -> Mapping[str, object]:
    """Return the current field values of `context` (its `__dict__`, or its dataclass fields).

    A parallel branch's view holds only what its beat touched; it reads the rest in first.
    """
    materialize = getattr(type(context), "_cadence_materialize", None)
    if materialize is not None:
        return cast("Mapping[str, object]", materialize(context))
    state: dict[str, object] | None = getattr(context, "__dict__", None)
    if state is not None:
        return state
    fields = dataclasses.fields(cast("DataclassInstance", context))  # checked by Cadence
    return {f.name: getattr(context, f.name) for f in fields if hasattr(context, f.name)}


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
