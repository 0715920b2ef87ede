"""Typed events: what a listener hears, in which order, named by which run and beat."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import anyio.lowlevel
import pytest

from cadence import BeatError, Cadence, Context, MergeConflictError, beat
from cadence._events import (
    BeatCancelled,
    BeatCompleted,
    BeatFailed,
    BeatFellBack,
    BeatRetried,
    BeatStarted,
    BeatTimedOut,
    BreakerStateChanged,
    CadenceEvent,
    EventHooks,
    MergeConflict,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
    observed,
    record_retry,
)
from cadence.resilience import (
    CircuitBreaker,
    CircuitState,
    fallback,
    retry,
    set_testing,
    timeout,
)

pytestmark = pytest.mark.anyio


@dataclass
class Ctx(Context):
    n: int = 0
    m: int = 0
    label: str = ""


@dataclass
class Inner(Context):
    k: int = 0


async def inc(ctx: Ctx) -> None:
    ctx.n += 1


@beat(blocking=True)
def inc_m(ctx: Ctx) -> None:
    ctx.m += 1


async def fails(ctx: Ctx) -> None:
    raise ValueError("boom")


async def inner_beat(ctx: Inner) -> None:
    ctx.k += 1


@pytest.fixture(autouse=True)
def instant_retries() -> Iterator[None]:
    set_testing()
    yield
    set_testing(False)


def summary(events: list[CadenceEvent]) -> list[tuple[str, ...]]:
    """Name each event by class, cadence and beat (what order tests compare)."""
    out: list[tuple[str, ...]] = []
    for e in events:
        beat_path = getattr(e, "beat", None)
        out.append((type(e).__name__, e.cadence, *(() if beat_path is None else (beat_path,))))
    return out


async def test_a_plan_of_every_kind_is_heard_in_order_with_one_run_id(anyio_backend: str) -> None:
    heard: list[CadenceEvent] = []
    child = Cadence("inner", Inner()).then("k", inner_beat)
    cadence = (
        Cadence("outer", Ctx())
        .then("first", inc)
        .split("pick", lambda c: c.n > 0, inc, inc_m)
        .child("nested", child, lambda p, c: None)
        .with_listener(heard.append)
    )
    await cadence.run()
    assert summary(heard) == [
        ("RunStarted", "outer"),
        ("BeatStarted", "outer", "first"),
        ("BeatCompleted", "outer", "first"),
        ("BeatStarted", "outer", "pick.inc"),
        ("BeatCompleted", "outer", "pick.inc"),
        ("BeatStarted", "outer", "nested.k"),
        ("BeatCompleted", "outer", "nested.k"),
        ("RunCompleted", "outer"),
    ]
    assert len({e.run_id for e in heard}) == 1
    assert heard[0].run_id
    end = heard[-1]
    assert isinstance(end, RunCompleted)
    assert end.outcome == "success"
    assert end.duration >= 0
    assert end.at >= end.started_at
    completed = heard[2]
    assert isinstance(completed, BeatCompleted)
    assert completed.outcome == "success"
    with pytest.raises(dataclasses.FrozenInstanceError):
        completed.beat = "other"  # type: ignore[misc] # frozen on purpose


async def test_sync_beats_are_heard_in_their_own_tasks_and_threads(anyio_backend: str) -> None:
    heard: list[CadenceEvent] = []
    cadence = Cadence("par", Ctx()).sync("both", [inc, inc_m]).with_listener(heard.append)
    result = await cadence.run()
    assert (result.n, result.m) == (1, 1)
    starts = sorted(e.beat for e in heard if isinstance(e, BeatStarted))
    ends = sorted(e.beat for e in heard if isinstance(e, BeatCompleted))
    assert starts == ends == ["both.inc", "both.inc_m"]


async def test_run_ids_differ_between_runs_and_children_link_to_parents(anyio_backend: str) -> None:
    heard: list[CadenceEvent] = []
    child = Cadence("inner", Inner()).then("k", inner_beat).with_listener(heard.append)
    cadence = Cadence("outer", Ctx()).child("nested", child, lambda p, c: None)
    cadence = cadence.with_listener(heard.append)
    async with anyio.create_task_group() as group:
        group.start_soon(cadence.run)
        group.start_soon(cadence.run)
    starts = [e for e in heard if isinstance(e, RunStarted)]
    outer = [e for e in starts if e.cadence == "outer"]
    inner = [e for e in starts if e.cadence == "inner"]
    assert len(outer) == len(inner) == 2
    assert len({e.run_id for e in starts}) == 4
    assert {e.parent_run_id for e in inner} == {e.run_id for e in outer}
    assert all(e.parent_run_id is None for e in outer)
    # Heard twice by the one listener: once as the parent's `nested.k`, once as the child's `k`,
    # each under its own run.
    beats = sorted((e.cadence, e.beat) for e in heard if isinstance(e, BeatCompleted))
    assert beats == [("inner", "k"), ("inner", "k"), ("outer", "nested.k"), ("outer", "nested.k")]
    for e in heard:
        if isinstance(e, BeatCompleted):
            run = next(s for s in starts if s.run_id == e.run_id)
            assert run.cadence == e.cadence


async def test_failures_carry_the_error_and_the_run_outcome(anyio_backend: str) -> None:
    heard: list[CadenceEvent] = []
    cadence = Cadence("bad", Ctx()).then("ok", inc).then("boom", fails).with_listener(heard.append)
    with pytest.raises(BeatError):
        await cadence.run()
    failed = next(e for e in heard if isinstance(e, BeatFailed))
    assert failed.beat == "boom"
    assert isinstance(failed.error, ValueError)
    assert failed.outcome == "failure"
    run = heard[-1]
    assert isinstance(run, RunFailed)
    assert isinstance(run.error, BeatError)
    assert run.outcome == "failure"


async def test_a_timeout_is_its_own_outcome(anyio_backend: str) -> None:
    @timeout(0.001)
    async def stuck(ctx: Ctx) -> None:
        await anyio.sleep_forever()

    heard: list[CadenceEvent] = []
    cadence = Cadence("slow", Ctx()).then("stuck", stuck).with_listener(heard.append)
    with pytest.raises(BeatError):
        await cadence.run()
    kinds = [type(e).__name__ for e in heard]
    assert kinds == ["RunStarted", "BeatStarted", "BeatTimedOut", "BeatFailed", "RunFailed"]
    timed = heard[2]
    assert isinstance(timed, BeatTimedOut)
    assert (timed.beat, timed.function, timed.seconds) == ("stuck", "stuck", 0.001)
    assert heard[3].outcome == "timeout"  # type: ignore[union-attr] # a BeatFailed, checked above
    assert heard[4].outcome == "timeout"  # type: ignore[union-attr] # the run's, through BeatError


@pytest.mark.parametrize("sync_beat", [False, True])
async def test_retries_and_fallbacks_are_events_of_the_beat(
    anyio_backend: str, sync_beat: bool
) -> None:
    calls = {"n": 0}

    def flaky_sync(ctx: Ctx) -> None:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError(f"try {calls['n']}")
        ctx.n = 10

    async def flaky_async(ctx: Ctx) -> None:
        flaky_sync(ctx)

    flaky = retry(max_attempts=3, delay=0.5)(flaky_sync if sync_beat else flaky_async)

    @fallback(default="guest", field="label")
    @retry(max_attempts=2, delay=0.1)
    async def always_down(ctx: Ctx) -> None:
        raise ConnectionError("down")

    heard: list[CadenceEvent] = []
    cadence = (
        Cadence("resilient", Ctx()).sync("fetch", [flaky, always_down]).with_listener(heard.append)
    )
    result = await cadence.run()
    assert (result.n, result.label) == (10, "guest")
    name = "flaky_sync" if sync_beat else "flaky_async"
    retried = [e for e in heard if isinstance(e, BeatRetried) and e.beat == f"fetch.{name}"]
    assert [(e.attempt, e.max_attempts, e.wait) for e in retried] == [(1, 3, 0.5), (2, 3, 1.0)]
    assert [str(e.error) for e in retried] == ["try 1", "try 2"]
    mine = [e for e in heard if getattr(e, "beat", None) == f"fetch.{name}"]
    assert type(mine[-1]) is BeatCompleted
    assert mine[-1].outcome == "success"
    down = [e for e in heard if getattr(e, "beat", None) == "fetch.always_down"]
    assert [type(e).__name__ for e in down] == [
        "BeatStarted",
        "BeatRetried",
        "BeatFellBack",
        "BeatCompleted",
    ]
    fell = down[2]
    assert isinstance(fell, BeatFellBack)
    assert isinstance(fell.error, ConnectionError)
    assert down[-1].outcome == "fallback"  # type: ignore[union-attr] # a BeatCompleted


async def test_an_async_listener_hears_everything_in_the_beats_task(anyio_backend: str) -> None:
    heard: list[CadenceEvent] = []

    async def listener(event: CadenceEvent) -> None:
        await anyio.lowlevel.checkpoint()
        heard.append(event)

    @retry(max_attempts=2, delay=0)
    async def once_flaky(ctx: Ctx) -> None:
        ctx.n += 1
        if ctx.n == 1:
            raise OSError("first")

    cadence = Cadence("async", Ctx()).then("b", once_flaky).with_listener(listener)
    await cadence.run()
    assert [type(e).__name__ for e in heard] == [
        "RunStarted",
        "BeatStarted",
        "BeatRetried",
        "BeatCompleted",
        "RunCompleted",
    ]


async def test_a_raising_listener_is_logged_and_isolated(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[CadenceEvent] = []

    def picky(event: CadenceEvent) -> None:
        if isinstance(event, BeatStarted):
            raise RuntimeError("listener bug")
        heard.append(event)

    cadence = Cadence("robust", Ctx()).then("a", inc).then("b", inc).with_listener(picky)
    with caplog.at_level(logging.ERROR, logger="cadence"):
        result = await cadence.run()
    assert result.n == 2
    assert summary(heard) == [
        ("RunStarted", "robust"),
        ("BeatCompleted", "robust", "a"),
        ("BeatCompleted", "robust", "b"),
        ("RunCompleted", "robust"),
    ]
    logged = [r for r in caplog.records if "listener" in r.getMessage()]
    assert len(logged) == 2
    assert all(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in logged)


async def test_cancellation_is_heard_as_cancelled(anyio_backend: str) -> None:
    heard: list[CadenceEvent] = []
    started = anyio.Event()

    async def waits(ctx: Ctx) -> None:
        started.set()
        await anyio.sleep_forever()

    cadence = Cadence("cancel", Ctx()).then("waits", waits).with_listener(heard.append)
    async with anyio.create_task_group() as group:
        group.start_soon(cadence.run)
        await started.wait()
        group.cancel_scope.cancel()
    assert [type(e) for e in heard] == [RunStarted, BeatStarted, BeatCancelled, RunCancelled]
    assert heard[2].outcome == heard[3].outcome == "cancelled"  # type: ignore[union-attr] # the last two


async def test_breaker_changes_name_the_breaker_and_the_beat(anyio_backend: str) -> None:
    breaker = CircuitBreaker("payments", failure_threshold=2, recovery_timeout=60)

    @breaker
    async def charge(ctx: Ctx) -> None:
        raise ConnectionError("payment service down")

    heard: list[CadenceEvent] = []
    cadence = (
        Cadence("pay", Ctx())
        .then("charge", charge)
        .on_error(lambda c, e: None, stop=False)
        .with_listener(heard.append)
    )
    await cadence.run()
    assert not any(isinstance(e, BreakerStateChanged) for e in heard)
    await cadence.run()  # second consecutive failure opens it
    changes = [e for e in heard if isinstance(e, BreakerStateChanged)]
    assert [(e.breaker, e.old_state, e.new_state, e.beat) for e in changes] == [
        ("payments", CircuitState.CLOSED, CircuitState.OPEN, "charge")
    ]
    second_run = [e for e in heard if isinstance(e, RunStarted)][1]
    assert changes[0].run_id == second_run.run_id
    breaker.close()  # by hand, outside any run: heard with no run or beat
    last = heard[-1]
    assert isinstance(last, BreakerStateChanged)
    assert (last.new_state, last.run_id, last.beat, last.cadence) == (
        CircuitState.CLOSED,
        None,
        None,
        "pay",
    )
    await cadence.run()
    failed = [e for e in heard if isinstance(e, BeatFailed)]
    assert failed[-1].outcome == "failure"
    breaker.open()
    await cadence.run()
    failed = [e for e in heard if isinstance(e, BeatFailed)]
    assert failed[-1].outcome == "circuit_open"


async def test_a_merge_conflict_is_an_event_before_the_run_fails(anyio_backend: str) -> None:
    async def set_a(ctx: Ctx) -> None:
        ctx.label = "a"

    async def set_b(ctx: Ctx) -> None:
        ctx.label = "b"

    heard: list[CadenceEvent] = []
    cadence = Cadence("merge", Ctx()).sync("both", [set_a, set_b]).with_listener(heard.append)
    with pytest.raises(MergeConflictError):
        await cadence.run()
    conflict = heard[-2]
    assert isinstance(conflict, MergeConflict)
    assert (conflict.step, conflict.field, conflict.beats) == ("both", "label", ("set_a", "set_b"))
    assert isinstance(heard[-1], RunFailed)


async def test_two_listeners_share_the_run_id(anyio_backend: str) -> None:
    first: list[CadenceEvent] = []
    second: list[CadenceEvent] = []
    cadence = Cadence("two", Ctx()).then("a", inc).with_listener(first.append)
    await cadence.with_listener(second.append).run()
    assert summary(first) == summary(second)
    assert [e.run_id for e in first] == [e.run_id for e in second]


async def test_nothing_is_recorded_without_a_listener(anyio_backend: str) -> None:
    seen: list[object] = []

    async def look(ctx: Ctx) -> None:
        seen.append(observed.get())
        record_retry("look", 1, 2, 0.0, ValueError())  # returns at once, nothing to tell

    cadence = Cadence("quiet", Ctx()).then("look", look)
    assert cadence.observers is None
    await cadence.run()
    assert seen == [()]


def test_event_hooks_need_a_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        EventHooks(42)  # type: ignore[arg-type] # the point of the test
    with pytest.raises(Exception, match="with_listener: the listener must be callable"):
        Cadence("x", Ctx()).with_listener("nope")  # type: ignore[arg-type] # as above


async def test_one_hooks_object_on_parent_and_child_hears_child_beats_once(
    anyio_backend: str,
) -> None:
    heard: list[CadenceEvent] = []
    hooks = EventHooks(heard.append)

    async def inner_m(ctx: Inner) -> None:
        await anyio.lowlevel.checkpoint()

    child = (
        Cadence("inner", Inner())
        .with_hooks(hooks)
        .sync("par", [inner_beat, inner_m])
        .then("k", inner_beat)
    )
    cadence = Cadence("outer", Ctx()).with_hooks(hooks).child("nested", child, lambda p, c: None)
    await cadence.run()
    runs = {e.run_id: e for e in heard if isinstance(e, RunStarted)}
    assert sorted(e.cadence for e in runs.values()) == ["inner", "outer"]
    ended = sorted(
        (runs[e.run_id].cadence, e.cadence, e.beat)
        for e in heard
        if isinstance(e, BeatCompleted) and e.run_id is not None
    )
    # The runner tells one hooks object of each child beat once, as the child's own.
    assert ended == [
        ("inner", "inner", "k"),
        ("inner", "inner", "par.inner_beat"),
        ("inner", "inner", "par.inner_m"),
    ]
    inner_run = next(e for e in runs.values() if e.cadence == "inner")
    outer_run = next(e for e in runs.values() if e.cadence == "outer")
    assert inner_run.parent_run_id == outer_run.run_id


async def test_a_merge_conflict_the_error_handler_takes_is_still_an_event(
    anyio_backend: str,
) -> None:
    async def set_a(ctx: Ctx) -> None:
        ctx.label = "a"

    async def set_b(ctx: Ctx) -> None:
        ctx.label = "b"

    heard: list[CadenceEvent] = []
    handled: list[Exception] = []
    cadence = (
        Cadence("merge", Ctx())
        .sync("both", [set_a, set_b])
        .then("after", inc)
        .on_error(lambda c, e: handled.append(e), stop=False)
        .with_listener(heard.append)
    )
    await cadence.run()
    assert [type(e) for e in handled] == [MergeConflictError]
    conflicts = [e for e in heard if isinstance(e, MergeConflict)]
    assert [(c.step, c.field, c.beats) for c in conflicts] == [
        ("both", "label", ("set_a", "set_b"))
    ]
    assert conflicts[0].run_id == heard[0].run_id
    assert isinstance(heard[-1], RunCompleted)
    assert any(isinstance(e, BeatCompleted) and e.beat == "after" for e in heard)
