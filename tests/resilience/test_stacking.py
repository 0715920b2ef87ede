"""The four resilience decorators stacked in every order, with `@beat` at every depth.

Each case stacks `retry`, `timeout`, `fallback` and `circuit_breaker` in one of their 24 orders,
puts `@beat(name=...)` above all of them, below all of them or anywhere between (5 depths), on
a sync or an async beat, and runs the result inside a cadence: once in a `then` step and twice in
a `sync` step beside a plain sibling beat. One beat fails twice then succeeds (transient), one
always fails (persistent).

What the order decides is documented behaviour, so the expectations come from a small model of
the four decorators (see `simulate`): `retry` inside `fallback` retries and then falls back;
`fallback` inside `retry` replaces the first failure, so nothing is retried; `timeout` (with a
generous deadline) and `circuit_breaker` (with a threshold no case reaches) pass results through,
the breaker counting what it sees.
"""

from __future__ import annotations

import inspect
import itertools
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.lowlevel
import pytest

from cadence import Cadence, Context, Sync, Then, beat
from cadence.resilience import (
    CircuitStats,
    circuit_breaker,
    fallback,
    get_circuit_breaker,
    retry,
    timeout,
)

KINDS = ("retry", "timeout", "fallback", "breaker")
ORDERS = list(itertools.permutations(KINDS))  # outermost first
DEPTHS = range(len(KINDS) + 1)  # where @beat goes: 0 above all ... 4 below all
ATTEMPTS = 3
FALLBACK = "fallback"
FOREVER = 1_000_000


class Flaky(Exception):
    """The beats' own failure."""


@dataclass
class Stack(Context):
    alone: str = ""
    transient: str = ""
    persistent: str = ""
    sibling: str = ""


def layer(kind: str, field: str) -> Callable[[Any], Any]:
    if kind == "retry":
        return retry(max_attempts=ATTEMPTS, delay=0.0)
    if kind == "timeout":
        return timeout(10.0)
    if kind == "fallback":
        return fallback(default=FALLBACK, field=field)
    return circuit_breaker(failure_threshold=10, recovery_timeout=30.0)  # a fresh breaker


@dataclass
class Built:
    fn: Any  # Any: the decorated beat, sync or async
    calls: Counter[str]


def build(
    order: tuple[str, ...], depth: int, *, is_async: bool, field: str, fails: int, name: str
) -> Built:
    """Decorate a beat that writes "ok" to `field` after failing `fails` times."""
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def attempt() -> None:
        with lock:
            calls["core"] += 1
            failing = calls["core"] <= fails
        if failing:
            raise Flaky(field)

    if is_async:

        async def core(ctx: Stack) -> None:
            await anyio.lowlevel.checkpoint()
            attempt()
            setattr(ctx, field, "ok")

        fn: Any = core
    else:

        def core_sync(ctx: Stack) -> None:
            attempt()
            setattr(ctx, field, "ok")

        fn = core_sync
    layers: list[Callable[[Any], Any]] = [layer(kind, field) for kind in order]
    layers.insert(depth, beat(name=name))
    for decorate in reversed(layers):  # the innermost first
        fn = decorate(fn)
    return Built(fn, calls)


@dataclass(frozen=True)
class Simulated:
    value: str
    core_calls: int
    breaker: CircuitStats


def simulate(order: tuple[str, ...], fails: int) -> Simulated:
    """Run the documented semantics of the stack, outermost first, on a plain function."""
    core_calls = 0
    seen: Counter[str] = Counter()

    def core() -> str:
        nonlocal core_calls
        core_calls += 1
        if core_calls <= fails:
            raise Flaky
        return "ok"

    def wrap(kind: str, inner: Callable[[], str]) -> Callable[[], str]:
        def retried() -> str:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    return inner()
                except Flaky:
                    if attempt == ATTEMPTS:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

        def fallen_back() -> str:
            try:
                return inner()
            except Flaky:
                return FALLBACK

        def counted() -> str:
            try:
                value = inner()
            except Flaky:
                seen["failures"] += 1
                raise
            seen["successes"] += 1
            return value

        return {"retry": retried, "fallback": fallen_back, "breaker": counted}.get(kind, inner)

    fn = core
    for kind in reversed(order):
        fn = wrap(kind, fn)
    value = fn()  # never raises: every stack holds a fallback
    return Simulated(value, core_calls, CircuitStats(seen["successes"], seen["failures"], 0, 0))


def case_id(order: tuple[str, ...], depth: int) -> str:
    names = list(order)
    names.insert(depth, "BEAT")
    return ">".join(names)


CASES = [
    pytest.param(order, depth, id=case_id(order, depth)) for order in ORDERS for depth in DEPTHS
]


class NameHooks:
    """Record the beat names the runner reports."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def before_beat(self, beat_name: str, context: Stack) -> None:
        self.names.append(beat_name)


@pytest.mark.anyio
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(("order", "depth"), CASES)
async def test_every_stacking_order(order: tuple[str, ...], depth: int, is_async: bool) -> None:
    def stacked(field: str, fails: int) -> Built:
        return build(
            order, depth, is_async=is_async, field=field, fails=fails, name=f"{field}_beat"
        )

    alone = stacked("alone", 2)
    transient = stacked("transient", 2)
    persistent = stacked("persistent", FOREVER)

    @beat(name="sibling_beat")
    def sibling(ctx: Stack) -> None:
        ctx.sibling = "sib"

    for built in (alone, transient, persistent):
        assert inspect.iscoroutinefunction(built.fn) is is_async
        assert inspect.unwrap(built.fn).__name__ == ("core" if is_async else "core_sync")

    hooks = NameHooks()
    cadence = (
        Cadence("stacked", Stack())
        .with_hooks(hooks)
        .then("alone", alone.fn)
        .sync("both", [transient.fn, persistent.fn, sibling])
    )

    # the names from @beat(name=...) survive every stacking
    then_step, sync_step = cadence.steps
    assert isinstance(then_step, Then)
    assert isinstance(sync_step, Sync)
    assert (then_step.beat.name, then_step.beat.is_async) == ("alone", is_async)
    sync_specs = sync_step.beats
    assert [s.name for s in sync_specs] == ["transient_beat", "persistent_beat", "sibling_beat"]
    assert [s.is_async for s in sync_specs] == [is_async, is_async, False]
    assert [s.in_thread for s in sync_specs] == [not is_async, not is_async, True]

    result = await cadence.run()

    assert sorted(hooks.names) == sorted(
        ["alone", "both.transient_beat", "both.persistent_beat", "both.sibling_beat"]
    )
    flaky = simulate(order, 2)
    stuck = simulate(order, FOREVER)
    assert flaky.value == ("ok" if order.index("retry") > order.index("fallback") else FALLBACK)
    assert stuck.value == FALLBACK
    assert (result.alone, result.transient, result.persistent, result.sibling) == (
        flaky.value,
        flaky.value,
        stuck.value,
        "sib",
    )
    assert (alone.calls["core"], transient.calls["core"]) == (flaky.core_calls,) * 2
    assert persistent.calls["core"] == stuck.core_calls
    assert get_circuit_breaker(alone.fn).stats == flaky.breaker
    assert get_circuit_breaker(transient.fn).stats == flaky.breaker
    assert get_circuit_breaker(persistent.fn).stats == stuck.breaker


def test_the_model_agrees_with_the_documented_examples() -> None:
    # retry inside fallback: three attempts, the third succeeds
    assert simulate(("fallback", "retry", "timeout", "breaker"), 2) == Simulated(
        "ok", 3, CircuitStats(1, 2, 0, 0)
    )
    # fallback inside retry: the first failure is replaced, nothing is retried
    assert simulate(("retry", "breaker", "fallback", "timeout"), 2) == Simulated(
        FALLBACK, 1, CircuitStats(1, 0, 0, 0)
    )
    # a persistent failure: retried three times, then the fallback
    assert simulate(("breaker", "fallback", "retry", "timeout"), FOREVER) == Simulated(
        FALLBACK, 3, CircuitStats(1, 0, 0, 0)
    )
