"""The plan fingerprint stored with a run, and migrations across plan changes."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from cadence._steps import Child, Split, Sync, Then

if TYPE_CHECKING:
    from cadence._cadence import Cadence
    from cadence._steps import Step

__all__ = [
    "Migration",
    "Resumption",
    "describe_plan",
    "first_difference",
    "plan_fingerprint",
    "plan_json",
    "resume_position",
    "step_name",
]


def _describe(step: Step) -> str:
    if type(step) is Then:
        return f"then {step.name}"
    if type(step) is Sync:
        return f"sync {step.name}[{', '.join(b.name for b in step.beats)}]"
    if type(step) is Split:
        yes = ", ".join(b.name for b in step.if_true)
        no = ", ".join(b.name for b in step.if_false)
        return f"split {step.name}[{yes} | {no}]"
    child = cast("Child", step)
    inner = "; ".join(_describe(s) for s in child.cadence.steps)
    return f"child {child.name}({child.cadence.name}: {inner})"


def describe_plan(cadence: Cadence[Any]) -> tuple[str, ...]:  # Any: any context type
    """Return one line per top-level step: its kind, name and the names inside it."""
    return tuple(_describe(step) for step in cadence.steps)


@functools.lru_cache(maxsize=256)  # a cadence's plan is the same tuple for each of its runs
def plan_json(plan: tuple[str, ...]) -> str:
    """Return a described plan as the JSON list a store keeps."""
    return json.dumps(list(plan))


@functools.lru_cache(maxsize=256)  # as above
def plan_fingerprint(plan: tuple[str, ...]) -> str:
    """Return the SHA-256 of a described plan."""
    return hashlib.sha256(plan_json(plan).encode()).hexdigest()


def first_difference(stored: tuple[str, ...], current: tuple[str, ...]) -> str:
    """Describe the first step at which two described plans differ."""
    for index, (old, new) in enumerate(zip(stored, current, strict=False)):
        if old != new:
            return f"step {index + 1} was {old!r} and is now {new!r}"
    if len(stored) > len(current):
        return f"step {len(current) + 1} {stored[len(current)]!r} was removed"
    return f"step {len(stored) + 1} {current[len(stored)]!r} was added"


def step_name(line: str) -> str:
    """Return the step name of one line of a described plan.

    A `then` line is its name; the others end with what is inside the step, in brackets
    (`sync name[a, b]`, `child name(inner: ...)`): the name is what comes before the bracket
    that the line's last one closes, so a name holding brackets of its own is read whole.
    """
    kind, _, rest = line.partition(" ")
    if kind == "then":
        return rest
    opening, closing = ("(", ")") if kind == "child" else ("[", "]")
    depth = 0
    for index in range(len(rest) - 1, -1, -1):
        if rest[index] == closing:
            depth += 1
        elif rest[index] == opening:
            depth -= 1
            if depth == 0:
                return rest[:index]
    return rest  # not a line `describe_plan` wrote: compared whole


@dataclass(frozen=True, slots=True)
class Migration:
    """Accept a stored run made by an earlier plan of the cadence.

    The run goes on after the last step of the current plan that it completed (its completed
    steps renamed by `renamed` first). Completed steps the current plan removed are not run
    again; steps added before that point are skipped, steps added after it run. A step the run
    had not completed that the current plan moved before that point is skipped only if `skip`
    names it; otherwise the resume is refused.

    Attributes:
        renamed: Old top-level step names mapped to their new names.
        skip: New names of steps the run had not completed that it may pass over unrun.

    """

    renamed: Mapping[str, str] = field(default_factory=dict[str, str])
    skip: Set[str] = frozenset()

    def __post_init__(self) -> None:
        # Untyped callers are checked here, not deep in a resume: a str passes them as `skip`
        # (and `in` would find its substrings), a function or a list of pairs as `renamed`.
        skip = cast("object", self.skip)
        if isinstance(skip, str) or not isinstance(skip, Iterable):
            raise TypeError(f"Migration: skip takes a set of step names, got {skip!r}")
        renamed = cast("object", self.renamed)
        if not isinstance(renamed, Mapping) or not all(
            isinstance(old, str) and isinstance(new, str)
            for old, new in cast("Mapping[object, object]", renamed).items()
        ):
            raise TypeError(
                f"Migration: renamed maps old step names to new ones ({{'old': 'new'}}), "
                f"got {renamed!r}"
            )
        if not all(isinstance(name, str) for name in cast("Iterable[object]", skip)):
            raise TypeError(f"Migration: skip takes a set of step names, got {skip!r}")
        object.__setattr__(self, "skip", frozenset(self.skip))


@dataclass(frozen=True, slots=True)
class Resumption:
    """Where a run stored under an earlier plan goes on in the current one.

    Attributes:
        position: The index of the current plan's step it goes on at.
        unrun: Steps the run had not completed that it would pass over (moved before a step
            it completed) and the migration does not name in `skip`.
        after: The last step of the current plan that the run completed, if any.
        keeps_inner: Whether the step it goes on at is the stored step in flight (renamed or
            not, otherwise unchanged), whose stored progress (a child's, a sync's) then holds.

    """

    position: int
    unrun: tuple[str, ...]
    after: str | None
    keeps_inner: bool


def _same_step(stored: str, current: str, migration: Migration) -> bool:
    """Whether two described steps are one, up to the migration's renaming."""
    old, new = step_name(stored), step_name(current)
    kind, _, rest = stored.partition(" ")  # `rest` starts with the step's name
    return migration.renamed.get(old, old) == new and f"{kind} {new}{rest[len(old) :]}" == current


def resume_position(
    stored: tuple[str, ...], position: int, current: tuple[str, ...], migration: Migration
) -> Resumption:
    """Return where a run stored at `position` of plan `stored` goes on in plan `current`."""
    new_name = [migration.renamed.get(name, name) for name in map(step_name, stored)]
    done = set(new_name[:position])
    to_do = set(new_name[position:]) - done
    names = [step_name(line) for line in current]
    last = -1
    for index, name in enumerate(names):
        if name in done:
            last = index
    at = last + 1
    unrun = tuple(n for n in names[:at] if n in to_do and n not in migration.skip)
    keeps_inner = (
        position < len(stored)
        and at < len(current)
        and _same_step(stored[position], current[at], migration)
    )
    return Resumption(at, unrun, names[last] if last >= 0 else None, keeps_inner)
