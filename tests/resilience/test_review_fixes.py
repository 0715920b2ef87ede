"""Regression tests for the resilience defects found in review (issue 7, section 3).

Each test names the defect it pins. Async cases run on asyncio and on trio.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from cadence import (
    AtomicList,
    BeatError,
    BeatTimeoutError,
    Cadence,
    CadenceDefinitionError,
    CadenceError,
    CircuitOpenError,
    CircuitState,
    Context,
    ContextCopyError,
    Shared,
    beat,
    circuit_breaker,
    fallback,
    retry,
    timeout,
)
from cadence.resilience import (
    CircuitBreaker,
    Clock,
    abandoned_threads,
    get_circuit_breaker,
    get_clock,
    is_testing,
    set_clock,
    set_testing,
    use_clock,
)


class FakeClock:
    """A clock whose time moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.now += seconds
        await anyio.lowlevel.checkpoint()

    def clock(self) -> Clock:
        return Clock(monotonic=self.monotonic, sleep=self.sleep, async_sleep=self.async_sleep)


@pytest.fixture
def fake() -> Generator[FakeClock, None, None]:
    clock = FakeClock()
    with use_clock(clock.clock()):
        yield clock


@dataclass
class Order(Context):
    status: str = ""
    data: int = 0
    items: list[str] = field(default_factory=list[str])
    seen: AtomicList[str] = field(default_factory=AtomicList[str])


def wait_for_abandoned(count: int) -> None:
    """Wait (a real wait: abandoned threads finish on their own) until `count` remain."""
    deadline = time.monotonic() + 5
    while abandoned_threads() != count and time.monotonic() < deadline:
        time.sleep(0.001)
    assert abandoned_threads() == count


# ----------------------------------------------------------------- 1. raising state listeners


class ListenerBroke(Exception):
    """A state listener's own failure."""


def broken_listener(breaker: CircuitBreaker, old: CircuitState, new: CircuitState) -> None:
    raise ListenerBroke(f"{old.value} -> {new.value}")


def listener_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "cadence" and r.levelno == logging.ERROR and "state listener" in r.getMessage()
    ]


def test_a_raising_listener_does_not_replace_the_calls_outcome(
    fake: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = CircuitBreaker("listener-outcome", failure_threshold=1, recovery_timeout=5.0)
    heard: list[tuple[CircuitState, CircuitState]] = []
    breaker.add_listener(broken_listener)
    breaker.add_listener(lambda b, old, new: heard.append((old, new)))  # still called
    healthy = False

    @breaker
    def call() -> str:
        if not healthy:
            raise ConnectionError("down")
        return "ok"

    with caplog.at_level(logging.ERROR, logger="cadence"), pytest.raises(ConnectionError):
        call()  # trips the breaker: its own error, not the listener's
    assert breaker.state is CircuitState.OPEN
    fake.now += 5
    healthy = True
    with caplog.at_level(logging.ERROR, logger="cadence"):
        assert call() == "ok"  # the probe: admitted, run, and its result returned
    assert breaker.state is CircuitState.CLOSED
    assert call() == "ok"  # and the breaker keeps serving
    assert heard == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]
    messages = listener_errors(caplog)
    assert len(messages) == 3
    assert "circuit breaker 'listener-outcome' raised on closed -> open" in messages[0]
    records = [r for r in caplog.records if "state listener" in r.getMessage()]
    assert all(r.exc_info and r.exc_info[0] is ListenerBroke for r in records)


@pytest.mark.anyio
async def test_a_raising_listener_leaves_no_probe_slot_taken(
    fake: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    @circuit_breaker(failure_threshold=1, recovery_timeout=5.0)
    @beat
    async def charge(ctx: Order) -> None:
        if ctx.status != "healthy":
            raise ConnectionError("down")
        ctx.data += 1

    breaker = get_circuit_breaker(charge)
    breaker.add_listener(broken_listener)
    with caplog.at_level(logging.ERROR, logger="cadence"):
        with pytest.raises(ConnectionError):
            await charge(Order())
        fake.now += 5
        # The probe's admission is heard (OPEN -> HALF_OPEN) by the broken listener; the probe
        # fails as itself, and its slot is given back.
        with pytest.raises(ConnectionError):
            await charge(Order())
        assert breaker.state is CircuitState.OPEN
        fake.now += 5
        cadence = Cadence("pay", Order(status="healthy")).then("charge", charge)
        assert (await cadence.run()).data == 1  # a new probe is admitted and closes the circuit
    assert breaker.state is CircuitState.CLOSED
    changes = [m.split(" raised on ")[1].split(";")[0] for m in listener_errors(caplog)]
    assert changes == [
        "closed -> open",
        "open -> half_open",
        "half_open -> open",
        "open -> half_open",
        "half_open -> closed",
    ]


class Interrupt(BaseException):
    """Stands for KeyboardInterrupt: not isolated, but it must not keep a probe slot."""


def test_an_interrupt_in_a_listener_gives_the_probe_slot_back(fake: FakeClock) -> None:
    breaker = CircuitBreaker("listener-interrupt", failure_threshold=1, recovery_timeout=5.0)
    interrupt = True

    def listener(b: CircuitBreaker, old: CircuitState, new: CircuitState) -> None:
        if interrupt and new is CircuitState.HALF_OPEN:
            raise Interrupt

    breaker.add_listener(listener)

    @breaker
    def call(fail: bool) -> str:
        if fail:
            raise OSError
        return "ok"

    with pytest.raises(OSError):
        call(True)
    fake.now += 5
    with pytest.raises(Interrupt):
        call(False)  # interrupted while being admitted: it never ran
    interrupt = False
    assert call(False) == "ok"  # the slot was given back: a probe is admitted
    assert breaker.state is CircuitState.CLOSED


def test_manual_state_changes_survive_a_raising_listener(
    caplog: pytest.LogCaptureFixture,
) -> None:
    breaker = CircuitBreaker("listener-manual")
    breaker.add_listener(broken_listener)
    with caplog.at_level(logging.ERROR, logger="cadence"):
        breaker.open()
        with pytest.raises(CircuitOpenError):
            breaker(lambda: None)()
        breaker.reset()
    assert breaker.state is CircuitState.CLOSED
    assert len(listener_errors(caplog)) == 2


# ----------------------------------------------------------------- 2. fresh fallback defaults


@pytest.mark.anyio
async def test_a_mutable_default_is_fresh_in_every_run() -> None:
    @fallback(default=["fallback"], field="items")
    @beat
    async def load(ctx: Order) -> None:
        raise ConnectionError("store down")

    async def add(ctx: Order) -> None:
        ctx.items.append(f"run {ctx.data}")

    cadence = Cadence("c", Order()).then("load", load).then("add", add)
    first = await cadence.run(Order(data=1))
    second = await cadence.run(Order(data=2))
    assert first.items == ["fallback", "run 1"]
    assert second.items == ["fallback", "run 2"]  # no trace of the first run


@pytest.mark.anyio
async def test_a_mapping_default_is_fresh_in_every_run() -> None:
    @fallback(default={"items": [], "status": "cached"})
    @beat
    async def load(ctx: Order) -> None:
        raise ConnectionError("store down")

    contexts = [Order(), Order()]
    for ctx in contexts:
        assert await load(ctx) is None  # a beat's fallback returns what the beat would
        ctx.items.append("mine")
    assert [c.items for c in contexts] == [["mine"], ["mine"]]
    assert contexts[0].items is not contexts[1].items


def test_a_plain_functions_mutable_default_is_a_new_object_each_time() -> None:
    @fallback(default=[])
    def tags(order_id: str) -> list[str]:
        raise OSError(order_id)

    first = tags("a")
    first.append("x")
    assert tags("b") == []
    assert tags("c") is not tags("d")


def test_an_immutable_default_is_used_as_it_is() -> None:
    default = ("a", 1, None)

    @fallback(default=default)
    def pair() -> tuple[str, int, None]:
        raise OSError

    assert pair() is default  # nothing to copy


def test_a_default_that_cannot_be_copied_is_refused_when_decorating() -> None:
    with pytest.raises(ValueError, match=r"cannot be copied .*build the value in a handler"):
        fallback(default=threading.Lock())


# ----------------------------------------------------------------- 3. async handlers


@pytest.mark.anyio
async def test_an_async_handler_is_awaited() -> None:
    async def describe(ctx: Order, error: Exception) -> str:
        await anyio.lowlevel.checkpoint()
        return f"failed: {type(error).__name__} at {ctx.data}"

    @fallback(handler=describe, field="status")
    @beat
    async def check(ctx: Order) -> None:
        raise KeyError("k")

    async def fetch_default(ctx: None, error: Exception) -> list[str]:
        await anyio.lowlevel.checkpoint()
        return [str(error)]

    @fallback(handler=fetch_default)
    async def fetch(url: str) -> list[str]:
        raise OSError(url)

    result = await Cadence("c", Order(data=3)).then("check", check).run()
    assert result.status == "failed: KeyError at 3"
    assert await fetch("u") == ["u"]


def test_an_async_handler_on_a_sync_function_is_refused() -> None:
    async def handler(ctx: Order, error: Exception) -> str:
        return "x"

    def sync_beat(ctx: Order) -> None:
        raise OSError

    with pytest.raises(CadenceDefinitionError, match=r"handler 'handler' is async but 'sync_beat'"):
        fallback(handler=handler, field="status")(sync_beat)


def test_a_sync_function_whose_handler_returns_an_awaitable_fails_clearly() -> None:
    async def make() -> str:
        return "x"

    @fallback(handler=lambda ctx, error: make(), field="status")
    def sync_beat(ctx: Order) -> None:
        raise OSError("down")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CadenceDefinitionError, match="handler returned an awaitable") as info:
            sync_beat(Order())
        gc.collect()  # the coroutine was closed: no "never awaited" warning
    assert isinstance(info.value, CadenceError)
    assert isinstance(info.value.__cause__, OSError)


# ----------------------------------------------------------------- 4. shielded scopes


@pytest.mark.anyio
async def test_timeout_respects_a_shielded_scope_inside_the_beat() -> None:
    steps: list[str] = []

    @timeout(0.01)
    @beat
    async def commit(ctx: Order) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.05)  # past the deadline, shielded: it must finish
            steps.append("shielded work done")
        await anyio.sleep(5)  # unshielded again: the deadline cancels here
        steps.append("never")

    with pytest.raises(BeatError) as info:
        await Cadence("c", Order()).then("commit", commit).run()
    assert isinstance(info.value.__cause__, BeatTimeoutError)
    assert steps == ["shielded work done"]


@pytest.mark.anyio
async def test_timeout_still_passes_an_outer_cancellation_through() -> None:
    @timeout(10.0)
    async def forever() -> None:
        await anyio.sleep_forever()

    with anyio.CancelScope() as outer:
        outer.cancel()
        await forever()
    assert outer.cancelled_caught


def test_timeout_works_in_plain_asyncio_tasks_under_asyncio_timeout() -> None:
    @timeout(10.0)
    async def forever() -> None:
        await asyncio.sleep(10)

    @timeout(0.01)
    async def slow() -> None:
        await asyncio.sleep(10)

    async def main() -> list[str]:
        seen: list[str] = []
        try:
            await slow()
        except BeatTimeoutError:
            seen.append("own deadline")
        try:
            async with asyncio.timeout(0.01):
                await forever()
        except BeatTimeoutError:  # pragma: no cover # the enclosing deadline is not ours
            seen.append("wrong")
        except TimeoutError:
            seen.append("enclosing deadline")
        task = asyncio.current_task()
        assert task is not None
        seen.append(f"cancelling={task.cancelling()}")
        return seen

    assert asyncio.run(main()) == ["own deadline", "enclosing deadline", "cancelling=0"]


# ----------------------------------------------------------------- 5. late writes of sync beats


def test_an_abandoned_sync_beat_never_writes_into_the_returned_context() -> None:
    release = threading.Event()
    finished = threading.Event()
    before = abandoned_threads()

    @timeout(0.02)
    @beat
    def slow(ctx: Order) -> None:
        release.wait(5)
        ctx.status = "late"
        ctx.items.append("late")
        ctx.data += 1
        finished.set()

    ctx = Order(status="before", items=["kept"])
    with pytest.raises(BeatTimeoutError):
        slow(ctx)
    release.set()
    assert finished.wait(5)
    wait_for_abandoned(before)
    assert (ctx.status, ctx.items, ctx.data) == ("before", ["kept"], 0)


@pytest.mark.anyio
async def test_a_timed_out_run_keeps_its_context_after_the_thread_ends() -> None:
    release = threading.Event()
    finished = threading.Event()
    before = abandoned_threads()

    @fallback(default="timed out", field="status")
    @timeout(0.02)
    @beat
    def slow(ctx: Order) -> None:
        release.wait(5)
        ctx.status = "late"
        ctx.items.append("late")
        finished.set()

    result = await Cadence("c", Order()).then("slow", slow).run()
    release.set()
    assert finished.wait(5)
    wait_for_abandoned(before)
    assert (result.status, result.items) == ("timed out", [])


@pytest.mark.anyio
async def test_a_sync_beat_that_ends_in_time_writes_its_changes() -> None:
    @timeout(5.0)
    @beat
    def quick(ctx: Order) -> None:
        ctx.status = "done"
        ctx.items.append("new")
        ctx.seen.append("atomic")

    @fallback(default="failed", field="status")
    @timeout(5.0)
    def partial(ctx: Order) -> None:
        ctx.data = 7
        raise OSError("after writing")

    seen = AtomicList[str]()
    result = (
        await Cadence("c", Order())
        .then("quick", quick)
        .then("partial", partial)
        .run(Order(seen=seen))
    )
    assert (result.status, result.items, result.data) == ("failed", ["new"], 7)
    assert result.seen == ["atomic"]


@pytest.mark.anyio
async def test_timed_sync_beats_in_parallel_branches_merge_without_false_conflicts() -> None:
    @timeout(5.0)
    @beat
    def set_status(ctx: Order) -> None:
        ctx.status = "checked"

    @timeout(5.0)
    @beat
    def add_item(ctx: Order) -> None:
        ctx.items.append("added")

    @timeout(5.0)
    @beat
    def count(ctx: Order) -> None:
        ctx.data = len(ctx.items)

    cadence = Cadence("c", Order(items=["first"])).sync("both", [set_status, add_item, count])
    result = await cadence.run()
    assert (result.status, result.items, result.data) == ("checked", ["first", "added"], 1)


def test_a_sync_beat_returning_its_context_returns_the_live_one() -> None:
    @timeout(5.0)
    def same(ctx: Order) -> Order:
        ctx.data = 2
        return ctx

    ctx = Order()
    assert same(ctx) is ctx
    assert ctx.data == 2


def test_a_field_that_cannot_be_copied_names_the_beat_and_the_field() -> None:
    @dataclass
    class Locked(Context):
        lock: Any = None
        count: int = 0

    @timeout(5.0)
    def guarded(ctx: Locked) -> None:
        ctx.count += 1
        with ctx.lock:
            pass

    @timeout(5.0)
    def untouched(ctx: Locked) -> None:
        ctx.count += 1  # the lock is never read, so never copied

    ctx = Locked(lock=threading.Lock())
    with pytest.raises(ContextCopyError, match=r"step 'guarded': field Locked.lock holds a "):
        guarded(ctx)
    untouched(ctx)
    assert ctx.count == 2  # both ended in time, so both writes count, as without a timeout


def test_a_shared_field_is_the_same_object_in_the_private_view() -> None:
    @dataclass
    class WithLock(Context):
        lock: Shared[threading.Lock] = field(default_factory=threading.Lock)
        seen: list[bool] = field(default_factory=list[bool])

    ctx = WithLock()

    @timeout(5.0)
    def use(c: WithLock) -> None:
        with c.lock:
            c.seen.append(c.lock is ctx.lock)

    use(ctx)
    assert ctx.seen == [True]


# ----------------------------------------------------------------- 6. outer cancellation


def beat_for(kind: str, raise_in_cleanup: bool, outer: anyio.CancelScope) -> Callable[..., Any]:
    """An async beat that cancels its own outer scope, then fails."""

    async def fails(ctx: Order) -> None:
        outer.cancel()
        if raise_in_cleanup:
            try:
                await anyio.sleep_forever()
            finally:
                raise RuntimeError("cleanup failed")  # the failure under test
        raise RuntimeError("failed")

    decorators: dict[str, Callable[[Any], Any]] = {
        "none": lambda fn: fn,
        "fallback": fallback(default="recovered", field="status"),
        "retry": retry(max_attempts=3, delay=0.0),
        "timeout": timeout(10.0),
        "circuit_breaker": circuit_breaker(),
    }
    return decorators[kind](beat(fails))


RECOVERING = {"fallback", "retry"}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["none", "fallback", "retry", "timeout", "circuit_breaker"])
@pytest.mark.parametrize("raise_in_cleanup", [False, True], ids=["raises", "cleanup-raises"])
async def test_a_failure_under_outer_cancellation_is_the_same_on_both_backends(
    kind: str, raise_in_cleanup: bool
) -> None:
    attempts: list[str] = []
    outer = anyio.CancelScope()
    fn = beat_for(kind, raise_in_cleanup, outer)

    async def count(ctx: Order) -> None:
        attempts.append(ctx.status)

    cadence = Cadence("c", Order()).then("fails", fn).then("after", count)
    outcome: str
    try:
        with outer:
            await cadence.run()
        outcome = "cancelled" if outer.cancelled_caught else "returned"
    except BeatError as error:
        outcome = f"BeatError from {type(error.__cause__).__name__}"
    # A decorator never recovers (falls back, retries) under a cancelled scope: the cancellation
    # wins. A failure no decorator recovers from stands, as the run's BeatError.
    expected = "cancelled" if kind in RECOVERING else "BeatError from RuntimeError"
    assert outcome == expected
    assert attempts == []


# ----------------------------------------------------------------- 7. clocks


def test_a_named_breaker_with_another_clock_is_refused() -> None:
    first, second = FakeClock().clock(), FakeClock().clock()

    @circuit_breaker(name="clocked-breaker", clock=first)
    def a() -> None: ...

    @circuit_breaker(name="clocked-breaker", clock=first)  # the same clock: the same breaker
    def b() -> None: ...

    assert get_circuit_breaker(a) is get_circuit_breaker(b)
    assert get_circuit_breaker("clocked-breaker").settings.clock is first
    with pytest.raises(ValueError, match="a breaker named 'clocked-breaker' already exists"):
        circuit_breaker(name="clocked-breaker", clock=second)
    with pytest.raises(ValueError, match="a breaker named 'clocked-breaker' already exists"):
        circuit_breaker(name="clocked-breaker")  # no clock: the current clock, also different


def test_testing_mode_off_restores_the_clock_that_was_set() -> None:
    mine = FakeClock().clock()
    previous = set_clock(mine)
    try:
        set_testing(True)
        assert get_clock() is not mine
        set_testing(True)  # already on: nothing changes
        set_testing(False)
        assert not is_testing()
        assert get_clock() is mine
        set_testing(False)  # already off: nothing changes
        assert get_clock() is mine
    finally:
        set_testing(False)
        set_clock(previous)


def test_a_clock_set_during_testing_mode_stays_in_use() -> None:
    mine = FakeClock().clock()
    previous = get_clock()
    try:
        set_testing(True)
        set_clock(mine)
        set_testing(False)
        assert get_clock() is mine
    finally:
        set_testing(False)
        set_clock(previous)
