"""PrometheusReporter on real registries: the exposition text parsed back, values asserted."""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
from dataclasses import dataclass

import anyio
import anyio.lowlevel
import pytest
from prometheus_client import CollectorRegistry, Counter

from cadence import BeatError, Cadence, Context, beat
from cadence.reporters import PrometheusReporter
from cadence.resilience import CircuitBreaker, fallback, retry, timeout

from .exposition import samples

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("instant_retries")]


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
def inc_in_thread(ctx: Ctx) -> None:
    ctx.m += 10


async def inner_beat(ctx: Inner) -> None:
    ctx.k = 1


async def fails(ctx: Ctx) -> None:
    raise ValueError("boom")


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return samples(registry)[name, tuple(sorted(labels.items()))]


def plan(reporter: PrometheusReporter) -> Cadence[Ctx]:
    child = Cadence("inner", Inner()).then("k", inner_beat)
    return (
        Cadence("checkout", Ctx())
        .with_reporter(reporter.report)
        .then("first", inc)
        .sync("fan", [inc, inc_in_thread])
        .split("pick", lambda c: c.m > 5, inc, fails)
        .child("nested", child, lambda p, c: None)
    )


async def test_the_spec_usage_counts_and_times_every_beat(anyio_backend: str) -> None:
    registry = CollectorRegistry()
    reporter = PrometheusReporter(prefix="myapp", registry=registry)
    cadence = plan(reporter)
    await cadence.run()
    await cadence.run()
    got = samples(registry)
    assert value(registry, "myapp_runs_total", cadence="checkout", outcome="success") == 2
    assert value(registry, "myapp_runs_in_progress", cadence="checkout") == 0
    assert value(registry, "myapp_run_duration_seconds_count", cadence="checkout") == 2
    for path in ["first", "fan.inc", "fan.inc_in_thread", "pick.inc", "nested.k"]:
        assert (
            value(registry, "myapp_beats_total", cadence="checkout", beat=path, outcome="success")
            == 2
        )
        assert (
            value(registry, "myapp_beat_duration_seconds_count", cadence="checkout", beat=path) == 2
        )
        assert (
            value(registry, "myapp_beat_duration_seconds_sum", cadence="checkout", beat=path) >= 0
        )
        assert value(registry, "myapp_beat_retries_total", cadence="checkout", beat=path) == 0
    # A beat's series are made with every outcome at zero the first time it is heard of.
    assert (
        value(registry, "myapp_beats_total", cadence="checkout", beat="first", outcome="timeout")
        == 0
    )
    # The branch not taken is in the plan: the reporter was attached before it was added, and
    # the first run handed it the finished plan, so its series are there, at zero.
    for outcome in ["success", "failure", "timeout", "circuit_open", "fallback", "cancelled"]:
        assert (
            value(
                registry,
                "myapp_beats_total",
                cadence="checkout",
                beat="pick.fails",
                outcome=outcome,
            )
            == 0
        )
    assert (
        value(registry, "myapp_beat_duration_seconds_count", cadence="checkout", beat="pick.fails")
        == 0
    )
    # Label values are the plan's names, nothing else.
    beats = {dict(labels)["beat"] for (name, labels) in got if name == "myapp_beats_total"}
    assert beats == {"first", "fan.inc", "fan.inc_in_thread", "pick.inc", "pick.fails", "nested.k"}
    buckets = [
        dict(labels)["le"]
        for (name, labels) in got
        if name == "myapp_beat_duration_seconds_bucket" and dict(labels)["beat"] == "first"
    ]
    assert buckets[0] == "0.001"
    assert buckets[-1] == "+Inf"


async def test_series_exist_at_zero_before_any_run(anyio_backend: str) -> None:
    registry = CollectorRegistry()
    reporter = PrometheusReporter(registry=registry)
    child = Cadence("inner", Inner()).then("k", inner_beat)
    cadence = (
        Cadence("checkout", Ctx()).then("first", inc).child("nested", child, lambda p, c: None)
    )
    cadence.with_reporter(reporter.report)  # attached last: the whole plan is known
    assert value(registry, "cadence_runs_total", cadence="checkout", outcome="success") == 0
    assert value(registry, "cadence_runs_total", cadence="checkout", outcome="cancelled") == 0
    assert value(registry, "cadence_runs_in_progress", cadence="checkout") == 0
    assert (
        value(
            registry, "cadence_beats_total", cadence="checkout", beat="nested.k", outcome="failure"
        )
        == 0
    )


async def test_as_hooks_with_watch(anyio_backend: str) -> None:
    registry = CollectorRegistry()
    reporter = PrometheusReporter(registry=registry)
    cadence = Cadence("hooked", Ctx()).with_hooks(reporter).then("a", inc).then("b", fails)
    reporter.watch(cadence)
    assert (
        value(registry, "cadence_beats_total", cadence="hooked", beat="b", outcome="failure") == 0
    )
    with pytest.raises(BeatError):
        await cadence.run()
    assert (
        value(registry, "cadence_beats_total", cadence="hooked", beat="a", outcome="success") == 1
    )
    assert (
        value(registry, "cadence_beats_total", cadence="hooked", beat="b", outcome="failure") == 1
    )
    assert value(registry, "cadence_runs_total", cadence="hooked", outcome="failure") == 1


async def test_outcomes_timeout_fallback_circuit_open_and_retries(anyio_backend: str) -> None:
    registry = CollectorRegistry()
    reporter = PrometheusReporter(registry=registry)
    breaker = CircuitBreaker("payments-prom", failure_threshold=1, recovery_timeout=60)

    @timeout(0.001)
    async def stuck(ctx: Ctx) -> None:
        await anyio.sleep_forever()

    @fallback(default="guest", field="label")
    @retry(max_attempts=3, delay=0)
    async def down(ctx: Ctx) -> None:
        raise ConnectionError("down")

    @breaker
    async def charge(ctx: Ctx) -> None:
        raise ConnectionError("refused")

    cadence = (
        Cadence("mixed", Ctx())
        .with_reporter(reporter.report)
        .then("down", down)
        .then("stuck", stuck)
        .then("charge", charge)
        .on_error(lambda c, e: None, stop=False)
    )
    assert (
        value(registry, "cadence_circuit_breaker_state", breaker="payments-prom", state="closed")
        == 1
    )
    assert (
        value(registry, "cadence_circuit_breaker_state", breaker="payments-prom", state="open") == 0
    )
    await cadence.run()
    await cadence.run()

    def v(beat: str, outcome: str) -> float:
        return value(registry, "cadence_beats_total", cadence="mixed", beat=beat, outcome=outcome)

    assert v("down", "fallback") == 2
    assert v("down", "success") == 0
    assert value(registry, "cadence_beat_retries_total", cadence="mixed", beat="down") == 4
    assert v("stuck", "timeout") == 2
    assert v("charge", "failure") == 1  # the call that opened the breaker
    assert v("charge", "circuit_open") == 1  # refused by the open breaker
    assert (
        value(registry, "cadence_circuit_breaker_state", breaker="payments-prom", state="closed")
        == 0
    )
    assert (
        value(registry, "cadence_circuit_breaker_state", breaker="payments-prom", state="open") == 1
    )
    assert (
        value(registry, "cadence_runs_total", cadence="mixed", outcome="success") == 2
    )  # stop=False
    breaker.close()
    assert (
        value(registry, "cadence_circuit_breaker_state", breaker="payments-prom", state="closed")
        == 1
    )


async def test_a_run_ended_by_a_timeout_has_that_outcome_and_cancelled_runs_count(
    anyio_backend: str,
) -> None:
    registry = CollectorRegistry()
    reporter = PrometheusReporter(registry=registry)

    @timeout(0.001)
    async def stuck(ctx: Ctx) -> None:
        await anyio.sleep_forever()

    started = anyio.Event()

    async def waits(ctx: Ctx) -> None:
        started.set()
        await anyio.sleep_forever()

    slow = Cadence("slow", Ctx()).with_reporter(reporter.report).then("stuck", stuck)
    with pytest.raises(BeatError):
        await slow.run()
    assert value(registry, "cadence_runs_total", cadence="slow", outcome="timeout") == 1
    hang = Cadence("hang", Ctx()).with_reporter(reporter.report).then("waits", waits)
    async with anyio.create_task_group() as group:
        group.start_soon(hang.run)
        await started.wait()
        assert value(registry, "cadence_runs_in_progress", cadence="hang") == 1
        group.cancel_scope.cancel()
    assert value(registry, "cadence_runs_in_progress", cadence="hang") == 0
    assert value(registry, "cadence_runs_total", cadence="hang", outcome="cancelled") == 1
    assert (
        value(registry, "cadence_beats_total", cadence="hang", beat="waits", outcome="cancelled")
        == 1
    )


async def test_two_reporters_with_one_prefix_share_one_registry(anyio_backend: str) -> None:
    registry = CollectorRegistry()
    first = PrometheusReporter(registry=registry)
    second = PrometheusReporter(registry=registry)
    await Cadence("a", Ctx()).with_reporter(first.report).then("x", inc).run()
    await Cadence("a", Ctx()).with_reporter(second.report).then("x", inc).run()
    assert value(registry, "cadence_beats_total", cadence="a", beat="x", outcome="success") == 2
    other = PrometheusReporter(prefix="other", registry=registry)
    await Cadence("a", Ctx()).with_reporter(other.report).then("x", inc).run()
    assert value(registry, "other_beats_total", cadence="a", beat="x", outcome="success") == 1
    with pytest.raises(ValueError, match="buckets"):
        PrometheusReporter(registry=registry, buckets=(1.0, 2.0))


def test_names_taken_by_other_metrics_are_refused_clearly() -> None:
    registry = CollectorRegistry()
    Counter("taken_runs", "someone else's", registry=registry)
    with pytest.raises(ValueError, match=r"prefix='taken'.*already holds"):
        PrometheusReporter(prefix="taken", registry=registry)


async def test_a_direct_report_call_records_a_finished_beat(anyio_backend: str) -> None:
    registry = CollectorRegistry()
    reporter = PrometheusReporter(registry=registry)
    reporter.report("by_hand", 0.25, Ctx())
    assert (
        value(registry, "cadence_beats_total", cadence="", beat="by_hand", outcome="success") == 1
    )
    assert value(registry, "cadence_beat_duration_seconds_sum", cadence="", beat="by_hand") == 0.25


def test_import_without_the_library_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "import cadence, cadence.reporters\n"
        "try:\n"
        "    from cadence.reporters import PrometheusReporter\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'cadence-flow[prometheus]'" in out.stdout


def test_import_cadence_loads_no_client_library() -> None:
    code = (
        "import sys, cadence, cadence.reporters, cadence.diagram\n"
        "print(sorted(m for m in sys.modules if m.startswith(('prometheus', 'opentelemetry'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_a_child_with_the_same_reporter_counts_its_beats_once(
    anyio_backend: str,
) -> None:
    registry = CollectorRegistry()
    reporter = PrometheusReporter(registry=registry)
    child = Cadence("inner", Inner()).then("k", inner_beat).with_reporter(reporter.report)
    parent = Cadence("outer", Ctx()).child("nested", child, lambda p, c: None)
    await parent.with_reporter(reporter.report).run()
    # Heard once, as the child's own beat (the series under the parent exists, at zero).
    assert (
        value(registry, "cadence_beats_total", cadence="outer", beat="nested.k", outcome="success")
        == 0
    )
    assert value(registry, "cadence_beats_total", cadence="inner", beat="k", outcome="success") == 1
    assert value(registry, "cadence_runs_total", cadence="inner", outcome="success") == 1
    assert value(registry, "cadence_runs_total", cadence="outer", outcome="success") == 1


@pytest.mark.timeout(120)
async def test_a_thousand_random_runs_leave_nothing_in_progress(anyio_backend: str) -> None:
    registry = CollectorRegistry()
    reporter = PrometheusReporter(registry=registry)
    rng = random.Random(8)

    async def maybe(ctx: Ctx) -> None:
        await anyio.lowlevel.checkpoint()
        if ctx.label == "fail":
            raise RuntimeError("random failure")

    async def other(ctx: Ctx) -> None:
        await anyio.lowlevel.checkpoint()

    cadence = (
        Cadence("random", Ctx())
        .with_reporter(reporter.report)
        .sync("fan", [maybe, other, inc_in_thread])
        .then("last", other)
    )
    kinds = {"ok": 0, "fail": 0, "cancel": 0}
    for _ in range(1000):
        kind = rng.choice(list(kinds))
        kinds[kind] += 1
        with anyio.CancelScope() as scope:
            if kind == "cancel":
                scope.cancel()
            with contextlib.suppress(BeatError):
                await cadence.run(Ctx(label=kind))
    assert value(registry, "cadence_runs_in_progress", cadence="random") == 0
    runs = {
        o: value(registry, "cadence_runs_total", cadence="random", outcome=o)
        for o in ["success", "failure", "cancelled"]
    }
    assert runs == {"success": kinds["ok"], "failure": kinds["fail"], "cancelled": kinds["cancel"]}
    assert (
        value(registry, "cadence_beats_total", cadence="random", beat="last", outcome="success")
        == kinds["ok"]
    )
    assert (
        value(
            registry, "cadence_beats_total", cadence="random", beat="fan.maybe", outcome="failure"
        )
        == kinds["fail"]
    )


@pytest.mark.anyio
async def test_a_reporter_attached_before_the_steps_zeroes_every_beat_at_the_first_run() -> None:
    registry = CollectorRegistry()
    reporter = PrometheusReporter(prefix="early", registry=registry)
    cadence = (
        Cadence("spec_form", Ctx())
        .with_reporter(reporter.report)  # as the spec writes it: before the steps
        .then("inc", inc)
        .split("route", lambda ctx: ctx.n > 0, [beat(name="taken")(inc)], [fails])
    )
    await cadence.run()
    assert value(registry, "early_beats_total", cadence="spec_form", beat="inc", outcome="success")
    # The branch not taken still has its zero series, from the plan.
    never = {"cadence": "spec_form", "beat": "route.fails", "outcome": "failure"}
    assert value(registry, "early_beats_total", **never) == 0.0


async def test_retries_are_credited_to_their_own_beat_wherever_it_runs(anyio_backend: str) -> None:
    """Sequential beats are not told of their start: each notice still finds its beat."""
    registry, other_registry = CollectorRegistry(), CollectorRegistry()
    reporter = PrometheusReporter(registry=registry)
    second = PrometheusReporter(prefix="second", registry=other_registry)
    calls: dict[str, int] = {}

    def flaky(name: str, failures: int) -> None:
        calls[name] = calls.get(name, 0) + 1
        if calls[name] <= failures:
            raise ConnectionError(name)

    @retry(max_attempts=5, delay=0)
    async def twice(ctx: Ctx) -> None:  # two retries
        flaky("twice", 2)

    @retry(max_attempts=5, delay=0)
    async def slow_thrice(ctx: Ctx) -> None:  # three retries, across a suspension
        await anyio.lowlevel.checkpoint()
        flaky("slow_thrice", 3)

    @beat(blocking=True)
    @retry(max_attempts=5, delay=0)
    def in_thread(ctx: Ctx) -> None:  # one retry, made in a worker thread
        flaky("in_thread", 1)

    @fallback(default="x", field="label")
    async def falls(ctx: Ctx) -> None:
        raise ValueError("no")

    @retry(max_attempts=5, delay=0)
    async def inner_once(ctx: Inner) -> None:
        flaky("inner_once", 1)

    child = Cadence("inner", Inner()).then("k", inner_once)
    cadence = (
        Cadence("where", Ctx())
        .with_reporter(reporter.report)
        .with_reporter(second.report)
        .then("first", twice)
        .then("falls", falls)
        .then("after", inc)  # right after a fallback: a success, no retries of its own
        .sync("fan", [slow_thrice, in_thread, inc])
        .child("nested", child, lambda p, c: None)
        .then("thread_alone", in_thread)
    )
    await cadence.run()

    for prefix, reg in (("cadence", registry), ("second", other_registry)):

        def retries(path: str, prefix: str = prefix, reg: CollectorRegistry = reg) -> float:
            return value(reg, f"{prefix}_beat_retries_total", cadence="where", beat=path)

        def outcome(
            path: str, kind: str, prefix: str = prefix, reg: CollectorRegistry = reg
        ) -> float:
            return value(reg, f"{prefix}_beats_total", cadence="where", beat=path, outcome=kind)

        assert retries("first") == 2
        assert retries("fan.slow_thrice") == 3
        assert retries("fan.in_thread") == 1
        assert retries("fan.inc") == 0
        assert retries("nested.k") == 1
        assert retries("thread_alone") == 0  # its flaky call had failed enough already
        assert retries("after") == retries("falls") == 0
        assert outcome("falls", "fallback") == 1
        assert outcome("after", "success") == 1
        assert outcome("after", "fallback") == 0
        assert outcome("fan.slow_thrice", "success") == 1
