"""Durable runs in the reporters: claims, resumes, lost leases and failed commits are counted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from durable_tally import Tally, steal, tally  # tests/, beside conftest.py
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from cadence import BeatError
from cadence.durable import LeaseLostError, SQLiteStore
from cadence.reporters import OpenTelemetryReporter, PrometheusReporter

from .exposition import samples

pytestmark = pytest.mark.anyio


def counts(registry: CollectorRegistry, cadence: str) -> dict[str, float]:
    """Return `event: value` of the cadence's durable-event counter."""
    return {
        dict(labels)["event"]: count
        for (sample, labels), count in samples(registry).items()
        if sample == "cadence_durable_events_total" and dict(labels)["cadence"] == cadence
    }


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
    cadence = tally(fail_at, hook).with_reporter(prometheus.report).with_reporter(otel.report)
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

    hook.append(steal(tmp_path / "runs.db"))
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
