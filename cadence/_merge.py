"""Merging the changes of parallel beats back into one context.

Each parallel beat works on its own view of the context (see `_isolation`); afterwards each
beat's changes are the fields it touched whose state differs from the context as it was before
the step (a three-way merge, like git's). One write is taken as is; equal writes agree;
different writes go to the step's merge strategy, which returns the merged value or raises
`MergeConflictError`. Every refused field is collected, so the error names them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Any, TypeAlias

from cadence._errors import MergeConflictError
from cadence._isolation import fingerprint_key, same_value

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
        writes: Each writing beat's value, by beat name, in declaration order. A beat that
            deleted the field wrote a marker whose repr is `<deleted>`; returning it deletes.

    """

    cadence_name: str
    step_name: str
    field: str
    original: object
    writes: Mapping[str, object]

    def error(self, detail: str = "", *, refused_by: str | None = None) -> MergeConflictError:
        """Return the `MergeConflictError` that names this field and its writers.

        `refused_by` names the strategy that refused, whose advice the message then leaves out.
        """
        return MergeConflictError(
            self.cadence_name,
            self.step_name,
            self.field,
            list(self.writes),
            detail,
            refused_by=refused_by,
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
    values agree only when every beat wrote the same one. Items are compared by state, as
    fields are: an unchanged copy of a plain object is the same item.

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
    if all(same_value(values[0], v) for v in values[1:]):
        return values[0]
    kinds = ", ".join(sorted({type(v).__name__ for v in values}))
    raise conflict.error(
        f"smart_merge combines lists, dicts and sets, not {kinds}", refused_by="smart_merge"
    )


def _as(
    kind: type | UnionType, empty: Any, original: Any, conflict: FieldConflict
) -> Any:  # Any: a collection of unknown items
    """Return `original` if it is of `kind` (`None` counts as `empty`), else raise the conflict."""
    if original is None:
        return empty
    if not isinstance(original, kind):
        raise conflict.error(
            f"the beats wrote {getattr(kind, '__name__', 'set')}s over a {type(original).__name__}",
            refused_by="smart_merge",
        )
    return original


def _merge_lists(
    conflict: FieldConflict, original: list[Any], values: Sequence[list[Any]]
) -> list[Any]:
    base = len(original)
    merged = list(original)
    for beat, value in zip(conflict.writes, values, strict=True):
        kept = len(value) >= base and all(
            same_value(a, b) for a, b in zip(original, value[:base], strict=True)
        )
        if not kept:
            raise conflict.error(
                f"{beat!r} changed existing items; smart_merge only appends",
                refused_by="smart_merge",
            )
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
            old = original.get(key, missing)
            if new is not missing and old is not missing and same_value(new, old):
                continue
            earlier = changes.get(key)
            if earlier is not None and not same_value(earlier[1], new):
                raise conflict.error(
                    f"{earlier[0]!r} and {beat!r} disagree on key {key!r}",
                    refused_by="smart_merge",
                )
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
    # Members are matched by state, so an unchanged copy of a plain object is no addition.
    kept = {fingerprint_key(m): m for m in original}
    added: dict[object, Any] = {}  # Any: set members of any type
    removed: set[object] = set()
    for value in values:
        members = {fingerprint_key(m): m for m in value}
        added.update((k, m) for k, m in members.items() if k not in kept and k not in added)
        removed.update(k for k in kept if k not in members)
    merged = [m for k, m in kept.items() if k not in removed]
    merged.extend(added.values())
    return frozenset(merged) if isinstance(original, frozenset) else set(merged)


# The built-in strategies that treat equal writes as one write; other strategies see them all.
_EQUAL_WRITES_AGREE: tuple[MergeStrategy, ...] = (fail_on_conflict, last_write_wins)


def merge_branches(  # noqa: PLR0917 # one internal caller, all arguments needed
    order: Sequence[str],
    original: Mapping[str, object],
    branches: Sequence[tuple[str, Mapping[str, object]]],
    strategy: MergeStrategy,
    cadence_name: str,
    step_name: str,
) -> dict[str, object]:
    """Return the fields to set on the context after a parallel step (`DELETED` to delete).

    One write is taken; writes by several beats go to `strategy`, except that
    `fail_on_conflict` and `last_write_wins` take equal writes as one.

    Args:
        order: The context's field names in declaration order (merged fields follow it).
        original: The field values before the step.
        branches: For each beat in declaration order, its name and the fields it changed.
        strategy: Resolves fields that several beats wrote.
        cadence_name: For error messages.
        step_name: For error messages.

    Raises:
        MergeConflictError: the strategy refused one or more fields; it names them all.

    """
    written = {key for _, changes in branches for key in changes}
    if not written:
        return {}
    keys = [k for k in order if k in written]
    keys.extend(sorted(written.difference(keys)))
    merged: dict[str, object] = {}
    refused: list[MergeConflictError] = []
    for key in keys:
        writes = {beat: changes[key] for beat, changes in branches if key in changes}
        values = list(writes.values())
        if len(values) == 1 or (
            strategy in _EQUAL_WRITES_AGREE and all(same_value(values[0], v) for v in values[1:])
        ):
            merged[key] = values[0]
            continue
        conflict = FieldConflict(cadence_name, step_name, key, original.get(key), writes)
        try:
            merged[key] = strategy(conflict)
        except MergeConflictError as error:
            refused.append(error)
    if refused:
        first, *more = refused
        raise MergeConflictError(
            first.cadence_name,
            first.step_name,
            first.field,
            first.beats,
            first.detail,
            refused_by=first.refused_by,
            more=more,
        )
    return merged
