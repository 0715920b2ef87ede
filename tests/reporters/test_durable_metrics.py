"""Durable runs in the reporters: claims, resumes, lost leases and failed commits are counted."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cadence import BeatError, Cadence, Context
from cadence.durable import LeaseLostError, SQLiteStore
from cadence.reporters import OpenTelemetryReporter, PrometheusReporter

pytestmark = pytest.mark.anyio


@dataclass
class Tally(Context):
    done: list[str] = field(default_factory=list[str])


class Boom(Exception):
    """A beat failed."""


def step(
    name: str, fail_at: list[str], hook: list[Callable[[], None]]
) -> Callable[[Tally], Awaitable[None]]:
    async def beat(ctx: Tally) -> None:
        if name in fail_at:
            fail_at.remove(name)
            raise Boom(name)
        if hook:
            hook.pop()()
        ctx.done.append(name)

    beat.__name__ = name
    return beat


def counts(registry: CollectorRegistry, cadence: str) -> dict[str, float]:
    text = generate_latest(registry).decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "cadence_durable_events_total"
                and sample.labels["cadence"] == cadence
            ):
                found[sample.labels["event"]] = sample.value
    return found


def otel_counts(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    found: dict[str, int] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != "cadence.durable.events":
                    continue
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)
                    assert point.attributes is not None
                    kind = str(point.attributes["cadence.durable.event"])
                    found[kind] = found.get(kind, 0) + int(point.value)
    return found


async def test_claims_resumes_and_lost_leases_are_counted_by_both_reporters(
    tmp_path: Path,
) -> None:
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    tracer = TracerProvider()
    tracer.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    prometheus = PrometheusReporter(registry=registry)
    otel = OpenTelemetryReporter("shop", tracer, MeterProvider(metric_readers=[reader]))
    store = SQLiteStore(tmp_path / "runs.db", synchronous="NORMAL")
    fail_at = ["b"]
    hook: list[Callable[[], None]] = []
    cadence = (
        Cadence("tally", context_type=Tally)
        .with_reporter(prometheus.report)
        .with_reporter(otel.report)
        .then("a", step("a", fail_at, []))
        .then("b", step("b", fail_at, hook))
        .then("c", step("c", fail_at, []))
    )
    assert counts(registry, "tally") == {}  # made at a cadence's first durable event

    with pytest.raises(BeatError):
        await cadence.run(Tally(), run_id="order-1", store=store)
    assert counts(registry, "tally") == {
        "claimed": 1,
        "resumed": 0,
        "lease_lost": 0,
        "checkpoint_failed": 0,
    }
    assert (await cadence.run(Tally(), run_id="order-1", store=store)).done == ["a", "b", "c"]
    assert counts(registry, "tally") == {
        "claimed": 2,
        "resumed": 1,
        "lease_lost": 0,
        "checkpoint_failed": 0,
    }

    def steal() -> None:
        connection = sqlite3.connect(tmp_path / "runs.db")
        connection.execute("UPDATE cadence_runs SET owner = 'elsewhere:1:1:x'")
        connection.commit()
        connection.close()

    hook.append(steal)
    with pytest.raises(LeaseLostError):
        await cadence.run(Tally(), run_id="order-2", store=store)
    assert counts(registry, "tally")["lease_lost"] == 1
    assert otel_counts(reader) == {"claimed": 3, "resumed": 1, "lease_lost": 1}
    # the lost lease is an event on the span current when it was found: the run's
    lost = [
        (span.name, event)
        for span in exporter.get_finished_spans()
        for event in span.events
        if event.name == "cadence.durable.lease_lost"
    ]
    assert len(lost) == 1
    name, event = lost[0]
    assert name == "cadence.run tally"
    assert event.attributes is not None
    assert event.attributes["cadence.run.id"] == "order-2"
    assert str(event.attributes["error.type"]).endswith("LeaseLostError")
    await store.aclose()
