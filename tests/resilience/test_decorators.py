"""The resilience decorators: semantics, argument errors, and what they keep of a function."""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from cadence import (
    BeatError,
    BeatTimeoutError,
    Cadence,
    CircuitOpenError,
    CircuitState,
    Context,
    ImmutableContext,
    beat,
    circuit_breaker,
    fallback,
    retry,
    timeout,
)
from cadence.resilience import (
    CircuitBreaker,
    Clock,
    RetryEvent,
    abandoned_threads,
    get_circuit_breaker,
    is_testing,
    set_testing,
    use_clock,
)


class FakeClock:
    """A clock whose time moves only when something sleeps or the test advances it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await anyio.lowlevel.checkpoint()

    def clock(self) -> Clock:
        return Clock(monotonic=self.monotonic, sleep=self.sleep, async_sleep=self.async_sleep)


@pytest.fixture
def fake() -> Any:
    clock = FakeClock()
    with use_clock(clock.clock()):
        yield clock


@dataclass
class Ctx(Context):
    status: str = ""
    data: int = 0
    attempts: int = 0


# --------------------------------------------------------------------------- retry


@pytest.mark.anyio
async def test_retry_waits_grow_by_backoff_then_succeed(fake: FakeClock) -> None:
    @retry(max_attempts=4, delay=1.0, backoff=2.0)
    @beat
    async def flaky(ctx: Ctx) -> None:
        ctx.attempts += 1
        if ctx.attempts < 4:
            raise ConnectionError("try again")
        ctx.data = 42

    result = await Cadence("c", Ctx()).then("flaky", flaky).run()
    assert (result.attempts, result.data) == (4, 42)
    assert fake.waits == [1.0, 2.0, 4.0]


def test_retry_gives_up_with_the_last_exception_and_a_note(fake: FakeClock) -> None:
    calls: list[int] = []

    @retry(max_attempts=3, delay=0.5, backoff=3.0, max_delay=1.0)
    def always_fails(n: int) -> int:
        calls.append(n)
        raise ValueError(f"attempt {len(calls)}")

    with pytest.raises(ValueError, match="attempt 3") as info:
        always_fails(7)
    assert calls == [7, 7, 7]
    assert fake.waits == [0.5, 1.0]  # 1.5 capped by max_delay
    assert info.value.__notes__ == ["cadence.retry: 'always_fails' gave up after 3 of 3 attempts"]


def test_retry_only_what_on_names(fake: FakeClock) -> None:
    calls = 0

    @retry(max_attempts=5, delay=0, on=(ConnectionError, TimeoutError))
    def wrong_kind() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("not retried")

    with pytest.raises(KeyError):
        wrong_kind()
    assert calls == 1

    @retry(max_attempts=5, delay=0, on=lambda error: "transient" in str(error))
    def by_predicate() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("permanent" if calls > 3 else "transient")

    calls = 0
    with pytest.raises(RuntimeError, match="permanent"):
        by_predicate()
    assert calls == 4


def test_retry_logs_and_reports_each_retry(
    fake: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[RetryEvent] = []

    @retry(max_attempts=3, delay=2.0, on_retry=events.append)
    def fails() -> None:
        raise OSError("down")

    with caplog.at_level(logging.WARNING, logger="cadence"), pytest.raises(OSError):
        fails()
    assert [(e.attempt, e.wait, type(e.error)) for e in events] == [
        (1, 2.0, OSError),
        (2, 4.0, OSError),
    ]
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert "retrying 'fails' (attempt 1 of 3 failed: OSError: down); next attempt in 2.000s" in (
        caplog.records[0].getMessage()
    )


def test_retry_max_time_stops_early(fake: FakeClock) -> None:
    calls = 0

    @retry(max_attempts=10, delay=1.0, backoff=2.0, max_time=5.0)
    def fails() -> None:
        nonlocal calls
        calls += 1
        raise OSError

    with pytest.raises(OSError) as info:
        fails()
    assert fake.waits == [1.0, 2.0]  # the next wait (4.0) would end at 7.0 > 5.0
    assert calls == 3
    assert "gave up after 3 of 10 attempts" in info.value.__notes__[0]


def test_retry_jitter_stays_within_bounds(fake: FakeClock) -> None:
    @retry(max_attempts=30, delay=1.0, backoff=1.0, jitter=0.25)
    def fails() -> None:
        raise OSError

    with pytest.raises(OSError):
        fails()
    assert len(fake.waits) == 29
    assert all(0.75 <= w <= 1.25 for w in fake.waits)
    assert len(set(fake.waits)) > 1


def test_testing_switch_makes_retries_instant() -> None:
    calls = 0

    @retry(max_attempts=3, delay=3600.0)
    def fails() -> None:
        nonlocal calls
        calls += 1
        raise OSError

    set_testing()
    try:
        assert is_testing()
        with pytest.raises(OSError):
            fails()
    finally:
        set_testing(False)
    assert calls == 3
    assert not is_testing()


@pytest.mark.anyio
async def test_cancellation_is_never_retried(fake: FakeClock) -> None:
    calls = 0

    @retry(max_attempts=5, delay=0)
    async def hangs() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep_forever()

    with anyio.move_on_after(0.01):
        await hangs()
    assert calls == 1


# --------------------------------------------------------------------------- timeout


@pytest.mark.anyio
async def test_timeout_cancels_an_async_beat_and_runs_its_cleanup() -> None:
    cleaned = False

    @timeout(seconds=0.02)
    @beat
    async def slow_operation(ctx: Ctx) -> None:
        nonlocal cleaned
        try:
            await anyio.sleep(5)
        finally:
            cleaned = True

    with pytest.raises(BeatError) as info:
        await Cadence("c", Ctx()).then("slow", slow_operation).run()
    cause = info.value.__cause__
    assert isinstance(cause, BeatTimeoutError)
    assert isinstance(cause, TimeoutError)
    assert (cause.beat_name, cause.seconds) == ("slow_operation", 0.02)
    assert cleaned


@pytest.mark.anyio
async def test_timeout_passes_results_errors_and_outer_cancellation_through() -> None:
    @timeout(1.0)
    async def quick(x: int) -> int:
        return x + 1

    @timeout(1.0)
    async def fails() -> None:
        raise TimeoutError("the function's own")

    assert await quick(1) == 2
    with pytest.raises(TimeoutError, match="the function's own") as info:
        await fails()
    assert not isinstance(info.value, BeatTimeoutError)

    @timeout(10.0)
    async def forever() -> None:
        await anyio.sleep_forever()

    with anyio.move_on_after(0.01) as scope:
        await forever()
    assert scope.cancelled_caught  # the outer scope's cancellation, not a BeatTimeoutError


def test_timeout_on_a_sync_function_releases_the_caller() -> None:
    release = threading.Event()
    before = abandoned_threads()

    @timeout(0.02)
    def blocked() -> None:
        release.wait(5)

    @timeout(1.0)
    def quick(x: int) -> int:
        return x * 2

    assert quick(4) == 8
    started = time.monotonic()
    with pytest.raises(BeatTimeoutError, match=r"'blocked' timed out after 0\.02s"):
        blocked()
    assert time.monotonic() - started < 1.0
    assert abandoned_threads() == before + 1
    release.set()
    deadline = time.monotonic() + 5
    while abandoned_threads() != before and time.monotonic() < deadline:
        time.sleep(0.001)
    assert abandoned_threads() == before


# --------------------------------------------------------------------------- fallback


@pytest.mark.anyio
async def test_fallback_mapping_default_sets_fields_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @fallback(default={"status": "unknown"})
    @beat
    async def get_status(ctx: Ctx) -> None:
        raise ConnectionError("status service down")

    async def after(ctx: Ctx) -> None:
        ctx.data = 1

    with caplog.at_level(logging.WARNING, logger="cadence"):
        result = await Cadence("c", Ctx()).then("status", get_status).then("after", after).run()
    assert (result.status, result.data) == ("unknown", 1)
    assert "'get_status' failed (ConnectionError: status service down); falling back" in caplog.text


@pytest.mark.anyio
async def test_fallback_field_and_handler_forms() -> None:
    @fallback(default=-1, field="data")
    def count(ctx: Ctx) -> None:
        raise ValueError

    @fallback(handler=lambda ctx, error: f"failed: {type(error).__name__}", field="status")
    async def describe(ctx: Ctx) -> None:
        raise KeyError("k")

    result = await Cadence("c", Ctx()).then("count", count).then("describe", describe).run()
    assert (result.data, result.status) == (-1, "failed: KeyError")


@pytest.mark.anyio
async def test_fallback_on_plain_functions_evaluates_to_the_default() -> None:
    @fallback(default=[])
    async def fetch(url: str) -> list[str]:
        raise OSError(url)

    @fallback(default=0, on=ZeroDivisionError)
    def ratio(a: int, b: int) -> float:
        return a / b

    assert await fetch("http://example.invalid") == []
    assert ratio(1, 0) == 0
    assert ratio(1, 2) == 0.5


def test_fallback_lets_other_errors_through() -> None:
    @fallback(default=0, on=ZeroDivisionError)
    def broken() -> int:
        raise KeyError("k")

    with pytest.raises(KeyError):
        broken()


@dataclass(frozen=True)
class Frozen(ImmutableContext):
    status: str = ""


@pytest.mark.anyio
async def test_fallback_on_an_immutable_context_returns_the_new_context() -> None:
    @fallback(default="unknown", field="status")
    async def get(ctx: Frozen) -> Frozen:
        raise OSError

    assert await Cadence("c", Frozen()).then("get", get).run() == Frozen("unknown")


@pytest.mark.anyio
async def test_fallback_cancellation_is_never_replaced() -> None:
    @fallback(default=1)
    async def hangs() -> int:
        await anyio.sleep_forever()
        return 0

    with anyio.move_on_after(0.01) as scope:
        await hangs()
    assert scope.cancelled_caught


def test_fallback_checks_fields_against_the_annotated_context() -> None:
    with pytest.raises(ValueError, match="Ctx has no field 'stats'; did you mean 'status'"):

        @fallback(default="x", field="stats")
        def beat_one(ctx: Ctx) -> None: ...

    with pytest.raises(ValueError, match="Ctx has no field 'stat'"):

        @fallback(default={"stat": 1})
        def beat_two(ctx: Ctx) -> None: ...


# --------------------------------------------------------------------------- circuit breaker


@pytest.mark.anyio
async def test_breaker_opens_fails_fast_probes_and_closes(fake: FakeClock) -> None:
    healthy = False

    @circuit_breaker(failure_threshold=2, recovery_timeout=30.0)
    @beat
    async def call_fragile_service(ctx: Ctx) -> None:
        if not healthy:
            raise ConnectionError("down")
        ctx.data = 1

    breaker = get_circuit_breaker(call_fragile_service)
    changes: list[tuple[CircuitState, CircuitState]] = []
    breaker.add_listener(lambda b, old, new: changes.append((old, new)))
    cadence = Cadence("c", Ctx()).then("call", call_fragile_service)
    for _ in range(2):
        with pytest.raises(BeatError):
            await cadence.run()
    assert breaker.state is CircuitState.OPEN
    fake.now += 10
    with pytest.raises(BeatError) as info:
        await cadence.run()
    cause = info.value.__cause__
    assert isinstance(cause, CircuitOpenError)
    assert cause.retry_after == pytest.approx(20.0)
    assert breaker.retry_after == pytest.approx(20.0)
    fake.now += 20
    assert breaker.state is CircuitState.HALF_OPEN
    healthy = True
    assert (await cadence.run()).data == 1
    assert breaker.state is CircuitState.CLOSED
    assert changes == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]
    assert breaker.stats.calls == 4
    assert (breaker.stats.successes, breaker.stats.failures, breaker.stats.rejections) == (1, 2, 1)


def test_breaker_failed_probe_reopens(fake: FakeClock) -> None:
    breaker = CircuitBreaker("probe", failure_threshold=1, recovery_timeout=5.0)

    @breaker
    def fails() -> None:
        raise OSError

    with pytest.raises(OSError):
        fails()
    fake.now += 5
    with pytest.raises(OSError):
        fails()  # the probe
    assert breaker.state is CircuitState.OPEN
    assert breaker.retry_after == pytest.approx(5.0)


def test_breaker_failure_rate_rule_and_excluded_exceptions(fake: FakeClock) -> None:
    breaker = CircuitBreaker(
        "rate",
        failure_threshold=100,
        failure_rate_threshold=0.5,
        sliding_window=4,
        minimum_calls=4,
        exclude=(KeyError,),
    )

    @breaker
    def call(outcome: str) -> None:
        if outcome == "fail":
            raise OSError
        if outcome == "excluded":
            raise KeyError

    for outcome in ["ok", "fail", "excluded", "ok"]:
        with contextlib.suppress(OSError, KeyError):
            call(outcome)
    assert breaker.state is CircuitState.CLOSED  # 3 counted calls: below minimum_calls
    with pytest.raises(OSError):
        call("fail")  # 2 failures of 4
    assert breaker.state is CircuitState.OPEN
    assert breaker.stats.ignored == 1


def test_breaker_manual_control_and_shared_names(fake: FakeClock) -> None:
    @circuit_breaker(name="payments-test", failure_threshold=3)
    def charge() -> str:
        return "charged"

    @circuit_breaker(name="payments-test", failure_threshold=3)
    def refund() -> str:
        return "refunded"

    breaker = get_circuit_breaker("payments-test")
    assert get_circuit_breaker(charge) is breaker is get_circuit_breaker(refund)
    breaker.open()
    with pytest.raises(CircuitOpenError):
        refund()
    breaker.close()
    assert charge() == "charged"
    breaker.reset()
    assert breaker.stats.calls == 0
    with pytest.raises(ValueError, match="a breaker named 'payments-test' already exists"):
        circuit_breaker(name="payments-test", failure_threshold=4)
    with pytest.raises(LookupError, match="no circuit breaker is named 'nope'"):
        get_circuit_breaker("nope")


# --------------------------------------------------------------------------- shared


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: retry(max_attempts=0), r"retry: max_attempts must be an int >= 1, got 0"),
        (lambda: retry(delay=-1), r"retry: delay must be >= 0, got -1"),
        (lambda: retry(backoff=0.5), r"retry: backoff must be >= 1, got 0.5"),
        (lambda: retry(jitter=2), r"retry: jitter must be <= 1, got 2"),
        (lambda: retry(max_time=0), r"retry: max_time must be > 0, got 0"),
        (lambda: retry(on=("x",)), r"retry: on must be exception types, got 'x'"),  # type: ignore[arg-type]
        (lambda: timeout(seconds=0), r"timeout: seconds must be > 0, got 0"),
        (lambda: timeout(seconds=-1.5), r"timeout: seconds must be > 0, got -1.5"),
        (fallback, r"fallback: give exactly one of default=... or handler=..."),
        (lambda: fallback(1, handler=lambda c, e: 2), r"give exactly one of"),
        (lambda: fallback(1, field=""), r"fallback: field must be a non-empty string"),
        (
            lambda: circuit_breaker(failure_threshold=0),
            r"circuit_breaker: failure_threshold must be an int >= 1, got 0",
        ),
        (
            lambda: circuit_breaker(recovery_timeout=0),
            r"circuit_breaker: recovery_timeout must be > 0, got 0",
        ),
        (
            lambda: circuit_breaker(half_open_max_calls=0),
            r"half_open_max_calls must be an int >= 1, got 0",
        ),
        (
            lambda: circuit_breaker(failure_rate_threshold=1.5),
            r"failure_rate_threshold must be <= 1, got 1.5",
        ),
        (
            lambda: circuit_breaker(minimum_calls=200),
            r"minimum_calls must be <= sliding_window \(100\), got 200",
        ),
    ],
)
def test_wrong_arguments_fail_when_decorating(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "decorator",
    [
        retry(),
        timeout(1.0),
        fallback(None),
        circuit_breaker(),
    ],
    ids=["retry", "timeout", "fallback", "circuit_breaker"],
)
@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
def test_decorators_keep_name_signature_docs_and_kind(decorator: Any, is_async: bool) -> None:
    if is_async:

        async def original(ctx: Ctx, *, flag: bool = False) -> None:
            """Docstring kept."""

    else:

        def original(ctx: Ctx, *, flag: bool = False) -> None:  # type: ignore[misc]
            """Docstring kept."""

    marked = beat(name="named")(original)
    wrapped = decorator(marked)
    assert wrapped.__name__ == "original"
    assert wrapped.__doc__ == "Docstring kept."
    assert inspect.signature(wrapped) == inspect.signature(original)
    assert inspect.iscoroutinefunction(wrapped) is is_async
    assert wrapped.__wrapped__ is marked  # `@beat` marks a copy; the decorator wraps that
    assert Cadence("c", Ctx()).sync("p", [wrapped]).steps[0].beats[0].name == "named"  # type: ignore[union-attr]
