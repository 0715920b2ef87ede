"""Properties of copy-on-first-access isolation, checked with hypothesis on asyncio and trio.

Three parallel beats each read, change in place, delete or leave alone fields that plain
equality gets wrong: a NaN array, a model compared by key, a cyclic graph, a list of
identity-compared objects. Whatever the interleaving: a field no beat changes is the very
object it was; one beat's change (or several equal ones) lands; different changes conflict,
naming every such field; no beat ever sees a sibling's change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence import Cadence, Context, MergeConflictError, beat


class Model:
    """Compared by key only, like an ORM model."""

    def __init__(self, pk: int, name: str) -> None:
        self.pk, self.name = pk, name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and other.pk == self.pk

    def __hash__(self) -> int:
        return self.pk


class Item:
    """Compared by identity."""

    def __init__(self, n: int) -> None:
        self.n = n


def _graph() -> dict[str, Any]:
    root: dict[str, Any] = {"value": 0}
    root["next"] = {"value": 0, "back": root}
    return root


@dataclass
class Odd(Context):
    arr: Any = field(default_factory=lambda: np.array([0.0, math.nan]))
    model: Model = field(default_factory=lambda: Model(1, "n0"))
    graph: dict[str, Any] = field(default_factory=_graph)
    items: list[Item] = field(default_factory=lambda: [Item(0)])


FIELDS = ("arr", "model", "graph", "items")


def state(ctx: Odd, name: str) -> object:
    """The comparable state of one field (or "deleted")."""
    if name not in vars(ctx) and not hasattr(ctx, name):
        return "deleted"
    try:
        value = getattr(ctx, name)
    except AttributeError:
        return "deleted"
    if name == "arr":
        return (float(value[0]), math.isnan(value[1]))
    if name == "model":
        return value.name
    if name == "graph":
        assert value["next"]["back"] is value  # the cycle survives every copy
        return value["next"]["value"]
    return value[0].n


def change(ctx: Odd, name: str, k: int) -> None:
    if name == "arr":
        ctx.arr[0] = float(k)
    elif name == "model":
        ctx.model.name = f"n{k}"
    elif name == "graph":
        ctx.graph["next"]["value"] = k
    else:
        ctx.items[0].n = k


ORIGINAL = {"arr": (0.0, True), "model": "n0", "graph": 0, "items": 0}
EXPECTED = {
    "arr": lambda k: (float(k), True),
    "model": lambda k: f"n{k}",
    "graph": lambda k: k,
    "items": lambda k: k,
}

# An action on one field: None (leave it), "read", "delete", or an int k (change it to k).
actions = st.one_of(st.none(), st.just("read"), st.just("delete"), st.integers(1, 3))
plans = st.lists(st.fixed_dictionaries(dict.fromkeys(FIELDS, actions)), min_size=3, max_size=3)
pauses = st.lists(st.integers(0, 3), min_size=3, max_size=3)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=80, deadline=None)
@given(plan=plans, waits=pauses)
def test_isolated_branches_merge_exactly_what_changed(
    backend: str, plan: list[dict[str, object]], waits: list[int]
) -> None:
    leaks: list[str] = []

    def make(index: int) -> Any:
        async def run(ctx: Odd) -> None:
            for name, action in plan[index].items():
                for _ in range(waits[index]):
                    await anyio.lowlevel.checkpoint()
                if action is None:
                    continue
                if state(ctx, name) != ORIGINAL[name]:
                    leaks.append(f"b{index} saw a change of {name}")
                if action == "delete":
                    delattr(ctx, name)
                elif isinstance(action, int):
                    change(ctx, name, action)

        return beat(name=f"b{index}")(run)

    ctx = Odd()
    before = {name: getattr(ctx, name) for name in FIELDS}
    cadence = Cadence("odd", Odd()).sync("s", [make(i) for i in range(3)])
    writes = {
        name: {i: p[name] for i, p in enumerate(plan) if p[name] not in (None, "read")}
        for name in FIELDS
    }
    conflicts = [name for name in FIELDS if len(set(writes[name].values())) > 1]
    if conflicts:
        with pytest.raises(MergeConflictError) as caught:
            anyio.run(cadence.run, ctx, backend=backend)
        assert list(caught.value.fields) == conflicts
        for name in conflicts:
            assert caught.value.conflicts[name] == tuple(f"b{i}" for i in writes[name])
        assert all(getattr(ctx, name) is before[name] for name in FIELDS)  # nothing merged
    else:
        anyio.run(cadence.run, ctx, backend=backend)
        for name in FIELDS:
            done = set(writes[name].values())
            if not done:
                assert getattr(ctx, name) is before[name]  # untouched or only read: the same
            elif done == {"delete"}:
                assert state(ctx, name) == "deleted"
            else:
                (k,) = done
                assert isinstance(k, int)
                assert state(ctx, name) == EXPECTED[name](k)
    assert leaks == []
