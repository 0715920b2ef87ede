"""Properties of `@retry`, checked with hypothesis against a fake clock.

The fake clock's `monotonic` moves only when the retry sleeps (or when a test's function says
that an attempt took time), so every wait is observed exactly and no example waits for real.
Async examples run on asyncio and on trio (the anyio pytest plugin drives each example).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence.resilience import (
    Clock,
    RetryEvent,
    get_clock,
    is_testing,
    retry,
    set_testing,
    use_clock,
)

props = settings(max_examples=150, deadline=None)


class Transient(Exception):
    """The failure every example's retry is configured for."""


class Other(Exception):
    """A failure no example retries."""


@dataclass
class FakeTime:
    """A clock whose time moves only by the sleeps it is asked for (and by `spend`)."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)
    async_sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.async_sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()

    def spend(self, seconds: float) -> None:
        """Let `seconds` pass inside an attempt (the function's own running time)."""
        self.now += seconds

    def clock(self) -> Clock:
        return Clock(monotonic=self.monotonic, sleep=self.sleep, async_sleep=self.async_sleep)


# ----------------------------------------------------------------------------- the model

ON_CHOICES: dict[str, Any] = {  # Any: the three shapes `on=` accepts
    "type": Transient,
    "tuple": (KeyError, Transient),
    "predicate": lambda error: isinstance(error, Transient),
}


@dataclass(frozen=True)
class Params:
    max_attempts: int
    delay: float
    backoff: float
    max_delay: float | None
    jitter: float
    on: str
    outcomes: tuple[str, ...]  # "T" (retryable) or "O" (not), one per failing call, then success

    def decorator(self, events: list[RetryEvent]) -> Callable[[Any], Any]:
        return retry(
            self.max_attempts,
            self.delay,
            self.backoff,
            max_delay=self.max_delay,
            jitter=self.jitter,
            on=ON_CHOICES[self.on],
            on_retry=events.append,
        )


def nominal_wait(p: Params | BudgetParams, attempt: int) -> float:
    """The documented n-th wait before jitter: delay * backoff ** (n - 1), capped at max_delay."""
    wait: float = p.delay * p.backoff ** (attempt - 1)
    if p.max_delay is not None:
        wait = min(wait, p.max_delay)
    return wait


@dataclass(frozen=True)
class Expected:
    calls: int
    waits: tuple[float, ...]  # before jitter
    raised: str | None  # None (returned), "T" or "O"


def expect(p: Params) -> Expected:
    """What the documentation says happens: retry `on` failures until max_attempts."""
    waits: list[float] = []
    for attempt, outcome in enumerate([*p.outcomes, "ok"], start=1):
        if outcome == "ok":
            return Expected(attempt, tuple(waits), None)
        if outcome == "O" or attempt >= p.max_attempts:
            return Expected(attempt, tuple(waits), outcome)
        waits.append(nominal_wait(p, attempt))
    raise AssertionError("unreachable")  # pragma: no cover


@st.composite
def retry_params(draw: st.DrawFn) -> Params:
    return Params(
        max_attempts=draw(st.integers(1, 6)),
        delay=draw(st.sampled_from([0.0, 0.1, 1.0, 2.0]) | st.floats(0, 2)),
        backoff=draw(st.sampled_from([1.0, 2.0, 3.0]) | st.floats(1, 3)),
        max_delay=draw(st.none() | st.sampled_from([0.0, 0.5, 2.0]) | st.floats(0, 2)),
        jitter=draw(st.sampled_from([0.0, 1.0]) | st.floats(0, 1)),
        on=draw(st.sampled_from(sorted(ON_CHOICES))),
        outcomes=tuple(draw(st.lists(st.sampled_from("TTTO"), max_size=8))),
    )


class Script:
    """A function body that fails as `outcomes` says, one entry per call, then returns "ok"."""

    def __init__(self, outcomes: Sequence[str], fake: FakeTime, work: Sequence[float] = ()) -> None:
        self.outcomes = outcomes
        self.fake = fake
        self.work = work
        self.errors: list[Exception] = []
        self.calls = 0

    def step(self) -> str:
        index = self.calls
        self.calls += 1
        if index < len(self.work):
            self.fake.spend(self.work[index])
        if index < len(self.outcomes):
            error = Transient(index) if self.outcomes[index] == "T" else Other(index)
            self.errors.append(error)
            raise error
        return "ok"


def check_waits(p: Params, waits: Sequence[float], expected: Expected) -> None:
    assert len(waits) == len(expected.waits) == expected.calls - 1
    for actual, nominal in zip(waits, expected.waits, strict=True):
        if p.jitter == 0:
            assert actual == nominal
        else:
            slack = 1e-9 * max(1.0, nominal)
            assert nominal * (1 - p.jitter) - slack <= actual <= nominal * (1 + p.jitter) + slack


def check_outcome(
    p: Params,
    script: Script,
    *,
    waits: Sequence[float],
    events: Sequence[RetryEvent],
    outcome: object,
    name: str,
) -> None:
    expected = expect(p)
    assert script.calls == expected.calls
    check_waits(p, waits, expected)
    assert [e.attempt for e in events] == list(range(1, expected.calls))
    assert [e.wait for e in events] == list(waits)
    assert all(e.max_attempts == p.max_attempts and e.name == name for e in events)
    assert [e.error for e in events] == script.errors[: len(events)]
    if expected.raised is None:
        assert outcome == "ok"
        return
    assert isinstance(outcome, Exception)
    assert outcome is script.errors[-1]
    if expected.raised == "T":
        assert isinstance(outcome, Transient)
        assert outcome.__notes__ == [
            f"cadence.retry: {name!r} gave up after {p.max_attempts} of {p.max_attempts} attempts"
        ]
    else:
        assert isinstance(outcome, Other)


# ----------------------------------------------------------------------------- properties


@props
@given(p=retry_params())
def test_sync_retry_follows_the_documented_schedule(p: Params) -> None:
    fake = FakeTime()
    script = Script(p.outcomes, fake)
    events: list[RetryEvent] = []

    @p.decorator(events)
    def flaky() -> str:
        return script.step()

    outcome: object
    with use_clock(fake.clock()):
        try:
            outcome = flaky()
        except Exception as error:
            outcome = error
    assert fake.async_sleeps == []
    check_outcome(p, script, waits=fake.sleeps, events=events, outcome=outcome, name="flaky")


@pytest.mark.anyio
@props
@given(p=retry_params())
async def test_async_retry_follows_the_documented_schedule(p: Params) -> None:
    fake = FakeTime()
    script = Script(p.outcomes, fake)
    events: list[RetryEvent] = []

    @p.decorator(events)
    async def flaky() -> str:
        await anyio.lowlevel.checkpoint()
        return script.step()

    outcome: object
    with use_clock(fake.clock()):
        try:
            outcome = await flaky()
        except Exception as error:
            outcome = error
    assert fake.sleeps == []
    check_outcome(p, script, waits=fake.async_sleeps, events=events, outcome=outcome, name="flaky")


# ----------------------------------------------------------------------------- max_time


@dataclass(frozen=True)
class BudgetParams:
    max_attempts: int
    delay: float
    backoff: float
    max_delay: float | None
    max_time: float
    work: tuple[float, ...]  # how long each attempt takes (fake seconds)


@st.composite
def budget_params(draw: st.DrawFn) -> BudgetParams:
    return BudgetParams(
        max_attempts=draw(st.integers(1, 6)),
        delay=draw(st.sampled_from([0.0, 0.5, 1.0, 2.0]) | st.floats(0, 2)),
        backoff=draw(st.sampled_from([1.0, 2.0, 3.0]) | st.floats(1, 3)),
        max_delay=draw(st.none() | st.sampled_from([0.5, 2.0])),
        max_time=draw(st.sampled_from([0.5, 1.0, 2.5, 4.0, 10.0]) | st.floats(0.01, 10)),
        # the first attempt takes no time: where the budget starts is pinned by its own test below
        work=(0.0, *draw(st.lists(st.sampled_from([0.0, 0.25, 1.0]), min_size=5, max_size=5))),
    )


def expect_budget(b: BudgetParams) -> tuple[int, list[float]]:
    """Calls and waits of an always-failing function under `max_time`, as documented.

    "max_time: Seconds the attempts and waits may take in all; a retry whose wait would end past
    it is not made." The running time of every attempt counts, waits as well.
    """
    now = 0.0
    waits: list[float] = []
    for attempt in range(1, b.max_attempts + 1):
        now += b.work[attempt - 1]
        if attempt == b.max_attempts:
            return attempt, waits
        wait = nominal_wait(b, attempt)
        if now + wait - 0.0 > b.max_time:
            return attempt, waits
        waits.append(wait)
        now += wait
    raise AssertionError("unreachable")  # pragma: no cover


def budget_decorator(b: BudgetParams) -> Callable[[Any], Any]:
    return retry(
        b.max_attempts, b.delay, b.backoff, max_delay=b.max_delay, on=Transient, max_time=b.max_time
    )


@props
@given(b=budget_params())
def test_sync_max_time_stops_retries_whose_wait_ends_past_the_budget(b: BudgetParams) -> None:
    fake = FakeTime()
    script = Script("T" * 6, fake, b.work)

    @budget_decorator(b)
    def failing() -> str:
        return script.step()

    with use_clock(fake.clock()), pytest.raises(Transient) as caught:
        failing()
    calls, waits = expect_budget(b)
    assert (script.calls, fake.sleeps) == (calls, waits)
    assert caught.value is script.errors[-1]
    assert caught.value.__notes__ == [
        f"cadence.retry: 'failing' gave up after {calls} of {b.max_attempts} attempts"
    ]


@pytest.mark.anyio
@props
@given(b=budget_params())
async def test_async_max_time_stops_retries_whose_wait_ends_past_the_budget(
    b: BudgetParams,
) -> None:
    fake = FakeTime()
    script = Script("T" * 6, fake, b.work)

    @budget_decorator(b)
    async def failing() -> str:
        await anyio.lowlevel.checkpoint()
        return script.step()

    with use_clock(fake.clock()), pytest.raises(Transient):
        await failing()
    assert (script.calls, fake.async_sleeps) == expect_budget(b)


def test_max_time_counts_the_first_attempts_running_time() -> None:
    """The smallest case of the budget rule: a slow first attempt leaves no room for a retry.

    `retry`'s docstring says "max_time: Seconds the attempts and waits may take in all", and
    docs/resilience/retry.md's table "seconds all attempts and waits may take together": the
    first attempt is one of them. Its 1.0 s leaves 0.5 s of a 1.5 s budget; the 1.0 s wait would
    end at 2.0 s, past the budget, so no retry is made. (The same page's bullet says the budget is
    "measured from the first failure", which is what the code does: it then retries, and the
    call takes 3.0 s of its 1.5 s budget. The two statements need reconciling.)
    """
    fake = FakeTime()
    calls = 0

    @retry(max_attempts=3, delay=1.0, max_time=1.5)
    def slow_and_failing() -> None:
        nonlocal calls
        calls += 1
        fake.spend(1.0)
        raise Transient(calls)

    with use_clock(fake.clock()), pytest.raises(Transient):
        slow_and_failing()
    assert calls == 1, f"{calls} attempts, {fake.now} s spent of a 1.5 s budget"
    assert fake.now <= 1.5


@pytest.mark.parametrize("budget", [1.0, 1.5, 2.999])
def test_max_time_admits_a_wait_ending_on_or_before_the_budget(budget: float) -> None:
    fake = FakeTime()
    script = Script("TT", fake)

    @retry(max_attempts=3, delay=1.0, backoff=2.0, max_time=budget, on=Transient)
    def flaky() -> str:
        return script.step()

    with use_clock(fake.clock()), pytest.raises(Transient):
        flaky()
    # the first wait (1.0) ends at 1.0 <= budget; the second (2.0) would end at 3.0 > budget
    assert fake.sleeps == [1.0]
    assert script.calls == 2


def test_max_time_admits_a_wait_ending_exactly_on_the_budget() -> None:
    fake = FakeTime()
    script = Script("TT", fake)

    @retry(max_attempts=3, delay=1.0, backoff=2.0, max_time=3.0, on=Transient)
    def flaky() -> str:
        return script.step()

    with use_clock(fake.clock()):
        assert flaky() == "ok"
    assert fake.sleeps == [1.0, 2.0]


# ----------------------------------------------------------------------------- cancellation


@pytest.mark.anyio
@pytest.mark.parametrize(
    "on",
    [Exception, BaseException, lambda error: True],
    ids=["Exception", "BaseException", "predicate"],
)
async def test_a_cancelled_call_is_never_retried(on: Any) -> None:
    fake = FakeTime()
    calls = 0
    entered = anyio.Event()

    @retry(max_attempts=5, delay=0.0, on=on)
    async def hangs() -> None:
        nonlocal calls
        calls += 1
        entered.set()
        await anyio.sleep_forever()

    with use_clock(fake.clock()):
        async with anyio.create_task_group() as group:
            group.start_soon(hangs)
            await entered.wait()
            group.cancel_scope.cancel()
    assert calls == 1
    assert fake.async_sleeps == []


@pytest.mark.anyio
async def test_a_deadline_cancelling_a_call_is_not_retried() -> None:
    calls = 0

    @retry(max_attempts=5, delay=0.0, on=BaseException)
    async def hangs() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep_forever()

    with anyio.move_on_after(0.01) as scope:
        await hangs()
    assert scope.cancelled_caught
    assert calls == 1


@pytest.mark.anyio
async def test_a_cancelled_wait_ends_the_retries() -> None:
    calls = 0
    waiting = anyio.Event()

    async def endless_sleep(seconds: float) -> None:
        waiting.set()
        await anyio.sleep_forever()

    @retry(max_attempts=5, delay=1.0)
    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise Transient(calls)

    with use_clock(Clock(async_sleep=endless_sleep)):
        async with anyio.create_task_group() as group:
            group.start_soon(failing)
            await waiting.wait()
            group.cancel_scope.cancel()
    assert calls == 1


# ----------------------------------------------------------------------------- logging


def cadence_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "cadence" and r.levelno == logging.WARNING]


def test_each_sync_retry_logs_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime()
    script = Script("TTT", fake)

    @retry(max_attempts=5, delay=0.5, backoff=2.0)
    def flaky() -> str:
        return script.step()

    with caplog.at_level(logging.WARNING, logger="cadence"), use_clock(fake.clock()):
        assert flaky() == "ok"
    records = cadence_warnings(caplog)
    assert len(records) == 3
    for attempt, (record, wait) in enumerate(zip(records, [0.5, 1.0, 2.0], strict=True), 1):
        message = record.getMessage()
        assert "'flaky'" in message
        assert f"attempt {attempt} of 5 failed" in message
        assert f"Transient: {attempt - 1}" in message
        assert f"next attempt in {wait:.3f}s" in message


@pytest.mark.anyio
async def test_each_async_retry_logs_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime()
    script = Script("TT", fake)

    @retry(max_attempts=2, delay=0.5)
    async def flaky() -> str:
        return script.step()

    with (
        caplog.at_level(logging.WARNING, logger="cadence"),
        use_clock(fake.clock()),
        pytest.raises(Transient),
    ):
        await flaky()
    records = cadence_warnings(caplog)
    assert len(records) == 1  # two attempts, one retry
    assert "attempt 1 of 2 failed" in records[0].getMessage()


def test_no_warning_without_a_retry(caplog: pytest.LogCaptureFixture) -> None:
    @retry(max_attempts=3, on=Transient)
    def refuses() -> None:
        raise Other

    with caplog.at_level(logging.WARNING, logger="cadence"), pytest.raises(Other):
        refuses()
    assert cadence_warnings(caplog) == []


# ----------------------------------------------------------------------------- testing mode


@pytest.fixture
def testing_mode() -> Generator[None, None, None]:
    set_testing(True)
    try:
        yield
    finally:
        set_testing(False)


REAL_DELAY = 30.0  # a real wait this long would trip the timing assertions below


def test_testing_mode_makes_real_clock_retries_instant(testing_mode: None) -> None:
    assert is_testing()
    script = Script("TTT", FakeTime())

    @retry(max_attempts=4, delay=REAL_DELAY, backoff=2.0)
    def flaky() -> str:
        return script.step()

    start = time.perf_counter()
    assert flaky() == "ok"
    assert time.perf_counter() - start < 1.0
    assert script.calls == 4  # the attempts still happen


@pytest.mark.anyio
async def test_testing_mode_makes_async_retries_instant(testing_mode: None) -> None:
    script = Script("TTT", FakeTime())

    @retry(max_attempts=3, delay=REAL_DELAY)
    async def flaky() -> str:
        return script.step()

    start = time.perf_counter()
    with pytest.raises(Transient):
        await flaky()
    assert time.perf_counter() - start < 1.0
    assert script.calls == 3


def test_testing_mode_off_restores_the_real_clock() -> None:
    try:
        set_testing(True)
        assert get_clock() != Clock()
    finally:
        set_testing(False)
    assert not is_testing()
    assert get_clock() == Clock()


def test_use_clock_restores_the_previous_clock() -> None:
    before = get_clock()
    fake = FakeTime()
    with use_clock(fake.clock()) as clock:
        assert get_clock() is clock
    assert get_clock() is before
