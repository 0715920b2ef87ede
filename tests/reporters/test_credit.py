"""Every beat is counted, and each retry is credited to the beat it was made in, and no other.

Regressions found in review of the observer records (a run holds its beat): a beat that ends
with a new context, a resumed durable run, a cadence run inside a beat, a thread a `@timeout`
gave up on, and notices made between beats.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from prometheus_client import CollectorRegistry

from cadence import Cadence, CadenceHooks, Context, ImmutableContext
from cadence.durable import SQLiteStore
from cadence.events import BeatCompleted, BeatRetried, CadenceEvent
from cadence.reporters import PrometheusReporter
from cadence.resilience import fallback, retry, set_testing, timeout

from .exposition import samples

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("instant_retries")]


@dataclass
class Ctx(Context):
    n: int = 0
    left: str = ""
    right: str = ""


@dataclass(frozen=True)
class Frozen(ImmutableContext):
    n: int = 0
    m: int = 0


def counted(registry: CollectorRegistry, name: str = "cadence_beats_total") -> dict[str, float]:
    """Return `beat: value` of a counter's non-zero series (outcomes summed)."""
    found: dict[str, float] = {}
    for (sample, labels), count in samples(registry).items():
        if sample == name and count:
            beat = dict(labels)["beat"]
            found[beat] = found.get(beat, 0) + count
    return found


def outcomes_of(registry: CollectorRegistry) -> set[tuple[str, str]]:
    """Return the `(beat, outcome)` pairs counted at least once."""
    return {
        (dict(labels)["beat"], dict(labels)["outcome"])
        for (sample, labels), count in samples(registry).items()
        if sample == "cadence_beats_total" and count
    }


async def test_beats_that_return_new_contexts_are_all_counted(anyio_backend: str) -> None:
    async def bump(ctx: Frozen) -> Frozen:
        return ctx.with_field("n", ctx.n + 1)

    async def bump_m(ctx: Frozen) -> Frozen:
        return ctx.with_field("m", ctx.m + 1)

    async def same(ctx: Frozen) -> None:
        return None

    registry = CollectorRegistry()
    reporter = PrometheusReporter(registry=registry)
    cadence = (
        Cadence("frozen", Frozen())
        .with_reporter(reporter.report)
        .then("before", same)
        .sync("fan", [bump, bump_m])
        .then("after", bump)
        .then("last", same)
    )
    for _ in range(2):
        assert await cadence.run() == Frozen(n=2, m=1)
    assert counted(registry) == {
        "before": 2,
        "fan.bump": 2,
        "fan.bump_m": 2,
        "after": 2,
        "last": 2,
    }


async def test_a_resumed_durable_run_counts_every_step_after_its_restored_branches(
    tmp_path: Path, anyio_backend: str
) -> None:
    failing = [True]

    async def first(ctx: Ctx) -> None:
        ctx.n = 1

    async def left(ctx: Ctx) -> None:
        ctx.left = "a"

    async def right(ctx: Ctx) -> None:
        for _ in range(5):
            await anyio.lowlevel.checkpoint()  # left commits first
        if failing.pop() if failing else False:
            raise ConnectionError("lost")
        ctx.right = "b"

    async def last(ctx: Ctx) -> None:
        ctx.n *= 10

    registry = CollectorRegistry()
    reporter = PrometheusReporter(registry=registry)
    flow = (
        Cadence("durable", context_type=Ctx)
        .with_reporter(reporter.report)
        .then("first", first)
        .sync("par", [left, right])
        .then("last", last)
    )
    store = SQLiteStore(tmp_path / "runs.db")
    with pytest.raises(Exception, match="lost"):
        await flow.run(Ctx(), run_id="r1", store=store)
    assert await flow.run(Ctx(), run_id="r1", store=store) == Ctx(n=10, left="a", right="b")
    await store.aclose()
    beats = counted(registry)
    assert beats["last"] == 1
    assert beats["par.right"] == 2  # failed, then ran on resume
    assert beats["first"] == 1  # not run again


async def test_a_cadence_run_inside_a_beat_keeps_its_retries(anyio_backend: str) -> None:
    attempts = {"n": 0}

    @retry(max_attempts=3, delay=0)
    async def flaky(ctx: Ctx) -> None:
        attempts["n"] += 1
        if attempts["n"] % 2:
            raise ConnectionError("once")

    # The outer cadence's reporter does not see the inner cadence's retry ...
    registry = CollectorRegistry()
    reporter = PrometheusReporter(registry=registry)
    heard: list[CadenceEvent] = []
    inner = Cadence("inner", Ctx()).with_listener(heard.append).then("k", flaky)

    async def calls_inner(ctx: Ctx) -> None:
        await inner.run()

    outer = Cadence("outer", Ctx()).with_reporter(reporter.report).then("step", calls_inner)
    await outer.run()
    assert counted(registry, "cadence_beat_retries_total") == {}
    assert [(e.cadence, e.beat) for e in heard if isinstance(e, BeatRetried)] == [("inner", "k")]

    # ... and an outer listener does not hear the inner reporter's.
    registry = CollectorRegistry()
    reporter = PrometheusReporter(registry=registry)
    heard.clear()
    inner = Cadence("inner", Ctx()).with_reporter(reporter.report).then("k", flaky)
    outer = Cadence("outer", Ctx()).with_listener(heard.append).then("step", calls_inner)
    await outer.run()
    assert counted(registry, "cadence_beat_retries_total") == {"k": 1}
    assert [e for e in heard if isinstance(e, BeatRetried)] == []


async def test_a_thread_a_timeout_gave_up_on_credits_no_later_beat(anyio_backend: str) -> None:
    set_testing(False)  # real delays: the abandoned thread retries while the next beat runs
    gate = threading.Event()

    @fallback(default=None)
    @retry(max_attempts=3, delay=0.01, backoff=1)
    def fetch() -> None:
        gate.wait(1.0)
        raise ConnectionError("slow dependency")

    @timeout(0.05)
    def slow(ctx: Ctx) -> None:  # a sync beat: the timeout runs it in a thread it abandons
        fetch()

    async def next_beat(ctx: Ctx) -> None:
        gate.set()  # the abandoned thread fails, retries and falls back now
        await anyio.sleep(0.2)

    registry = CollectorRegistry()
    reporter = PrometheusReporter(registry=registry)
    cadence = (
        Cadence("c", Ctx())
        .with_reporter(reporter.report)
        .then("slow", slow)
        .then("next", next_beat)
        .on_error(lambda c, e: None, stop=False)
    )
    await cadence.run()
    assert counted(registry, "cadence_beat_retries_total") == {}
    outcomes = outcomes_of(registry)
    assert outcomes == {("slow", "timeout"), ("next", "success")}


async def test_a_notice_between_beats_is_no_beats(anyio_backend: str) -> None:
    @fallback(default=False)
    def check(ctx: Ctx) -> bool:  # a split's condition that falls back
        raise ValueError("no")

    async def inc(ctx: Ctx) -> None:
        ctx.n += 1

    registry = CollectorRegistry()
    reporter = PrometheusReporter(registry=registry)
    cadence = (
        Cadence("between", Ctx())
        .with_reporter(reporter.report)
        .then("a", inc)
        .split("route", check, inc, inc)
        .then("b", inc)
    )
    await cadence.run()
    outcomes = outcomes_of(registry)
    assert outcomes == {("a", "success"), ("route.inc", "success"), ("b", "success")}


def flaky_client() -> Callable[[], str]:
    """A client call that fails every other time, behind `@retry`."""
    state = {"calls": 0}

    @retry(max_attempts=3, delay=0)
    def call() -> str:
        state["calls"] += 1
        if state["calls"] % 2:
            raise ConnectionError("every other call")
        return "ok"

    return call


class RetryingHooks(CadenceHooks[Context]):
    """A hooks object whose run start calls a retried client."""

    def __init__(self, client: Callable[[], str]) -> None:
        self.client = client

    def before_cadence(self, cadence_name: str, context: Context) -> None:
        self.client()


async def test_code_between_beats_credits_no_beat(anyio_backend: str) -> None:
    client = flaky_client()

    @fallback(default=None)
    def give_up() -> None:
        raise ValueError("handled")

    def handler(ctx: Ctx, error: Exception) -> None:
        give_up()  # an error handler's fallback

    async def fails(ctx: Ctx) -> None:
        raise ValueError("boom")

    async def inc(ctx: Ctx) -> None:
        ctx.n += 1

    def into_child(ctx: Ctx) -> Ctx:
        client()  # the child's context function retries
        return Ctx()

    def back(parent: Ctx, child: Ctx) -> None:
        client()  # and so does its merge function
        parent.n += child.n

    heard: list[CadenceEvent] = []

    def listener(event: CadenceEvent) -> None:
        heard.append(event)
        if isinstance(event, BeatCompleted) and event.beat == "a":
            client()  # a listener's own retried call, at a beat's end

    registry = CollectorRegistry()
    reporter = PrometheusReporter(registry=registry)
    child = Cadence("inner", Ctx()).then("k", inc)
    cadence = (
        Cadence("between", Ctx())
        .with_listener(listener)  # after-hooks run in reverse: the listener after the reporter
        .with_reporter(reporter.report)
        .with_hooks(RetryingHooks(client))  # its run start comes after the reporter's
        .then("a", inc)
        .then("boom", fails)
        .then("b", inc)
        .child("sub", child, back, context=into_child)
        .then("c", inc)
        .on_error(handler, stop=False)
    )
    await cadence.run()
    assert counted(registry, "cadence_beat_retries_total") == {}
    outcomes = outcomes_of(registry)
    assert outcomes == {
        ("a", "success"),
        ("boom", "failure"),
        ("b", "success"),
        ("sub.k", "success"),
        ("c", "success"),
    }
    assert [e for e in heard if isinstance(e, BeatRetried)] == []
