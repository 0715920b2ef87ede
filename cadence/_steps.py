"""The steps of a cadence plan: small frozen records that the runner, diagrams and checks walk."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from cadence._beat import BeatSpec
from cadence._merge import MergeStrategy

if TYPE_CHECKING:
    from cadence._cadence import Cadence

__all__ = ["Child", "Split", "Step", "Sync", "Then"]


@dataclass(frozen=True, slots=True)
class Then:
    """Run one beat.

    Attributes:
        name: The step's name, which is also the beat's name.
        beat: The beat.

    """

    name: str
    beat: BeatSpec


@dataclass(frozen=True, slots=True)
class Sync:
    """Run several beats in parallel, each on its own copy, and merge their changes back.

    Attributes:
        name: The step's name.
        beats: The beats, in declaration order (the order merges and errors use).
        merge: The strategy for fields that beats changed to different values.

    """

    name: str
    beats: tuple[BeatSpec, ...]
    merge: MergeStrategy


@dataclass(frozen=True, slots=True)
class Split:
    """Run one branch of beats, in order, chosen by a condition.

    Attributes:
        name: The step's name.
        condition: Decides the branch; sync or async, returning a bool.
        condition_is_async: Whether `condition` returns an awaitable.
        if_true: The beats run when the condition holds.
        if_false: The beats run otherwise (possibly none).

    """

    name: str
    # Any: called with the run's context; returns a bool or an awaitable of one
    condition: Callable[[Any], Any]
    condition_is_async: bool
    if_true: tuple[BeatSpec, ...]
    if_false: tuple[BeatSpec, ...]


@dataclass(frozen=True, slots=True)
class Child:
    """Run a nested cadence over its own context, then merge it into this one.

    Attributes:
        name: The step's name.
        cadence: The nested cadence.
        merge: `merge(parent, child)`, sync or async; it writes the child's results into the parent.
        merge_is_async: Whether `merge` returns an awaitable.
        context: Builds the child's context from the parent's; `None` runs the child on a fresh
            copy of its own template.

    """

    name: str
    cadence: Cadence[Any]  # Any: a step holds a child over any context type
    merge: Callable[[Any, Any], Any]  # Any: merge(parent, child) over the two contexts
    merge_is_async: bool
    context: Callable[[Any], Any] | None  # Any: builds the child's context from the parent's


Step: TypeAlias = Then | Sync | Split | Child
"""Any step of a cadence plan."""
