"""Isolation: the copies a run works on, and how cadence tells what changed in them.

Two kinds of copy:

- **The template copy.** `run()` without a context runs on a deep copy of the template, made
  field by field so that a field that cannot be copied is named in the error. Shared fields
  (`Shared[T]`) are handed over as they are.
- **The branch view.** Each beat of a `sync` step works on a view of the context: an instance
  of a subclass of the context class whose fields copy themselves from the original on first
  read (copy on first access). Writes and deletes land in the view. A field no beat touches
  is never copied, never compared and never a conflict, whatever it holds.

A touched field has changed when its value holds other state than it did when it was copied.
State is compared by fingerprint, the value's pickle: it sees an in-place change whatever the
value's `__eq__` says (a model compared by key, a NaN, an array, a DataFrame, a cycle).
Values that cannot be pickled are compared by structure against a second, pristine copy.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from cadence._context import (
    SCALARS,
    ContextInfo,
    alias_context_info,
    context_fields,
    context_info,
    sharing,
)
from cadence._errors import ContextCopyError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DELETED",
    "BranchState",
    "copy_template",
    "fingerprint_key",
    "open_branches",
    "same_state",
    "same_value",
]

T = TypeVar("T")

_ABSENT: Any = object()  # Any: a sentinel compared by identity against field values


class _Deleted:
    """Marks a field a branch deleted (in the view, and in a branch's changes)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<deleted>"


DELETED: Any = _Deleted()  # Any: stands in for a field value of any type
"""A branch deleted the field: merged like a write, applied as `delattr`."""


# ------------------------------------------------------------------------- template copies


def copy_template(context: T, cadence_name: str) -> T:
    """Return a deep copy of `context` for a fresh run, without calling `__init__`.

    Scalars and shared fields are kept, everything else is deep-copied with one memo (so
    aliasing between fields survives).

    Raises:
        ContextCopyError: a field that is not marked shared cannot be copied.

    """
    info = context_info(type(context))
    state = context_fields(context)
    new = object.__new__(type(context))
    target: dict[str, object] | None = getattr(new, "__dict__", None)
    memo: dict[int, Any] = {}  # Any: copy's memo type
    copied: dict[str, object] = {}
    for name, value in state.items():
        if type(value) in SCALARS or name in info.shared:
            copied[name] = value
            continue
        try:
            copied[name] = copy.deepcopy(value, memo)
        except Exception as exc:
            raise ContextCopyError(cadence_name, "template", name, value, info.cls) from exc
    if target is not None:
        target.update(copied)
    else:
        for name, value in copied.items():
            object.__setattr__(new, name, value)
    return new


# ------------------------------------------------------------------------- branch views


_NO_COPIES: dict[str, object] = {}  # shared and never written: a branch's copies before the first


class BranchState:
    """The private state of one branch view: where it copies from and what it copied."""

    __slots__ = ("baselines", "cadence_name", "copies", "info", "memo", "origin", "path")

    def __init__(
        self, origin: Mapping[str, object], info: ContextInfo, cadence_name: str, path: str
    ) -> None:
        self.origin = origin
        self.info = info
        self.cadence_name = cadence_name
        self.path = path
        # Made on the first copy: a branch that touches only scalars never needs them.
        self.memo: dict[int, Any] | None = None  # Any: copy's memo type
        self.copies: dict[str, object] = _NO_COPIES
        self.baselines: dict[str, bytes | _Pristine] = {}

    def read(self, view: object, name: str) -> object:
        """Return field `name` for `view`, copying it from the original on this first read."""
        value = self.origin.get(name, _ABSENT)
        if value is _ABSENT:
            raise AttributeError(f"{self.info.cls.__qualname__!r} object has no attribute {name!r}")
        if type(value) not in SCALARS and name not in self.info.shared:
            value = self._copy(name, value)
        view.__dict__[name] = value
        return value

    def _copy(self, name: str, value: object) -> object:
        if self.memo is None:
            self.memo, self.copies = {}, {}
        sharing.active = True  # atomic containers deep-copy to themselves
        try:
            copied = copy.deepcopy(value, self.memo)
        except Exception as exc:
            raise ContextCopyError(
                self.cadence_name, self.path, name, value, self.info.cls
            ) from exc
        finally:
            sharing.active = False
        if copied is not value:
            self.copies[name] = copied
            fingerprint = _fingerprint(copied)
            self.baselines[name] = _Pristine(value) if fingerprint is None else fingerprint
        return copied

    def changes(self, result: object, cache: FingerprintCache) -> dict[str, object]:
        """Return the fields the branch changed (`DELETED` for deletes), given its final context.

        `result` is the view itself, a copy of it (an immutable context's `with_field`), or a
        context object the beat built; the comparison is against the original's values.
        """
        if _state_of(result) is None:  # a context the beat built anew: compare every field
            fields = context_fields(result)
            changed: dict[str, object] = {
                name: value
                for name, value in fields.items()
                if not same_state(self.origin.get(name, _ABSENT), value, cache)
            }
            changed.update(dict.fromkeys((n for n in self.origin if n not in fields), DELETED))
            return changed
        changed = {}
        for name, value in cast("dict[str, object]", result.__dict__).items():
            before = self.origin.get(name, _ABSENT)
            if value is before:
                continue
            if value is DELETED:
                if before is not _ABSENT:
                    changed[name] = DELETED
                continue
            if value is self.copies.get(name, _ABSENT):
                baseline = self.baselines[name]
                if isinstance(baseline, _Pristine):
                    if _same_structure(baseline.value, value, set(), 0):
                        continue
                elif _fingerprint(value) == baseline or _same_set(self.origin[name], value):
                    continue
            elif name in self.info.shared:
                pass  # a shared field reassigned: only identity counts, and it differs
            elif same_state(before, value, cache):
                continue
            changed[name] = value
        return changed


class _Pristine:
    """A second deep copy kept as the baseline of a value that cannot be pickled."""

    __slots__ = ("value",)

    def __init__(self, original: object) -> None:
        sharing.active = True
        try:
            self.value = copy.deepcopy(original)
        finally:
            sharing.active = False


class _LazyField:
    """A view's field: copied from the original on first read, then read from the view."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, view: object, owner: type | None = None) -> object:
        if view is None:
            return getattr(cast("type", owner).__mro__[1], self.name)
        value = view.__dict__.get(self.name, _ABSENT)
        if value is _ABSENT:
            state = _state_of(view)
            if state is None:
                raise AttributeError(
                    f"{type(view).__qualname__!r} object has no attribute {self.name!r}"
                )
            return state.read(view, self.name)
        if value is DELETED:
            raise AttributeError(self.name)
        return value

    def __set__(self, view: object, value: object) -> None:
        view.__dict__[self.name] = value

    def __delete__(self, view: object) -> None:
        value = view.__dict__.get(self.name, _ABSENT)
        state = _state_of(view)
        missing = value is DELETED or (
            value is _ABSENT and (state is None or self.name not in state.origin)
        )
        if missing:
            raise AttributeError(self.name)
        view.__dict__[self.name] = DELETED


def _view_getattr(view: object, name: str) -> object:
    """Find an attribute that is not a field (set on the original outside `__init__`)."""
    state = _state_of(view)
    deleted = view.__dict__.get(name, _ABSENT) is DELETED  # a field's __get__ sent us here
    if deleted or state is None or name.startswith("__") or name not in state.origin:
        raise AttributeError(f"{type(view).__qualname__!r} object has no attribute {name!r}")
    return state.read(view, name)


def _materialize(view: object) -> dict[str, object]:
    """Return every field of `view`, reading in (copying) those its beat has not touched."""
    state = _state_of(view)
    fields: dict[str, object] = view.__dict__
    if state is not None:
        for name in state.origin:
            if name not in fields:
                state.read(view, name)
    return {name: value for name, value in fields.items() if value is not DELETED}


def _state_of(view: object) -> BranchState | None:
    try:
        return cast("BranchState", object.__getattribute__(view, "_cadence_branch"))
    except AttributeError:
        return None


_VIEWS: dict[type, type] = {}


def _view_class(cls: type) -> type:
    """Return the (cached) branch-view subclass of context class `cls`."""
    view = _VIEWS.get(cls)
    if view is None:
        info = context_info(cls)
        namespace: dict[str, object] = {name: _LazyField(name) for name in info.fields}
        has_dict = any("__dict__" in vars(k) for k in cls.__mro__ if k is not object)
        namespace["__slots__"] = (
            ("_cadence_branch",) if has_dict else ("_cadence_branch", "__dict__")
        )
        namespace["__getattr__"] = _view_getattr
        namespace["_cadence_materialize"] = staticmethod(_materialize)
        namespace["__module__"] = cls.__module__
        namespace["__qualname__"] = cls.__qualname__
        namespace["__doc__"] = cls.__doc__
        view = type(cls.__name__, (cls,), namespace)
        _VIEWS[cls] = view
        alias_context_info(view, info)
    return view


def open_branches(
    context: T, cadence_name: str, paths: Sequence[str]
) -> list[tuple[T, BranchState]]:
    """Return a copy-on-first-access view of `context` and its state for each beat path."""
    info = context_info(type(context))
    origin = context_fields(context)
    view_class = _view_class(info.cls)
    branches: list[tuple[T, BranchState]] = []
    for path in paths:
        state = BranchState(origin, info, cadence_name, path)
        view = cast("object", object.__new__(view_class))
        object.__setattr__(view, "_cadence_branch", state)
        branches.append((cast("T", view), state))
    return branches


# ------------------------------------------------------------------------- comparing state


class FingerprintCache:
    """Fingerprints of the original values of one step, shared by its branches."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[int, tuple[object, bytes | None]] = {}

    def get(self, value: object) -> bytes | None:
        """Return the fingerprint of `value` (computed once per object)."""
        entry = self._entries.get(id(value))
        if entry is None or entry[0] is not value:
            entry = (value, _fingerprint(value))
            self._entries[id(value)] = entry
        return entry[1]


def _fingerprint(value: object) -> bytes | None:
    """Return the pickle of `value` as a fingerprint of its state, or `None` if it has none."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 # any failure means: compare by structure instead
        return None


def fingerprint_key(value: object) -> object:
    """Return a hashable key that is equal for values of equal state (set members, say)."""
    if type(value) in SCALARS:
        return value
    fingerprint = _fingerprint(value)
    return value if fingerprint is None else (type(value), fingerprint)


def _same_scalar(a: object, b: object) -> bool:
    """Compare two scalars of one type; NaN equals NaN."""
    return bool(a == b) or (a != a and b != b)  # noqa: PLR0124 # NaN is the only value unequal to itself


def same_state(a: object, b: object, cache: FingerprintCache) -> bool:
    """Return whether `b` holds the same state as `a` (the original value of a field)."""
    if a is b:
        return True
    if a is _ABSENT or type(a) is not type(b):
        return False
    if type(a) in SCALARS:
        return _same_scalar(a, b)
    before, after = cache.get(a), _fingerprint(b)
    if before is not None and after is not None:
        return before == after or _same_set(a, b)
    return _same_structure(a, b, set(), 0)


def _same_set(a: object, b: object) -> bool:
    """Compare two sets by their members' state (a set's pickle follows its hash-table order)."""
    kind = type(a)
    if not issubclass(kind, set | frozenset) or kind is not type(b):
        return False
    left, right = cast("set[object]", a), cast("set[object]", b)
    return len(left) == len(right) and {fingerprint_key(m) for m in left} == {
        fingerprint_key(m) for m in right
    }


def same_value(a: object, b: object) -> bool:
    """Return whether two written values hold the same state (the merge's agreement test)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if type(a) in SCALARS:
        return _same_scalar(a, b)
    left, right = _fingerprint(a), _fingerprint(b)
    if left is not None and left == right:
        return True
    return _same_set(a, b) or _same_structure(a, b, set(), 0)


_MAX_DEPTH = 200


def _same_structure(  # noqa: PLR0911 # one return per kind
    a: object, b: object, seen: set[tuple[int, int]], depth: int
) -> bool:
    """Compare two values by structure, ignoring `__eq__` methods; cycles are followed once."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if type(a) in SCALARS:
        return _same_scalar(a, b)
    pair = (id(a), id(b))
    if pair in seen:
        return True
    if depth > _MAX_DEPTH:
        return False  # too deep to tell: counted as a change, never as a lost write
    seen.add(pair)
    depth += 1
    if isinstance(a, list | tuple):
        left, right = cast("list[object]", a), cast("list[object]", b)
        return len(left) == len(right) and all(
            _same_structure(x, y, seen, depth) for x, y in zip(left, right, strict=True)
        )
    if isinstance(a, dict):
        one, two = cast("dict[object, object]", a), cast("dict[object, object]", b)
        return one.keys() == two.keys() and all(
            _same_structure(one[k], two[k], seen, depth) for k in one
        )
    if isinstance(a, set | frozenset):
        return _plain_equal(cast("object", a), b)
    compared = False
    state_a: object = getattr(a, "__dict__", None)
    state_b: object = getattr(b, "__dict__", None)
    if isinstance(state_a, dict):
        if not _same_structure(cast("object", state_a), state_b, seen, depth):
            return False
        compared = True
    for name in _slot_names(type(a)):
        compared = True
        if not _same_structure(getattr(a, name, _ABSENT), getattr(b, name, _ABSENT), seen, depth):
            return False
    return compared or _plain_equal(a, b)


def _slot_names(cls: type) -> list[str]:
    return [
        name
        for klass in cls.__mro__
        for name in cast("tuple[str, ...]", getattr(klass, "__slots__", ()))
        if name not in {"__dict__", "__weakref__"}
    ]


def _plain_equal(a: object, b: object) -> bool:
    """Compare with `==`; an array-like result counts as equal when all its items are."""
    try:
        result = cast("object", a == b)  # numpy and friends return arrays
        if isinstance(result, bool):
            return result
        every: Callable[[], object] | None = getattr(result, "all", None)
        return bool(every() if callable(every) else result)
    except Exception:  # noqa: BLE001 # an uncomparable pair counts as different
        return False
