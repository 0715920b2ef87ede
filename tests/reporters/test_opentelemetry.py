"""OpenTelemetryReporter against the SDK's in-memory span exporter and metric reader."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from cadence import BeatError, Cadence, Context, beat
from cadence.reporters import OpenTelemetryReporter
from cadence.reporters._opentelemetry import DURATION_BUCKETS
from cadence.resilience import fallback, retry, set_testing, timeout

if TYPE_CHECKING:
    from opentelemetry.context import Context as OtelContext

pytestmark = pytest.mark.anyio


class Counting(SpanProcessor):
    """Count spans started and ended (an unended span is never exported)."""

    def __init__(self) -> None:
        self.started = 0
        self.ended = 0
        self.lock = threading.Lock()

    def on_start(self, span: Span, parent_context: OtelContext | None = None) -> None:
        with self.lock:
            self.started += 1

    def on_end(self, span: ReadableSpan) -> None:
        with self.lock:
            self.ended += 1


@dataclass
class Otel:
    provider: TracerProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    counting: Counting
    reporter: OpenTelemetryReporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def by_name(self) -> dict[str, ReadableSpan]:
        found = {s.name: s for s in self.spans()}
        assert len(found) == len(self.spans()), "span names repeat; use spans()"
        return found

    def points(self, name: str) -> list[object]:
        data = self.reader.get_metrics_data()
        assert data is not None
        out: list[object] = []
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    counting = Counting()
    provider = TracerProvider()
    provider.add_span_processor(counting)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    reporter = OpenTelemetryReporter(
        service_name="shop", tracer_provider=provider, meter_provider=meters
    )
    set_testing()
    yield Otel(provider, exporter, reader, counting, reporter)
    set_testing(False)
    meters.shutdown()
    provider.shutdown()


@dataclass
class Ctx(Context):
    n: int = 0
    m: int = 0
    label: str = ""
    seen: list[str] = field(default_factory=list[str])


@dataclass
class Inner(Context):
    k: int = 0


def parent_name(spans: list[ReadableSpan], span: ReadableSpan) -> str | None:
    if span.parent is None:
        return None
    return next(s.name for s in spans if s.context.span_id == span.parent.span_id)


def tree(otel: Otel) -> set[tuple[str, str | None]]:
    spans = otel.spans()
    return {(s.name, parent_name(spans, s)) for s in spans}


async def test_the_spec_usage_gives_a_span_tree(otel: Otel, anyio_backend: str) -> None:
    tracer = otel.provider.get_tracer("app")

    async def first(ctx: Ctx) -> None:
        with tracer.start_as_current_span("http GET /profile"):
            await anyio.lowlevel.checkpoint()
        ctx.n += 1

    @beat(blocking=True)
    def in_thread(ctx: Ctx) -> None:
        assert threading.current_thread() is not threading.main_thread()
        with tracer.start_as_current_span("db query"):
            ctx.m += 1

    async def other(ctx: Ctx) -> None:
        with tracer.start_as_current_span("cache get"):
            pass

    async def inner_beat(ctx: Inner) -> None:
        with tracer.start_as_current_span("inner work"):
            ctx.k = 1

    child = Cadence("inner", Inner()).then("k", inner_beat)
    cadence = (
        Cadence("checkout", Ctx())
        .with_reporter(otel.reporter.report)
        .then("first", first)
        .sync("fan", [in_thread, other])
        .split("pick", lambda c: c.n > 0, first)
        .child("nested", child, lambda p, c: None)
    )
    with tracer.start_as_current_span("request"):
        await cadence.run()
    spans = otel.spans()
    assert sorted((s.name, parent_name(spans, s)) for s in spans) == sorted(
        [
            ("request", None),
            ("cadence.run checkout", "request"),
            ("cadence.beat first", "cadence.run checkout"),
            ("http GET /profile", "cadence.beat first"),
            ("cadence.beat fan.in_thread", "cadence.run checkout"),
            ("db query", "cadence.beat fan.in_thread"),
            ("cadence.beat fan.other", "cadence.run checkout"),
            ("cache get", "cadence.beat fan.other"),
            ("cadence.beat pick.first", "cadence.run checkout"),
            ("http GET /profile", "cadence.beat pick.first"),
            ("cadence.beat nested.k", "cadence.run checkout"),
            ("inner work", "cadence.beat nested.k"),
        ]
    )
    run = next(s for s in spans if s.name == "cadence.run checkout")
    assert run.status.status_code is StatusCode.UNSET
    assert run.kind is trace.SpanKind.INTERNAL
    attributes = dict(run.attributes or {})
    assert attributes["cadence.name"] == "checkout"
    assert attributes["cadence.outcome"] == "success"
    assert attributes["cadence.service"] == "shop"
    beat_span = next(s for s in spans if s.name == "cadence.beat fan.in_thread")
    beat_attributes = dict(beat_span.attributes or {})
    assert beat_attributes["cadence.beat.path"] == "fan.in_thread"
    assert beat_attributes["cadence.step"] == "fan"
    assert beat_attributes["cadence.name"] == "checkout"
    assert beat_span.context.trace_id == run.context.trace_id
    # Parallel beats overlap in time under one parent; every span started was ended.
    assert otel.counting.started == otel.counting.ended == len(spans)


async def test_a_child_with_its_own_reporter_nests_its_run(otel: Otel, anyio_backend: str) -> None:
    async def inner_beat(ctx: Inner) -> None:
        ctx.k = 1

    @beat(blocking=True)
    def in_thread(ctx: Inner) -> None:
        with otel.provider.get_tracer("app").start_as_current_span("blocking io"):
            pass

    child = (
        Cadence("inner", Inner())
        .with_reporter(otel.reporter.report)
        .then("k", inner_beat)
        .sync("par", [in_thread])
    )
    cadence = (
        Cadence("outer", Ctx())
        .with_reporter(otel.reporter.report)
        .child("nested", child, lambda p, c: None)
    )
    await cadence.run()
    assert tree(otel) == {
        ("cadence.run outer", None),
        ("cadence.run inner", "cadence.run outer"),
        ("cadence.beat k", "cadence.run inner"),  # one span, though both cadences report it
        ("cadence.beat par.in_thread", "cadence.run inner"),
        ("blocking io", "cadence.beat par.in_thread"),
    }


async def test_failure_sets_error_status_and_records_the_exception(
    otel: Otel, anyio_backend: str
) -> None:
    async def fails(ctx: Ctx) -> None:
        raise KeyError("missing")

    cadence = Cadence("bad", Ctx()).with_reporter(otel.reporter.report).then("boom", fails)
    with pytest.raises(BeatError):
        await cadence.run()
    spans = otel.by_name()
    for name in ["cadence.beat boom", "cadence.run bad"]:
        span = spans[name]
        assert span.status.status_code is StatusCode.ERROR
        assert dict(span.attributes or {})["error.type"] == "KeyError"
        assert dict(span.attributes or {})["cadence.outcome"] == "failure"
        assert [e.name for e in span.events] == ["exception"]
    beat_exception = dict(spans["cadence.beat boom"].events[0].attributes or {})
    assert beat_exception["exception.type"] == "KeyError"


async def test_timeout_is_an_error_of_its_own_type(otel: Otel, anyio_backend: str) -> None:
    @timeout(0.001)
    async def stuck(ctx: Ctx) -> None:
        await anyio.sleep_forever()

    cadence = Cadence("slow", Ctx()).with_reporter(otel.reporter.report).then("stuck", stuck)
    with pytest.raises(BeatError):
        await cadence.run()
    span = otel.by_name()["cadence.beat stuck"]
    assert span.status.status_code is StatusCode.ERROR
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "cadence._errors.BeatTimeoutError"
    assert attributes["cadence.outcome"] == "timeout"
    assert [e.name for e in span.events] == ["cadence.timeout", "exception"]


async def test_retried_then_successful_and_fallback_beats_are_not_errors(
    otel: Otel, anyio_backend: str
) -> None:
    calls = {"n": 0}

    @retry(max_attempts=3, delay=0.25)
    async def flaky(ctx: Ctx) -> None:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("reset")

    @fallback(default="guest", field="label")
    async def down(ctx: Ctx) -> None:
        raise ConnectionError("down")

    cadence = (
        Cadence("resilient", Ctx())
        .with_reporter(otel.reporter.report)
        .then("flaky", flaky)
        .then("down", down)
    )
    result = await cadence.run()
    assert result.label == "guest"
    spans = otel.by_name()
    flaky_span = spans["cadence.beat flaky"]
    assert flaky_span.status.status_code is StatusCode.UNSET
    assert [e.name for e in flaky_span.events] == ["cadence.retry", "cadence.retry"]
    first = dict(flaky_span.events[0].attributes or {})
    assert first["cadence.retry.attempt"] == 1
    assert first["cadence.retry.wait"] == 0.25
    assert first["exception.type"] == "ConnectionError"
    down_span = spans["cadence.beat down"]
    assert down_span.status.status_code is StatusCode.UNSET
    assert dict(down_span.attributes or {})["cadence.outcome"] == "fallback"
    assert [e.name for e in down_span.events] == ["cadence.fallback"]
    assert spans["cadence.run resilient"].status.status_code is StatusCode.UNSET


async def test_cancellation_leaves_the_status_unset(otel: Otel, anyio_backend: str) -> None:
    started = anyio.Event()

    async def waits(ctx: Ctx) -> None:
        started.set()
        await anyio.sleep_forever()

    cadence = Cadence("cancel", Ctx()).with_reporter(otel.reporter.report).then("waits", waits)
    async with anyio.create_task_group() as group:
        group.start_soon(cadence.run)
        await started.wait()
        group.cancel_scope.cancel()
    spans = otel.by_name()
    for name in ["cadence.beat waits", "cadence.run cancel"]:
        assert spans[name].status.status_code is StatusCode.UNSET
        assert dict(spans[name].attributes or {})["cadence.outcome"] == "cancelled"
        assert spans[name].events == ()


async def test_metrics_durations_in_seconds_and_active_runs(otel: Otel, anyio_backend: str) -> None:
    async def step(ctx: Ctx) -> None:
        ctx.n += 1

    cadence = Cadence("metered", Ctx()).with_hooks(otel.reporter).then("a", step).then("b", step)
    for _ in range(3):
        await cadence.run()
    beats = [p for p in otel.points("cadence.beat.duration") if isinstance(p, HistogramDataPoint)]
    by_path = {dict(p.attributes or {})["cadence.beat.path"]: p for p in beats}
    assert set(by_path) == {"a", "b"}
    assert by_path["a"].count == 3
    assert tuple(by_path["a"].explicit_bounds) == DURATION_BUCKETS
    assert dict(by_path["a"].attributes or {})["cadence.outcome"] == "success"
    runs = [p for p in otel.points("cadence.run.duration") if isinstance(p, HistogramDataPoint)]
    assert [p.count for p in runs] == [3]
    active = otel.points("cadence.run.active")
    assert [getattr(p, "value", None) for p in active] == [0]


@pytest.mark.timeout(120)
async def test_a_thousand_random_runs_leave_no_span_open(otel: Otel, anyio_backend: str) -> None:
    rng = random.Random(8)

    async def maybe(ctx: Ctx) -> None:
        await anyio.lowlevel.checkpoint()
        if ctx.label == "fail":
            raise RuntimeError("random failure")

    async def other(ctx: Ctx) -> None:
        await anyio.lowlevel.checkpoint()

    @beat(blocking=True)
    def threaded(ctx: Ctx) -> None:
        ctx.m += 1

    child = Cadence("inner", Ctx()).then("maybe", maybe)
    cadence = (
        Cadence("random", Ctx())
        .with_reporter(otel.reporter.report)
        .sync("fan", [maybe, other, threaded])
        .child("nested", child, lambda p, c: None, context=lambda p: Ctx(label=p.label))
        .then("last", other)
    )
    outcomes = {"ok": 0, "fail": 0, "cancel": 0}
    for _ in range(1000):
        kind = rng.choice(["ok", "fail", "cancel"])
        outcomes[kind] += 1
        with anyio.CancelScope() as scope:
            if kind == "cancel":
                scope.cancel()  # lands at the run's first checkpoint, inside a beat or a hook
            try:
                await cadence.run(Ctx(label=kind))
            except BeatError:
                assert kind == "fail"
    assert min(outcomes.values()) > 250
    assert otel.counting.started == otel.counting.ended > 1000
    assert [getattr(p, "value", None) for p in otel.points("cadence.run.active")] == [0]
    failed = [s for s in otel.spans() if s.status.status_code is StatusCode.ERROR]
    assert {s.name for s in failed} >= {"cadence.run random", "cadence.beat fan.maybe"}


def test_no_global_provider_is_set() -> None:
    before = trace.get_tracer_provider()
    OpenTelemetryReporter(service_name="quiet")
    assert trace.get_tracer_provider() is before
    assert type(before).__name__ == "ProxyTracerProvider"


def test_import_without_the_library_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "import cadence.reporters\n"
        "try:\n"
        "    from cadence.reporters import OpenTelemetryReporter\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'cadence-flow[opentelemetry]'" in out.stdout


async def test_two_reporters_on_parent_and_child_leave_the_callers_span_current(
    otel: Otel, anyio_backend: str
) -> None:
    other = OpenTelemetryReporter(service_name="child", tracer_provider=otel.provider)

    async def inner(ctx: Inner) -> None:
        ctx.k = 1

    child = (
        Cadence("child", Inner())
        .with_reporter(other.report)
        .then("inner", inner)
        .then("second", inner)
    )
    parent = (
        Cadence("parent", Ctx())
        .with_reporter(otel.reporter.report)
        .then("first", lambda ctx: None)
        .child("kid", child, lambda p, c: None)
    )
    tracer = otel.provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        await parent.run()
        assert trace.get_current_span() is request
    assert not trace.get_current_span().get_span_context().is_valid
    # Each beat's spans hang under the runs, never under the previous beat's ended span.
    parents = dict(tree(otel))
    assert parents["cadence.beat kid.second"] == parents["cadence.beat kid.inner"]
