"""`OpenTelemetryReporter`: a span per run and per beat, and duration and activity metrics.

Spans open before the run and before each beat, in the beat's own task, and are made current
there (attached to the OpenTelemetry context), so anything a beat instruments (an HTTP client's
span, a database driver's) is a child of the beat's span, in worker threads too: anyio carries
the context into the thread that runs a sync beat. Only `opentelemetry-api` is needed; the
reporter never sets a global provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from cadence._errors import root_cause
from cadence._events import DurableEvent, Frame, Notice, Observer, Outcome, Run, durable_kind
from cadence.reporters._base import ReportFunction, missing

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as error:  # pragma: no cover # exercised by a subprocess test
    raise missing("opentelemetry", "opentelemetry-api", error) from None

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context as OtelContext
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from cadence.resilience._breaker import CircuitState

__all__ = ["OpenTelemetryReporter"]

SCOPE: Final = "cadence"
"""The instrumentation scope name of cadence's tracer and meter."""

DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    30.0,
    60.0,
)
"""Second-scale bucket bounds (OpenTelemetry's HTTP duration advice, extended to a minute)."""


class _Open:
    """A span this reporter opened, and the context token that made it current."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: Token[OtelContext]) -> None:
        self.span = span
        self.token = token


def _error_type(error: BaseException) -> str:
    """Return `error.type`: the exception class's fully qualified name (builtins unqualified)."""
    kind = type(error)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _version() -> str:
    from cadence import __version__  # noqa: PLC0415 # the package imports this module lazily

    return __version__


class OpenTelemetryReporter(Observer):
    """Trace cadence runs and beats with OpenTelemetry, and record their durations.

    Spans: `cadence.run {name}` per run and `cadence.beat {path}` per beat (kind INTERNAL),
    each current while it runs. A failure sets status ERROR, records the exception and sets
    `error.type`; a cancellation leaves the status unset; retries, fallbacks and timeouts inside
    a beat are span events, and a beat that recovered is not an error. Metrics:
    `cadence.run.duration` and `cadence.beat.duration` (histograms, seconds) and
    `cadence.run.active` (runs in progress), and for durable runs `cadence.durable.events`
    (attribute `cadence.durable.event`: claimed, resumed, lease_lost, checkpoint_failed).

    Args:
        service_name: Recorded on every run span and run metric point as `cadence.service`;
            the service itself is named by the provider's Resource (`service.name`), which the
            application configures (see the observability docs).
        tracer_provider: Where spans go (default: the global provider, looked up at each span,
            so one configured after the reporter is made is still used).
        meter_provider: Where metrics go (default: the global provider, likewise).

    """

    def __init__(
        self,
        service_name: str,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.service_name = service_name
        version = _version()
        # Without a provider, the API's proxy tracer and meter follow whatever global provider
        # the application sets, before or after this call; cadence never sets one itself.
        self._tracer = trace.get_tracer(SCOPE, version, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, version, meter_provider=meter_provider)
        self._beat_duration = meter.create_histogram(
            "cadence.beat.duration",
            unit="s",
            description="Duration of cadence beats.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._run_duration = meter.create_histogram(
            "cadence.run.duration",
            unit="s",
            description="Duration of cadence runs.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._active = meter.create_up_down_counter(
            "cadence.run.active", unit="{run}", description="Cadence runs in progress."
        )
        self._durable = meter.create_counter(
            "cadence.durable.events",
            unit="{event}",
            description="Durable runs' claims, resumes, lost leases and failed checkpoints.",
        )
        self.report = ReportFunction(self, self._direct)

    def __repr__(self) -> str:
        return f"OpenTelemetryReporter(service_name={self.service_name!r})"

    # ---- runs

    def run_started(self, run: Run) -> None:
        """Open the run's span and make it current."""
        attributes: dict[str, str] = {
            "cadence.name": run.cadence,
            "cadence.run.id": run.run_id,
            "cadence.service": self.service_name,
        }
        if run.parent_id is not None:
            attributes["cadence.run.parent_id"] = run.parent_id
        span = self._tracer.start_span(
            f"cadence.run {run.cadence}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        run.state = _Open(span, otel_context.attach(trace.set_span_in_context(span)))
        self._active.add(1, {"cadence.name": run.cadence, "cadence.service": self.service_name})

    def run_ended(
        self, run: Run, duration: float, error: BaseException | None, outcome: Outcome
    ) -> None:
        """End the run's span with the run's outcome, and record its duration."""
        points = {"cadence.name": run.cadence, "cadence.service": self.service_name}
        self._active.add(-1, points)
        recorded = {**points, "cadence.outcome": outcome}
        if isinstance(run.state, _Open):
            self._close(run.state, error, outcome)
        if isinstance(error, Exception):
            recorded["error.type"] = _error_type(root_cause(error))
        self._run_duration.record(duration, recorded)

    def durable_event(self, event: DurableEvent) -> None:
        """Count the durable run's event; a lost lease or failed commit is an event on the span."""
        kind = durable_kind(event)
        attributes = {
            "cadence.name": event.cadence,
            "cadence.service": self.service_name,
            "cadence.durable.event": kind,
        }
        self._durable.add(1, attributes)
        if kind in {"lease_lost", "checkpoint_failed"}:
            details: dict[str, str | int] = {
                "cadence.run.id": event.run_id or "",
                "cadence.durable.position": event.position,
            }
            error = getattr(event, "error", None)
            if isinstance(error, Exception):
                details["error.type"] = _error_type(error)
            trace.get_current_span().add_event(f"cadence.durable.{kind}", details)

    # ---- beats

    def beat_started(self, frame: Frame) -> None:
        """Open the beat's span in the beat's task and make it current for the beat."""
        run = frame.run
        path = frame.path
        step, _, _ = path.partition(".")
        span = self._tracer.start_span(
            f"cadence.beat {path}",
            kind=SpanKind.INTERNAL,
            attributes={
                "cadence.name": run.cadence,
                "cadence.beat.path": path,
                "cadence.step": step,
            },
        )
        frame.state = _Open(span, otel_context.attach(trace.set_span_in_context(span)))

    def beat_ended(
        self, frame: Frame, duration: float, error: BaseException | None, outcome: Outcome
    ) -> None:
        """Record the beat's retries and fallbacks as events, end its span, record its duration."""
        state = frame.state
        if isinstance(state, _Open):
            for notice in frame.pending:
                _add_notice(state.span, notice)
            self._close(state, error, outcome)
        recorded = {
            "cadence.name": frame.run.cadence,
            "cadence.beat.path": frame.path,
            "cadence.outcome": outcome,
        }
        if isinstance(error, Exception):
            recorded["error.type"] = _error_type(error)
        self._beat_duration.record(duration, recorded)

    def breaker_changed(  # noqa: PLR0917 # as in Observer
        self,
        breaker: str,
        old: CircuitState,
        new: CircuitState,
        cadence: str,
        frame: Frame | None,
        at: float,
    ) -> None:
        """Add the change to the span of the beat that caused it, if any."""
        if frame is not None and isinstance(frame.state, _Open):
            frame.state.span.add_event(
                "cadence.circuit_breaker.state_change",
                {
                    "cadence.circuit_breaker.name": breaker,
                    "cadence.circuit_breaker.old_state": old.value,
                    "cadence.circuit_breaker.new_state": new.value,
                },
                timestamp=int(at * 1e9),
            )

    # ---- shared

    @staticmethod
    def _close(opened: _Open, error: BaseException | None, outcome: Outcome) -> None:
        span = opened.span
        span.set_attribute("cadence.outcome", outcome)
        if isinstance(error, Exception):
            cause = root_cause(error)
            span.record_exception(error)
            span.set_attribute("error.type", _error_type(cause))
            span.set_status(Status(StatusCode.ERROR, f"{type(cause).__name__}: {cause}"))
        span.end()
        otel_context.detach(opened.token)

    def _direct(self, beat_name: str, elapsed: float) -> None:
        """Record a beat reported by a direct `report(...)` call: its duration only."""
        self._beat_duration.record(
            elapsed,
            {"cadence.beat.path": beat_name, "cadence.outcome": "success"},
        )


def _add_notice(span: Span, notice: Notice) -> None:
    attributes: Mapping[str, str | int | float]
    if notice.kind == "retry":
        name = "cadence.retry"
        attributes = {
            "cadence.function": notice.function,
            "cadence.retry.attempt": notice.attempt,
            "cadence.retry.max_attempts": notice.max_attempts,
            "cadence.retry.wait": notice.wait,
        }
    elif notice.kind == "fallback":
        name = "cadence.fallback"
        attributes = {"cadence.function": notice.function}
    elif notice.kind == "timeout":
        name = "cadence.timeout"
        attributes = {"cadence.function": notice.function, "cadence.timeout": notice.seconds}
    else:
        return
    if notice.error is not None:
        attributes = {
            **attributes,
            "exception.type": _error_type(notice.error),
            "exception.message": str(notice.error),
        }
    span.add_event(name, attributes, timestamp=int(notice.at * 1e9))
