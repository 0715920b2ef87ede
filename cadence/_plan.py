"""The plan walk: a cadence's steps as a tree of plain records, without running anything.

Diagrams (`cadence.diagram`) and reporters (which create their metric series from it and watch
its circuit breakers) read a cadence through this one walk, so they agree on what a plan holds
and on how each beat is named: by the path the runner reports it under (`step`, `step.beat`,
and `child_step.` before a child's own paths). `cadence.validate` reads the steps themselves,
since its rules need the beats' functions and the merge strategies.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cadence._beat import BeatSpec, beat_info
from cadence._events import Decoration, decorations
from cadence._steps import Split, Sync, Then
from cadence.resilience._breaker import BREAKER_ATTRIBUTE, CircuitBreaker

if TYPE_CHECKING:
    from cadence._cadence import Cadence

__all__ = ["BeatNode", "PlanNode", "StepNode", "walk"]


@dataclass(frozen=True, slots=True)
class BeatNode:
    """One beat of a plan.

    Attributes:
        name: The beat's name within its step.
        path: The name hooks, reporters and errors use for it (from the outermost cadence).
        function: The qualified name of the function behind it (decorators unwrapped).
        is_async: Whether it is an async beat.
        in_thread: Whether a sync beat runs in a worker thread.
        description: The `@beat(description=...)`, if any.
        decorations: Its resilience decorators, outermost first, breakers included.
        breakers: The circuit breakers guarding it, outermost first.

    """

    name: str
    path: str
    function: str
    is_async: bool
    in_thread: bool
    description: str | None
    decorations: tuple[Decoration, ...]
    breakers: tuple[CircuitBreaker, ...]


@dataclass(frozen=True, slots=True)
class StepNode:
    """One step of a plan.

    Attributes:
        kind: `"then"`, `"sync"`, `"split"` or `"child"`.
        name: The step's name.
        path: The step's name as a path from the outermost cadence.
        beats: The beats: one for `then`, the parallel ones for `sync`, `if_true` for `split`.
        if_false: A `split`'s other branch (possibly empty); empty for other kinds.
        detail: The merge strategy (`sync`), the condition (`split`) or the merge function
            (`child`), by name.
        child: A `child` step's own plan.

    """

    kind: Literal["then", "sync", "split", "child"]
    name: str
    path: str
    beats: tuple[BeatNode, ...] = ()
    if_false: tuple[BeatNode, ...] = ()
    detail: str = ""
    child: PlanNode | None = None


@dataclass(frozen=True, slots=True)
class PlanNode:
    """A cadence's plan.

    Attributes:
        name: The cadence's name.
        prefix: What its beat paths start with (`""` for the outermost, `"step."` for a child).
        steps: Its steps, in order.

    """

    name: str
    prefix: str
    steps: tuple[StepNode, ...]

    def beats(self) -> Iterator[BeatNode]:
        """Yield every beat, children's included, in plan order."""
        for step in self.steps:
            yield from step.beats
            yield from step.if_false
            if step.child is not None:
                yield from step.child.beats()

    def paths(self) -> list[str]:
        """Return every beat path, in plan order (the label values a reporter may use)."""
        return [node.path for node in self.beats()]


def walk(cadence: Cadence[Any], prefix: str = "") -> PlanNode:  # Any: a plan over any context
    """Return `cadence`'s plan as records; nothing is called, no beat runs."""
    steps: list[StepNode] = []
    for step in cadence.steps:
        path = prefix + step.name
        if isinstance(step, Then):
            steps.append(StepNode("then", step.name, path, (_beat(step.beat, path),)))
        elif isinstance(step, Sync):
            beats = tuple(_beat(spec, f"{path}.{spec.name}") for spec in step.beats)
            steps.append(StepNode("sync", step.name, path, beats, detail=_name_of(step.merge)))
        elif isinstance(step, Split):
            true = tuple(_beat(spec, f"{path}.{spec.name}") for spec in step.if_true)
            false = tuple(_beat(spec, f"{path}.{spec.name}") for spec in step.if_false)
            steps.append(
                StepNode("split", step.name, path, true, false, detail=_name_of(step.condition))
            )
        else:
            child = walk(step.cadence, path + ".")
            steps.append(
                StepNode("child", step.name, path, detail=_name_of(step.merge), child=child)
            )
    return PlanNode(cadence.name, prefix, tuple(steps))


def _beat(spec: BeatSpec, path: str) -> BeatNode:
    fn: object = spec.fn
    info = beat_info(fn)
    marks, breakers = _resilience(fn)
    return BeatNode(
        name=spec.name,
        path=path,
        function=_name_of(fn),
        is_async=spec.is_async,
        in_thread=spec.in_thread,
        description=None if info is None else info.description,
        decorations=marks,
        breakers=breakers,
    )


def _resilience(fn: object) -> tuple[tuple[Decoration, ...], tuple[CircuitBreaker, ...]]:
    """Return the decorators wrapped around `fn`, outermost first, and its breakers.

    `functools.wraps` copies a wrapper's marks outwards, so each level's own marks are the ones
    its inner function does not have.
    """
    found: list[Decoration] = []
    breakers: list[CircuitBreaker] = []
    current: object = fn.func if isinstance(fn, functools.partial) else fn
    for _ in range(100):  # a chain of wrappers, never a cycle in practice
        inner: object = getattr(current, "__wrapped__", None)
        own = decorations(current)
        below = decorations(inner) if inner is not None else ()
        found.extend(own[: len(own) - len(below)])
        breaker: object = getattr(current, BREAKER_ATTRIBUTE, None)
        if isinstance(breaker, CircuitBreaker) and breaker is not getattr(
            inner, BREAKER_ATTRIBUTE, None
        ):
            breakers.append(breaker)
            found.append(Decoration("circuit_breaker", f"breaker {breaker.name}"))
        if inner is None:
            break
        current = inner
    return tuple(found), tuple(breakers)


def _name_of(fn: object) -> str:
    """Return a callable's qualified name (its function's, for partials and bound methods)."""
    target = fn.func if isinstance(fn, functools.partial) else fn
    for _ in range(100):  # unwrap decorators, as inspect.unwrap does
        inner: object = getattr(target, "__wrapped__", None)
        if inner is None:
            break
        target = inner
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    return str(name) if name else type(target).__qualname__
