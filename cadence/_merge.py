"""Merging the isolated copies of parallel beats back into one context.

Each parallel beat runs on its own deep copy. Afterwards every field is compared with the
context as it was before the step (a three-way merge, like git's): a field a beat left equal to
the original is no write. One write is taken as is; equal writes agree; different writes go to
the step's merge strategy, which returns the merged value or raises `MergeConflictError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Any, TypeAlias, cast

from cadence._errors import MergeConflictError

__all__ = [
    "FieldConflict",
    "MergeStrategy",
    "fail_on_conflict",
    "last_write_wins",
    "smart_merge",
]


@dataclass(frozen=True, slots=True)
class FieldConflict:
    """Parallel beats that changed one field to different values; a merge strategy resolves it.

    Attributes:
        cadence_name: The cadence of the parallel step.
        step_name: The parallel step.
        field: The field in question.
        original: The field's value before the step.
        writes: Each writing beat's value, by beat name, in declaration order.

    """

    cadence_name: str
    step_name: str
    field: str
    original: object
    writes: Mapping[str, object]

    def error(self, detail: str = "") -> MergeConflictError:
        """Return the `MergeConflictError` that names this field and its writers."""
        return MergeConflictError(
            self.cadence_name, self.step_name, self.field, list(self.writes), detail
        )


MergeStrategy: TypeAlias = Callable[[FieldConflict], object]
"""Resolve one conflicting field: return the merged value or raise `MergeConflictError`."""


def fail_on_conflict(conflict: FieldConflict) -> object:
    """Refuse every conflict (the default): raise `MergeConflictError` naming field and beats."""
    raise conflict.error()


def last_write_wins(conflict: FieldConflict) -> object:
    """Take the value of the writing beat declared last in the step."""
    return list(conflict.writes.values())[-1]


def smart_merge(conflict: FieldConflict) -> object:
    """Combine collection writes; refuse anything else.

    Lists: the items each beat appended, in declaration order, after the original items.
    Dicts: the union of the keys each beat added, changed or removed (one key changed two
    ways is a conflict). Sets: the original plus every addition, minus every removal.
    A field that was `None` counts as an empty collection of the kind the beats wrote. Other
    values agree only when every beat wrote the same one.

    Raises:
        MergeConflictError: the values are not all lists, dicts or sets of one kind, or the
            beats disagree inside them.

    """
    values: list[Any] = list(conflict.writes.values())  # Any: field values of any type
    original: Any = conflict.original  # Any: likewise
    if all(isinstance(v, list) for v in values):
        return _merge_lists(conflict, _as(list, [], original, conflict), values)
    if all(isinstance(v, dict) for v in values):
        return _merge_dicts(conflict, _as(dict, {}, original, conflict), values)
    if all(isinstance(v, set | frozenset) for v in values):
        return _merge_sets(_as(set | frozenset, set(), original, conflict), values)
    if all(_equal(values[0], v) for v in values[1:]):
        return values[0]
    kinds = ", ".join(sorted({type(v).__name__ for v in values}))
    raise conflict.error(f"smart_merge combines lists, dicts and sets, not {kinds}")


def _as(
    kind: type | UnionType, empty: Any, original: Any, conflict: FieldConflict
) -> Any:  # Any: a collection of unknown items
    """Return `original` if it is of `kind` (`None` counts as `empty`), else raise the conflict."""
    if original is None:
        return empty
    if not isinstance(original, kind):
        raise conflict.error(
            f"the beats wrote {getattr(kind, '__name__', 'set')}s over a {type(original).__name__}"
        )
    return original


def _merge_lists(
    conflict: FieldConflict, original: list[Any], values: Sequence[list[Any]]
) -> list[Any]:
    base = len(original)
    merged = list(original)
    for beat, value in zip(conflict.writes, values, strict=True):
        if value[:base] != original:
            raise conflict.error(f"{beat!r} changed existing items; smart_merge only appends")
        merged.extend(value[base:])
    return merged


def _merge_dicts(
    conflict: FieldConflict, original: dict[Any, Any], values: Sequence[dict[Any, Any]]
) -> dict[Any, Any]:
    missing = object()
    changes: dict[Any, tuple[str, object]] = {}
    for beat, value in zip(conflict.writes, values, strict=True):
        for key in original.keys() | value.keys():
            new = value.get(key, missing)
            if new is missing or new != original.get(key, missing):
                earlier = changes.get(key)
                if earlier is not None and not _equal(earlier[1], new):
                    raise conflict.error(f"{earlier[0]!r} and {beat!r} disagree on key {key!r}")
                changes[key] = (beat, new)
    merged = dict(original)
    for key, (_, new) in changes.items():
        if new is missing:
            merged.pop(key, None)
        else:
            merged[key] = new
    return merged


def _merge_sets(
    original: set[Any] | frozenset[Any], values: Sequence[set[Any]]
) -> set[Any] | frozenset[Any]:
    added: set[Any] = set()
    removed: set[Any] = set()
    for value in values:
        added |= value - original
        removed |= original - value
    merged = (set(original) | added) - removed
    return frozenset(merged) if isinstance(original, frozenset) else merged


def _equal(a: object, b: object, depth: int = 0) -> bool:  # noqa: PLR0911 # one return per kind
    """Return whether two values hold the same state, never failing.

    Like `==`, but objects that compare by identity (no `__eq__` of their own) are compared by
    their attributes, so an in-place change to a deep copy of one is seen; containers are
    compared item by item when `==` says they differ, for the same reason.
    """
    if a is b:
        return True
    if type(a) is not type(b):
        return _plain_equal(a, b)
    if type(a).__eq__ is object.__eq__:
        return depth < _MAX_DEPTH and _same_attributes(a, b, depth + 1)
    if _plain_equal(a, b):
        return True
    if depth >= _MAX_DEPTH:
        return False
    if isinstance(a, list | tuple):
        items = cast("Sequence[object]", b)
        return len(cast("Sequence[object]", a)) == len(items) and all(
            _equal(x, y, depth + 1) for x, y in zip(cast("Sequence[object]", a), items, strict=True)
        )
    if isinstance(a, dict):
        left, right = cast("Mapping[object, object]", a), cast("Mapping[object, object]", b)
        return left.keys() == right.keys() and all(
            _equal(left[k], right[k], depth + 1) for k in left
        )
    return False


_MAX_DEPTH = 32


def _plain_equal(a: object, b: object) -> bool:
    """Compare with `==`; an array-like result counts as equal when all its items are."""
    try:
        result = cast("object", a == b)  # numpy and friends return arrays
        if isinstance(result, bool):
            return result
        every = getattr(result, "all", None)
        return bool(every() if callable(every) else result)
    except Exception:  # noqa: BLE001 # an uncomparable pair counts as different
        return False


def _same_attributes(a: object, b: object, depth: int) -> bool:
    """Compare two objects of one class by their `__dict__` and `__slots__` values."""
    state_a, state_b = getattr(a, "__dict__", None), getattr(b, "__dict__", None)
    slots = [
        name
        for cls in type(a).__mro__
        for name in cast("tuple[str, ...]", getattr(cls, "__slots__", ()))
        if name not in {"__dict__", "__weakref__"}
    ]
    if state_a is None and not slots:
        return False  # nothing to look at: the caller falls back to reassignment
    if state_a is not None and not _equal(state_a, state_b, depth):
        return False
    missing = object()
    return all(
        _equal(getattr(a, name, missing), getattr(b, name, missing), depth) for name in slots
    )


def _opaque(value: object) -> bool:
    """Return whether `value` compares by identity and has no attributes to compare."""
    return (
        type(value).__eq__ is object.__eq__
        and getattr(value, "__dict__", None) is None
        and not any(getattr(cls, "__slots__", ()) for cls in type(value).__mro__)
    )


_MISSING = object()

# The built-in strategies that treat equal writes as one write; other strategies see them all.
_EQUAL_WRITES_AGREE: tuple[MergeStrategy, ...] = (fail_on_conflict, last_write_wins)


def merge_branches(
    original: Mapping[str, object],
    branches: Sequence[tuple[str, Mapping[str, object], Mapping[str, object]]],
    strategy: MergeStrategy,
    cadence_name: str,
    step_name: str,
) -> dict[str, object]:
    """Return the fields to set on the context after a parallel step.

    A beat wrote a field when its final value holds other state than the original. One write
    is taken; writes by several beats go to `strategy`, except that `fail_on_conflict` and
    `last_write_wins` take equal writes as one.

    Args:
        original: The field values before the step.
        branches: For each beat in declaration order, its name, its copy's field values at the
            start (to tell reassignment of opaque objects) and at the end.
        strategy: Resolves fields that several beats wrote.
        cadence_name: For error messages.
        step_name: For error messages.

    Raises:
        MergeConflictError: the strategy refused a conflict.

    """
    changes: dict[str, object] = {}
    # Only fields some copy holds another object in can have been written (scalars are never
    # copied, so an untouched one is the very same object); keep the fields' declared order.
    touched = {
        key
        for _, _, final in branches
        for key, value in final.items()
        if value is not original.get(key, _MISSING)
    }
    if not touched:
        return changes
    keys: dict[str, None] = dict.fromkeys(k for k in original if k in touched)
    keys.update(dict.fromkeys(sorted(touched - keys.keys())))
    for key in keys:
        before = original.get(key, _MISSING)
        writes: dict[str, object] = {}
        for beat_name, start, final in branches:
            value = final.get(key, _MISSING)
            if value is before or value is _MISSING:
                continue
            if _opaque(value):
                # Nothing to compare: only a reassignment can be seen.
                if value is start.get(key, _MISSING):
                    continue
            elif before is not _MISSING and _equal(value, before):
                continue
            writes[beat_name] = value
        if not writes:
            continue
        values = list(writes.values())
        if len(values) == 1 or (
            strategy in _EQUAL_WRITES_AGREE and all(_equal(values[0], v) for v in values[1:])
        ):
            changes[key] = values[0]
            continue
        original_value = None if before is _MISSING else before
        conflict = FieldConflict(cadence_name, step_name, key, original_value, writes)
        changes[key] = strategy(conflict)
    return changes
