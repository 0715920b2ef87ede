"""`@timeout` under load: many async deadlines at once, many abandoned sync threads, the cap.

Tolerances. A deadline can fire late, never early, by the scheduling lag of the process: with
1,000 timers expiring in the same instant, each cancelled task must still be resumed, run its
cleanup and raise, one at a time on one event loop; 100 blocked sync calls mean 200 threads
competing for the GIL. On a loaded CI machine that lag reaches tens, rarely hundreds, of
milliseconds, so each call may end up to 0.5 s past its deadline, and the median (which a few
stragglers cannot move) must stay within 0.1 s of it. The lower bound allows 1 ms below the
deadline because the test reads `time.perf_counter` while the backends read their own clocks
(asyncio's `loop.time()`, trio's clock), which may round differently. The timed tests start
with `gc.collect()`: a full collection of garbage left by earlier tests (100,000 objects after
the breaker stress tests) pauses every thread for about 0.1 s, which would be measured here as
a late deadline.
"""

from __future__ import annotations

import gc
import statistics
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import anyio
import anyio.lowlevel
import pytest

from cadence import BeatError, BeatTimeoutError, Cadence, Context, beat
from cadence.resilience import abandoned_threads, set_abandoned_thread_limit, timeout

DEADLINE = 0.05
LATE = 0.5  # the most a single call may end past its deadline under load
MEDIAN_LATE = 0.1  # the most the median may
EARLY = 0.001  # clock-source rounding


def check_on_time(elapsed: list[float]) -> None:
    late = [e for e in elapsed if not DEADLINE - EARLY <= e < DEADLINE + LATE]
    window = f"[{DEADLINE - EARLY}, {DEADLINE + LATE})"
    assert late == [], f"{len(late)} calls outside {window}: {late[:5]}"
    median = statistics.median(elapsed)
    assert DEADLINE - EARLY <= median < DEADLINE + MEDIAN_LATE, f"median {median:.4f}s"


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll `condition` every millisecond until it holds or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


# ----------------------------------------------------------------------------- (a) async

ASYNC_CALLS = 1_000


@pytest.mark.anyio
async def test_1000_async_timeouts_end_on_time_and_clean_up_once() -> None:
    cleanups = [0] * ASYNC_CALLS
    elapsed: list[float] = []
    errors: list[BeatTimeoutError] = []
    carried_on = 0

    @timeout(DEADLINE)
    async def slow(index: int) -> None:
        try:
            await anyio.sleep(10)
        finally:
            cleanups[index] += 1

    async def one(index: int) -> None:
        nonlocal carried_on
        start = time.perf_counter()
        try:
            await slow(index)
        except BeatTimeoutError as error:
            elapsed.append(time.perf_counter() - start)
            errors.append(error)
        # the timeout's cancellation is spent: this task can still wait
        await anyio.lowlevel.checkpoint()
        await anyio.sleep(0.001)
        carried_on += 1

    gc.collect()
    with anyio.fail_after(60):  # a lost cancellation would hang the group, not the suite
        async with anyio.create_task_group() as group:
            for index in range(ASYNC_CALLS):
                group.start_soon(one, index)

    assert len(elapsed) == ASYNC_CALLS
    assert cleanups == [1] * ASYNC_CALLS
    assert carried_on == ASYNC_CALLS
    assert all(e.beat_name == "slow" and e.seconds == DEADLINE for e in errors)
    assert all(isinstance(e, TimeoutError) for e in errors)
    check_on_time(elapsed)


@pytest.mark.anyio
async def test_an_async_call_within_its_deadline_is_untouched() -> None:
    finished = 0

    @timeout(1.0)
    async def quick(index: int) -> int:
        nonlocal finished
        await anyio.sleep(0.001)
        finished += 1
        return index

    results: list[int] = []

    async def one(index: int) -> None:
        results.append(await quick(index))

    async with anyio.create_task_group() as group:
        for index in range(ASYNC_CALLS):
            group.start_soon(one, index)
    assert sorted(results) == list(range(ASYNC_CALLS))
    assert finished == ASYNC_CALLS


@pytest.mark.anyio
async def test_an_outer_cancellation_passes_through_1000_timeouts() -> None:
    cleanups = [0] * ASYNC_CALLS
    timed_out = 0
    cancelled = 0

    @timeout(10.0)
    async def slow(index: int) -> None:
        try:
            await anyio.sleep(10)
        finally:
            cleanups[index] += 1

    async def one(index: int) -> None:
        nonlocal timed_out, cancelled
        try:
            with anyio.move_on_after(DEADLINE) as scope:
                await slow(index)
        except BeatTimeoutError:
            timed_out += 1
        if scope.cancelled_caught:
            cancelled += 1

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            for index in range(ASYNC_CALLS):
                group.start_soon(one, index)
    assert (timed_out, cancelled) == (0, ASYNC_CALLS)
    assert cleanups == [1] * ASYNC_CALLS


# ----------------------------------------------------------------------------- (b) sync

SYNC_CALLS = 100


@pytest.fixture
def thread_limit() -> Generator[Callable[[int], None], None, None]:
    """Set the abandoned-thread cap for one test; restore it afterwards."""
    previous: list[int] = []

    def set_limit(limit: int) -> None:
        old = set_abandoned_thread_limit(limit)
        if not previous:
            previous.append(old)

    try:
        yield set_limit
    finally:
        if previous:
            set_abandoned_thread_limit(previous[0])


@dataclass
class Blocked:
    """A sync function that blocks until released, counting its runs."""

    release: threading.Event
    runs: int = 0
    finished: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def body(self) -> str:
        with self.lock:
            self.runs += 1
        self.release.wait(30)
        with self.lock:
            self.finished += 1
        return "late"


def test_100_blocked_sync_calls_release_their_callers_on_time(
    thread_limit: Callable[[int], None],
) -> None:
    baseline = abandoned_threads()
    thread_limit(baseline + SYNC_CALLS + 10)
    blocked = Blocked(threading.Event())
    stuck = timeout(DEADLINE)(blocked.body)
    elapsed: list[float] = []
    outcomes: list[object] = []
    lock = threading.Lock()
    start_together = threading.Barrier(SYNC_CALLS)

    def caller() -> None:
        start_together.wait()
        start = time.perf_counter()
        try:
            outcome: object = stuck()
        except BeatTimeoutError as error:
            outcome = error
        took = time.perf_counter() - start
        with lock:
            elapsed.append(took)
            outcomes.append(outcome)

    callers = [threading.Thread(target=caller) for _ in range(SYNC_CALLS)]
    gc.collect()
    try:
        for thread in callers:
            thread.start()
        for thread in callers:
            thread.join(30)
        assert not any(t.is_alive() for t in callers)
        assert len(outcomes) == SYNC_CALLS
        assert all(isinstance(o, BeatTimeoutError) for o in outcomes), outcomes[:3]
        assert all(o.__cause__ is None for o in outcomes if isinstance(o, BaseException))
        check_on_time(elapsed)
        assert abandoned_threads() == baseline + SYNC_CALLS
        assert blocked.runs == SYNC_CALLS
        assert blocked.finished == 0
    finally:
        blocked.release.set()
    assert wait_until(lambda: abandoned_threads() == baseline), abandoned_threads()
    assert wait_until(lambda: blocked.finished == SYNC_CALLS)


def test_a_sync_call_within_its_deadline_returns_its_value() -> None:
    @timeout(5.0)
    def quick(x: int) -> int:
        return x * 2

    @timeout(5.0)
    def fails() -> None:
        raise KeyError("inner")

    baseline = abandoned_threads()
    assert quick(21) == 42
    with pytest.raises(KeyError, match="inner"):
        fails()
    assert abandoned_threads() == baseline


@dataclass
class Slowpoke(Context):
    done: bool = False


@pytest.mark.anyio
async def test_a_timed_out_sync_beat_fails_its_step(thread_limit: Callable[[int], None]) -> None:
    baseline = abandoned_threads()
    thread_limit(baseline + 10)
    release = threading.Event()

    @beat(name="stuck")
    @timeout(DEADLINE)
    def stuck(ctx: Slowpoke) -> None:
        release.wait(30)
        ctx.done = True

    @beat(name="sibling")
    def sibling(ctx: Slowpoke) -> None:
        pass

    cadence = Cadence("slow", Slowpoke()).sync("both", [stuck, sibling])
    try:
        start = time.perf_counter()
        with pytest.raises(BeatError) as failed:
            await cadence.run()
        assert time.perf_counter() - start < DEADLINE + LATE
        assert failed.value.beat_name == "both.stuck"
        assert isinstance(failed.value.__cause__, BeatTimeoutError)
        assert failed.value.__cause__.beat_name == "stuck"
        assert abandoned_threads() == baseline + 1
    finally:
        release.set()
    assert wait_until(lambda: abandoned_threads() == baseline)


# ----------------------------------------------------------------------------- (c) the cap


def test_a_call_over_the_cap_fails_at_once_without_running(
    thread_limit: Callable[[int], None],
) -> None:
    baseline = abandoned_threads()
    cap = baseline + 3
    thread_limit(cap)
    blocked = Blocked(threading.Event())
    stuck = timeout(DEADLINE)(blocked.body)
    try:
        for _ in range(3):  # fill the cap, one abandoned thread at a time
            with pytest.raises(BeatTimeoutError) as timed_out:
                stuck()
            assert timed_out.value.__cause__ is None
        assert abandoned_threads() == cap
        assert blocked.runs == 3

        start = time.perf_counter()
        with pytest.raises(BeatTimeoutError) as refused:
            stuck()
        took = time.perf_counter() - start
        assert took < DEADLINE, f"a refused call waited {took:.3f}s"
        assert blocked.runs == 3  # the function did not run
        assert abandoned_threads() == cap
        cause = refused.value.__cause__
        assert isinstance(cause, RuntimeError)
        assert f"timed sync calls hold {cap} threads ({cap} of them abandoned" in str(cause)
        assert "set_abandoned_thread_limit" in str(cause)
        assert refused.value.beat_name == "body"
        assert refused.value.seconds == DEADLINE
    finally:
        blocked.release.set()
    assert wait_until(lambda: abandoned_threads() == baseline)

    # below the cap again: calls run (and finish in time now that nothing blocks)
    assert stuck() == "late"
    assert blocked.runs == 4


CONCURRENT_CALLERS = 16
SMALL_CAP = 4


def test_concurrent_calls_do_not_overshoot_the_cap(thread_limit: Callable[[int], None]) -> None:
    """The abandoned threads are "capped": concurrent callers must not pile up past the cap.

    16 callers reach a stuck function at once, under a cap of 4 abandoned threads. Each call is
    checked against the cap when it starts, while no thread is abandoned yet, so today every
    call starts and all 16 are abandoned: the cap bounds abandoned threads only by the number of
    concurrent callers (a server with 1,000 requests on a stuck dependency abandons 1,000
    threads under the default cap of 64).
    """
    baseline = abandoned_threads()
    cap = baseline + SMALL_CAP
    thread_limit(cap)
    blocked = Blocked(threading.Event())
    stuck = timeout(DEADLINE)(blocked.body)
    outcomes: list[BaseException] = []
    lock = threading.Lock()
    start_together = threading.Barrier(CONCURRENT_CALLERS)

    def caller() -> None:
        start_together.wait()
        try:
            stuck()
        except BeatTimeoutError as error:
            with lock:
                outcomes.append(error)

    callers = [threading.Thread(target=caller) for _ in range(CONCURRENT_CALLERS)]
    try:
        for thread in callers:
            thread.start()
        for thread in callers:
            thread.join(30)
        assert len(outcomes) == CONCURRENT_CALLERS  # every caller got its BeatTimeoutError
        abandoned = abandoned_threads()
        refused = sum(isinstance(e.__cause__, RuntimeError) for e in outcomes)
        assert abandoned <= cap, (
            f"{abandoned - baseline} threads abandoned under a cap of {SMALL_CAP}; "
            f"{refused} of {CONCURRENT_CALLERS} calls refused"
        )
        assert blocked.runs == abandoned - baseline  # a refused call never ran
    finally:
        blocked.release.set()
    assert wait_until(lambda: abandoned_threads() == baseline)


def test_the_cap_is_restored_and_checked() -> None:
    previous = set_abandoned_thread_limit(7)
    try:
        assert set_abandoned_thread_limit(previous) == 7
    finally:
        set_abandoned_thread_limit(previous)
    with pytest.raises(ValueError, match="limit"):
        set_abandoned_thread_limit(0)
