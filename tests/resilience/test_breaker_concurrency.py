"""One circuit breaker under heavy concurrent use: threads hammering it, tasks racing a probe.

(a) 32 threads make 10,000 calls each through one breaker whose function fails at random (one
seeded RNG per thread), with a recovery timeout short enough that the circuit cycles through
all three states many times. Afterwards every call is accounted for, from the breaker's stats
and from the callers' own counts, and the function ran exactly once per admitted call. While the
circuit was half-open, never more probes ran at once than `half_open_max_calls`.

(b) 10,000 anyio tasks arrive at the instant a circuit turns half-open: exactly
`half_open_max_calls` are let through as probes, the rest are refused; when the probes succeed
the circuit closes. On asyncio and on trio.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import anyio
import pytest

from cadence import CircuitOpenError
from cadence.resilience import CircuitBreaker, CircuitState, CircuitStats, Clock

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN

THREADS = 32
CALLS_PER_THREAD = 10_000
SEED = 20240611


class Boom(Exception):
    """The guarded function's own failure."""


# ----------------------------------------------------------------------------- (a) threads


@dataclass
class Instruments:
    """What the guarded function sees from inside, kept under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    invocations: int = 0
    probes_in_flight: int = 0
    max_probes_in_half_open: int = 0
    probe_entries: int = 0


def spy_on_probes(breaker: CircuitBreaker, local: threading.local) -> None:
    """Record, per thread, whether the breaker admitted the current call as a probe.

    A call's probe-ness is only known to the breaker (a call admitted while closed may still be
    running when the circuit turns half-open), so the breaker's admission is observed on this
    instance, before decorating. Counting every call in flight instead would blame the breaker
    for closed-state calls that a 5 ms GIL switch interval kept alive into the half-open state.
    """
    acquire = breaker._acquire

    def observed_acquire() -> bool:
        probe = acquire()
        local.probe = probe
        return probe

    breaker._acquire = observed_acquire  # type: ignore[method-assign]


@pytest.mark.parametrize("half_open_max_calls", [1, 3])
def test_32_threads_every_call_accounted_for(half_open_max_calls: int) -> None:
    breaker = CircuitBreaker(
        f"threads-{half_open_max_calls}",
        failure_threshold=3,
        recovery_timeout=0.002,
        half_open_max_calls=half_open_max_calls,
        clock=Clock(),
    )
    transitions: Counter[tuple[CircuitState, CircuitState]] = Counter()
    transitions_lock = threading.Lock()

    def listener(b: CircuitBreaker, old: CircuitState, new: CircuitState) -> None:
        with transitions_lock:
            transitions[old, new] += 1

    breaker.add_listener(listener)
    local = threading.local()
    spy_on_probes(breaker, local)
    inside = Instruments()

    @breaker
    def call(fail: bool, pause: bool) -> str:
        probe = bool(getattr(local, "probe", False))
        with inside.lock:
            inside.invocations += 1
            if probe:
                inside.probes_in_flight += 1
                inside.probe_entries += 1
                if breaker._state is HALF_OPEN:  # read raw: `state` would move the circuit
                    inside.max_probes_in_half_open = max(
                        inside.max_probes_in_half_open, inside.probes_in_flight
                    )
        try:
            if pause:
                time.sleep(0)  # let go of the GIL mid-call, so calls overlap
            if fail:
                raise Boom
            return "ok"
        finally:
            if probe:
                with inside.lock:
                    inside.probes_in_flight -= 1

    counts = [Counter[str]() for _ in range(THREADS)]
    unexpected: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(index: int) -> None:
        rng = random.Random(SEED + index)
        mine = counts[index]
        start.wait()
        for _ in range(CALLS_PER_THREAD):
            roll = rng.random()
            try:
                call(roll < 0.3, roll > 0.9)
            except Boom:
                mine["raised"] += 1
            except CircuitOpenError:
                mine["refused"] += 1
            except BaseException as error:  # pragma: no cover # reported below
                unexpected.append(error)
            else:
                mine["returned"] += 1
            local.probe = False

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads)
    assert unexpected == []

    outside = sum(counts, Counter[str]())
    stats = breaker.stats
    total = THREADS * CALLS_PER_THREAD
    assert sum(outside.values()) == total
    assert stats.calls == total
    assert stats == CircuitStats(
        successes=outside["returned"],
        failures=outside["raised"],
        ignored=0,
        rejections=outside["refused"],
    )
    assert stats.successes + stats.failures + stats.rejections == total
    assert inside.invocations == stats.successes + stats.failures
    assert inside.probes_in_flight == 0
    assert breaker._probes == 0  # every probe slot was given back
    # the circuit really cycled, and probes really ran while half-open
    assert transitions[CLOSED, OPEN] > 0
    assert transitions[OPEN, HALF_OPEN] > 0
    assert transitions[HALF_OPEN, CLOSED] > 0
    assert inside.probe_entries > 0
    assert 1 <= inside.max_probes_in_half_open <= half_open_max_calls


# ----------------------------------------------------------------------------- (b) tasks

TASKS = 10_000


@dataclass
class FakeTime:
    now: float = 0.0

    def clock(self) -> Clock:
        return Clock(monotonic=lambda: self.now)


@pytest.mark.anyio
@pytest.mark.parametrize("half_open_max_calls", [1, 3])
async def test_10000_tasks_at_the_half_open_instant(half_open_max_calls: int) -> None:
    fake = FakeTime()
    breaker = CircuitBreaker(
        f"tasks-{half_open_max_calls}",
        failure_threshold=1,
        recovery_timeout=5.0,
        half_open_max_calls=half_open_max_calls,
        clock=fake.clock(),
    )
    transitions: list[tuple[CircuitState, CircuitState]] = []
    breaker.add_listener(lambda b, old, new: transitions.append((old, new)))
    release = anyio.Event()
    settled = anyio.Event()
    admitted = 0
    refused: list[float] = []  # retry_after of each refusal (not the errors: 10,000 cycles)
    returned = 0

    @breaker
    async def probe() -> str:
        nonlocal admitted
        admitted += 1
        note_settled()
        await release.wait()
        return "ok"

    def note_settled() -> None:
        if admitted + len(refused) == TASKS:
            settled.set()

    async def caller() -> None:
        nonlocal returned
        try:
            assert await probe() == "ok"
        except CircuitOpenError as error:
            refused.append(error.retry_after)
            note_settled()
        else:
            returned += 1

    breaker.open()
    fake.now = 5.0  # exactly the recovery timeout: the next call may probe
    async with anyio.create_task_group() as group:
        for _ in range(TASKS):
            group.start_soon(caller)
        with anyio.fail_after(60):
            await settled.wait()
        assert admitted == half_open_max_calls
        assert len(refused) == TASKS - half_open_max_calls
        assert set(refused) == {0.0}
        assert breaker.state is HALF_OPEN
        release.set()
    assert returned == half_open_max_calls
    assert breaker.state is CLOSED
    assert breaker.stats == CircuitStats(
        successes=half_open_max_calls,
        failures=0,
        ignored=0,
        rejections=TASKS - half_open_max_calls,
    )
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert breaker._probes == 0
