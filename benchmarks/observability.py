"""What a reporter costs per beat, next to the instrumentation library's own calls.

Run: `python benchmarks/observability.py`. Everything is measured in one run, on one machine:

- per-beat time of a cadence of trivial async beats with nothing attached;
- the same with a do-nothing hooks object (the runner's own cost of calling hooks), with the
  four methods (as the OpenTelemetry reporter is called) and without `before_beat` (as the
  Prometheus reporter is called in `then` steps: it is told of parallel beats' starts only);
- the same with `PrometheusReporter` and with `OpenTelemetryReporter` (SDK providers, no export);
- the library calls the reporter makes for one beat, alone: one histogram observe and one
  counter inc (Prometheus); one span start and end, made current and detached, plus one
  histogram record (OpenTelemetry);
- `to_dot` and `to_mermaid` of a 1,000-step cadence.

The reporter's own share is what remains of its per-beat cost once the library's calls and
the runner's hook calls are taken out, as a share of the whole per-beat cost with it attached.
It is given two ways. Against the library's calls alone, in a tight loop: that loop runs
hotter (caches, branch prediction) than the same calls do between beats, so what it leaves to
the reporter includes some of the library's own cost. And against the same calls made in the
run by the thinnest possible hooks object (`HandPrometheus`, `HandOpenTelemetry`: the reporter's
hook methods, the library's calls, nothing else): what remains is the reporter's code alone.
The rounds are short and many; the best round and the median are shown.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import anyio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, Counter, Histogram

from cadence import Cadence, Context
from cadence.diagram import to_dot, to_mermaid
from cadence.reporters import OpenTelemetryReporter, PrometheusReporter

BEATS = 200
RUNS = 20
REPEATS = 15


@dataclass
class Ctx(Context):
    n: int = 0


async def step(ctx: Ctx) -> None:
    ctx.n += 1


class NoOpHooks:
    def before_cadence(self, name, context):
        return None

    def after_cadence(self, name, context, duration, error=None):
        return None

    def before_beat(self, name, context):
        return None

    def after_beat(self, name, context, duration, error=None):
        return None


class NoOpEnds:
    """Do-nothing hooks with the methods the Prometheus reporter is called by in `then` steps.

    It is not told of sequential beats' starts (`__cadence_parallel_starts_only__`), so the
    runner calls it once per beat, not twice.
    """

    def before_cadence(self, name, context):
        return None

    def after_cadence(self, name, context, duration, error=None):
        return None

    def after_beat(self, name, context, duration, error=None):
        return None


class HandPrometheus(NoOpEnds):
    """The library's calls for a beat, made from the thinnest hooks: no reporter code at all.

    The same hook methods as the reporter (so the runner's share is the same), the same calls
    on the same pre-labelled children, one per beat path: measured in the run, this is what the
    library costs where the reporter calls it, with the caches the rest of the beat leaves.
    """

    def __init__(self) -> None:
        registry = CollectorRegistry()
        histogram = Histogram("h_seconds", "h", ["cadence", "beat"], registry=registry)
        counter = Counter("c", "c", ["cadence", "beat", "outcome"], registry=registry)
        self.children = {
            f"b{i}": (
                histogram.labels("bench", f"b{i}"),
                counter.labels("bench", f"b{i}", "success"),
            )
            for i in range(BEATS)
        }

    def after_beat(self, name, context, duration, error=None):
        observed, counted = self.children[name]
        observed.observe(duration)
        counted.inc()


class HandOpenTelemetry(NoOpHooks):
    """As `HandPrometheus`, for the reporter's span and histogram calls (sequential beats)."""

    def __init__(self, provider: TracerProvider, meters: MeterProvider) -> None:
        self.tracer = provider.get_tracer("bench")
        self.histogram = meters.get_meter("bench").create_histogram("bench.hand", unit="s")
        self.beats = {
            f"b{i}": (
                f"cadence.beat b{i}",
                {"cadence.name": "bench", "cadence.beat.path": f"b{i}", "cadence.step": f"b{i}"},
                {
                    "cadence.name": "bench",
                    "cadence.beat.path": f"b{i}",
                    "cadence.outcome": "success",
                },
            )
            for i in range(BEATS)
        }
        self.open: list[tuple[object, object]] = []

    def before_cadence(self, name, context):
        span = self.tracer.start_span(f"cadence.run {name}")
        self.open.append((span, otel_context.attach(trace.set_span_in_context(span))))

    def after_cadence(self, name, context, duration, error=None):
        span, token = self.open.pop()
        span.end()
        otel_context.detach(token)

    def before_beat(self, name, context):
        span_name, attributes, _ = self.beats[name]
        span = self.tracer.start_span(span_name, attributes=attributes)
        self.open.append((span, otel_context.attach(trace.set_span_in_context(span))))

    def after_beat(self, name, context, duration, error=None):
        span, token = self.open.pop()
        span.set_attribute("cadence.outcome", "success")
        span.end()
        otel_context.detach(token)
        self.histogram.record(duration, self.beats[name][2])


def build(hooks: object | None) -> Cadence[Ctx]:
    cadence = Cadence("bench", Ctx())
    if hooks is not None:
        cadence = cadence.with_hooks(hooks)  # type: ignore[arg-type] # a hooks object
    for i in range(BEATS):
        cadence = cadence.then(f"b{i}", step)
    return cadence


def per_beat(work: dict[str, object]) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per beat of each workload: the best and the median of REPEATS rounds.

    A workload is a cadence (run RUNS times) or a function doing RUNS * BEATS beats' worth of
    library calls. Taking turns within each round, all inside one event loop's task, spreads a
    busy machine's noise over every configuration alike; short rounds, many of them, let the
    best one dodge it.
    """

    async def main() -> tuple[dict[str, float], dict[str, float]]:
        rounds: dict[str, list[float]] = {name: [] for name in work}
        for _ in range(REPEATS):
            for name, item in work.items():
                start = time.perf_counter()
                if isinstance(item, Cadence):
                    for _ in range(RUNS):
                        await item.run(Ctx())
                else:
                    item()  # type: ignore[operator] # a library loop
                rounds[name].append((time.perf_counter() - start) / (RUNS * BEATS))
        best = {name: min(times) for name, times in rounds.items()}
        median = {name: statistics.median(times) for name, times in rounds.items()}
        return best, median

    return anyio.run(main)


def library_prometheus():
    """One histogram observe and one counter inc per beat, on pre-labelled children.

    One child per beat path, as the reporter has (each beat is its own series): the same work,
    touching as many series, so both pay alike for the memory they walk.
    """
    registry = CollectorRegistry()
    histogram = Histogram("h_seconds", "h", ["cadence", "beat"], registry=registry)
    counter = Counter("c", "c", ["cadence", "beat", "outcome"], registry=registry)
    children = [
        (histogram.labels("bench", f"b{i}"), counter.labels("bench", f"b{i}", "success"))
        for i in range(BEATS)
    ]

    def loop() -> None:
        for _ in range(RUNS):
            for observed, counted in children:
                observed.observe(0.001)
                counted.inc()

    return loop


def library_opentelemetry(provider: TracerProvider, meters: MeterProvider, *, bare: bool = False):
    """The calls the reporter makes for one beat: the same span, attributes and record.

    Under a current parent span, as a beat's span is under its run's: the SDK then samples by
    the parent and offers exemplars to the histogram, as it does for the reporter. One span
    name and attribute set per beat path, as the reporter's.
    """
    tracer = provider.get_tracer("bench")
    histogram = meters.get_meter("bench").create_histogram("bench.duration", unit="s")
    beats = [
        (
            f"cadence.beat b{i}",
            {"cadence.name": "bench", "cadence.beat.path": f"b{i}", "cadence.step": f"b{i}"},
            {"cadence.name": "bench", "cadence.beat.path": f"b{i}", "cadence.outcome": "success"},
        )
        for i in range(BEATS)
    ]

    def loop() -> None:
        parent = tracer.start_span("cadence.run bench")
        token = otel_context.attach(trace.set_span_in_context(parent))
        for _ in range(RUNS):
            for name, span_attributes, recorded in beats:
                if bare:
                    tracer.start_span(name).end()
                    continue
                span = tracer.start_span(name, attributes=span_attributes)
                current = otel_context.attach(trace.set_span_in_context(span))
                span.set_attribute("cadence.outcome", "success")
                span.end()
                otel_context.detach(current)
                histogram.record(0.001, recorded)
        otel_context.detach(token)
        parent.end()

    return loop


def diagram_time(steps: int) -> tuple[float, float]:
    cadence = Cadence("big", Ctx())
    for i in range(steps):
        if i % 10 == 3:
            cadence = cadence.sync(f"s{i}", [step, step_b])
        elif i % 10 == 7:
            cadence = cadence.split(f"q{i}", always, step, step_b)
        else:
            cadence = cadence.then(f"b{i}", step)
    dot = statistics.median(_timed(lambda: to_dot(cadence)) for _ in range(5))
    mermaid = statistics.median(_timed(lambda: to_mermaid(cadence)) for _ in range(5))
    return dot, mermaid


def always(ctx: Ctx) -> bool:
    return True


async def step_b(ctx: Ctx) -> None:
    ctx.n += 2


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    provider = TracerProvider()  # spans are made and ended; no processor exports them
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    best, median = per_beat(
        {
            "bare": build(None),
            "noop": build(NoOpHooks()),
            "noop_ends": build(NoOpEnds()),
            "prometheus": build(PrometheusReporter(registry=CollectorRegistry())),
            "otel": build(OpenTelemetryReporter("bench", provider, meters)),
            "hand_prom": build(HandPrometheus()),
            "hand_otel": build(HandOpenTelemetry(provider, meters)),
            "lib_prom": library_prometheus(),
            "lib_otel": library_opentelemetry(provider, meters),
            "lib_span": library_opentelemetry(provider, meters, bare=True),
        }
    )
    us = 1e6
    print(f"per beat, {BEATS} async beats x {RUNS} runs, {REPEATS} rounds (microseconds)")
    for label, times in [("best", best), ("median", median)]:
        bare, noop, prometheus, otel = (
            times["bare"],
            times["noop"],
            times["prometheus"],
            times["otel"],
        )
        lib_prom, lib_otel, lib_span = times["lib_prom"], times["lib_otel"], times["lib_span"]
        print(f" {label} round:")
        print(f"  nothing attached              {bare * us:8.2f}")
        hooks = (noop - bare) * us
        print(
            f"  do-nothing hooks              {noop * us:8.2f}   runner's hook calls {hooks:6.2f}"
        )
        ends = times["noop_ends"]
        calls = (ends - bare) * us
        print(
            f"  do-nothing after-beat hooks   {ends * us:8.2f}   runner's hook calls {calls:6.2f}"
        )
        for name, total, library, hand, runner in [
            ("PrometheusReporter", prometheus, lib_prom, times["hand_prom"], ends),
            ("OpenTelemetryReporter", otel, lib_otel, times["hand_otel"], noop),
        ]:
            cost = total - bare
            own = total - runner - library
            own_in_run = total - hand
            print(f"  {name:<29} {total * us:8.2f}   cost over nothing {cost * us:6.2f}")
            print(f"    library's own calls, alone   {library * us:8.2f}")
            share = f"{own / cost:5.1%}"
            print(f"    reporter's own code          {own * us:8.2f}   = {share} of the cost")
            print(f"    same calls from bare hooks   {hand * us:8.2f}")
            print(
                f"    reporter's own code, in run  {own_in_run * us:8.2f}"
                f"   = {own_in_run / cost:5.1%} of the cost"
            )
        print(f"  (one bare OTel span start and end alone: {lib_span * us:.2f})")
        for name, total, hand in [
            ("PrometheusReporter", prometheus, times["hand_prom"]),
            ("OpenTelemetryReporter", otel, times["hand_otel"]),
        ]:
            share = (total - hand) / (total - bare)
            verdict = "met" if share <= 0.2 else "missed"
            print(f"  target: {name}'s own code <= 20% of its cost: {share:.1%}, {verdict}")
    dot, mermaid = diagram_time(1000)
    print(f"to_dot, 1,000 steps: {dot * 1e3:.1f} ms; to_mermaid: {mermaid * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
