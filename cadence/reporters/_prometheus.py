"""`PrometheusReporter`: counters, histograms and gauges of runs, beats, retries and breakers."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Awaitable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from cadence._context import Context
from cadence._events import (
    DURABLE_KINDS,
    OUTCOMES,
    DurableEvent,
    Frame,
    Observer,
    Outcome,
    Run,
    current_run,
    durable_kind,
    observe_every_breaker,
    observed,
)
from cadence._plan import walk
from cadence.reporters._base import ReportFunction, missing

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
except ImportError as error:  # pragma: no cover # exercised by a subprocess test
    raise missing("prometheus", "prometheus-client", error) from None

if TYPE_CHECKING:
    from cadence._cadence import Cadence
    from cadence.resilience._breaker import CircuitBreaker, CircuitState

__all__ = ["PrometheusReporter"]

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Seconds: a millisecond beat to a minute-long run."""

_RUN_OUTCOMES: tuple[Outcome, ...] = tuple(o for o in OUTCOMES if o != "fallback")
_STATES = ("closed", "open", "half_open")


class _Metrics:
    """One prefix's metric families on one registry, shared by every reporter using them."""

    def __init__(self, prefix: str, registry: CollectorRegistry, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.runs = Counter(
            f"{prefix}_runs", "Cadence runs, by outcome.", ["cadence", "outcome"], registry=registry
        )
        self.run_duration = Histogram(
            f"{prefix}_run_duration_seconds",
            "Seconds each cadence run took.",
            ["cadence"],
            registry=registry,
            buckets=self.buckets,
        )
        self.in_progress = Gauge(
            f"{prefix}_runs_in_progress",
            "Cadence runs in progress.",
            ["cadence"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.beats = Counter(
            f"{prefix}_beats",
            "Beats run, by outcome.",
            ["cadence", "beat", "outcome"],
            registry=registry,
        )
        self.beat_duration = Histogram(
            f"{prefix}_beat_duration_seconds",
            "Seconds each beat took.",
            ["cadence", "beat"],
            registry=registry,
            buckets=self.buckets,
        )
        self.retries = Counter(
            f"{prefix}_beat_retries",
            "Retries made inside beats (by @retry).",
            ["cadence", "beat"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            f"{prefix}_circuit_breaker_state",
            "1 for the state each circuit breaker is in, 0 for the others.",
            ["breaker", "state"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.durable = Counter(
            f"{prefix}_durable_events",
            "Durable runs' claims, resumes, lost leases and failed checkpoints.",
            ["cadence", "event"],
            registry=registry,
        )
        # Label children, looked up once: `labels()` costs as much as the observation itself.
        self.beat_children: dict[tuple[str, str], _BeatSeries] = {}
        self.run_children: dict[str, _RunSeries] = {}

    def beat(self, cadence: str, path: str) -> _BeatSeries:
        series = self.beat_children.get((cadence, path))
        if series is None:
            series = self.beat_children.setdefault(
                (cadence, path), _BeatSeries(self, cadence, path)
            )
            runs = self.run_children.get(cadence)
            if runs is not None:
                runs.beats.setdefault(path, series)
        return series

    def run(self, cadence: str) -> _RunSeries:
        series = self.run_children.get(cadence)
        if series is None:
            series = self.run_children.setdefault(cadence, _RunSeries(self, cadence))
            for (name, path), beat in list(self.beat_children.items()):
                if name == cadence:
                    series.beats.setdefault(path, beat)
        return series


class _BeatSeries:
    __slots__ = ("duration", "outcomes", "retries", "success")

    def __init__(self, metrics: _Metrics, cadence: str, path: str) -> None:
        self.duration = metrics.beat_duration.labels(cadence, path)
        self.outcomes = {o: metrics.beats.labels(cadence, path, o) for o in OUTCOMES}
        self.success = self.outcomes["success"]  # the usual outcome, one lookup less
        self.retries = metrics.retries.labels(cadence, path)


class _RunSeries:
    __slots__ = ("beats", "duration", "in_progress", "outcomes")

    def __init__(self, metrics: _Metrics, cadence: str) -> None:
        self.duration = metrics.run_duration.labels(cadence)
        self.in_progress = metrics.in_progress.labels(cadence)
        self.outcomes = {o: metrics.runs.labels(cadence, o) for o in _RUN_OUTCOMES}
        # The cadence's beat series by path: a run's record holds this, so a beat's end
        # finds its series by its path alone.
        self.beats: dict[str, _BeatSeries] = {}


_shared_lock = threading.Lock()
_shared: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Metrics]] = (
    weakref.WeakKeyDictionary()
)


def _metrics_for(prefix: str, registry: CollectorRegistry, buckets: Sequence[float]) -> _Metrics:
    with _shared_lock:
        by_prefix = _shared.setdefault(registry, {})
        metrics = by_prefix.get(prefix)
        if metrics is None:
            try:
                metrics = by_prefix[prefix] = _Metrics(prefix, registry, buckets)
            except ValueError as error:
                raise ValueError(
                    f"PrometheusReporter(prefix={prefix!r}): the registry already holds "
                    f"metrics of these names, not made by a PrometheusReporter ({error}); "
                    "choose another prefix or registry"
                ) from error
        elif metrics.buckets != tuple(buckets):
            raise ValueError(
                f"PrometheusReporter(prefix={prefix!r}): this registry already has the "
                f"prefix's histograms with buckets {metrics.buckets}, not {tuple(buckets)}"
            )
    return metrics


class PrometheusReporter(Observer):
    """Count and time cadence runs and beats in Prometheus metrics.

    Metrics (`prefix` defaults to `cadence`): `{prefix}_runs_total{cadence,outcome}`,
    `{prefix}_run_duration_seconds{cadence}`, `{prefix}_runs_in_progress{cadence}`,
    `{prefix}_beats_total{cadence,beat,outcome}`, `{prefix}_beat_duration_seconds{cadence,beat}`,
    `{prefix}_beat_retries_total{cadence,beat}`, `{prefix}_circuit_breaker_state{breaker,state}`
    and, for durable runs, `{prefix}_durable_events_total{cadence,event}` (event: claimed,
    resumed, lease_lost, checkpoint_failed).
    `outcome` is one of success, failure, timeout, circuit_open, fallback, cancelled. Label
    values come from the plan (cadence names, beat paths, breaker names), never from a context.
    Attaching the reporter to a cadence creates that cadence's series at zero. Reporters with
    one prefix on one registry share the metrics.

    Args:
        prefix: The start of every metric name.
        registry: Where the metrics are registered (default: prometheus_client's `REGISTRY`).
        buckets: Histogram bucket bounds, in seconds.

    Raises:
        ValueError: the registry holds other metrics of these names.

    """

    def __init__(
        self,
        prefix: str = "cadence",
        registry: CollectorRegistry | None = None,
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        self.prefix = prefix
        self.registry = REGISTRY if registry is None else registry
        self._metrics = _metrics_for(prefix, self.registry, buckets)
        self.report = ReportFunction(self, self._direct)
        observe_every_breaker(self)  # the state gauge is the process's, not one cadence's

    def __repr__(self) -> str:
        return f"PrometheusReporter(prefix={self.prefix!r})"

    # ---- preparing

    def prepare(self, cadence: Cadence[Any], breakers: Iterable[CircuitBreaker]) -> None:
        """Create the cadence's series at zero, and its breakers' state series."""
        metrics = self._metrics
        metrics.run(cadence.name)
        for path in walk(cadence).paths():
            metrics.beat(cadence.name, path)

    def breaker_seen(self, breaker: CircuitBreaker) -> None:
        """Create the breaker's state series, set to its state."""
        self._set_state(breaker.name, breaker.state.value)

    def _set_state(self, breaker: str, state: str) -> None:
        gauge = self._metrics.breaker_state
        for name in _STATES:
            gauge.labels(breaker, name).set(1 if name == state else 0)

    # ---- observing

    def run_started(self, run: Run) -> None:
        """Count the run in progress."""
        series = self._metrics.run(run.cadence)
        series.in_progress.inc()
        run.state = series

    def run_ended(
        self, run: Run, duration: float, error: BaseException | None, outcome: Outcome
    ) -> None:
        """Count and time the run."""
        series = run.state if isinstance(run.state, _RunSeries) else self._metrics.run(run.cadence)
        series.in_progress.dec()
        series.outcomes.get(outcome, series.outcomes["failure"]).inc()
        series.duration.observe(duration)

    def after_beat(
        self,
        beat_name: str,
        context: Context,
        duration: float,
        error: BaseException | None = None,
    ) -> Awaitable[None] | None:
        """Count and time the beat: `Observer.after_beat`, its usual case made inline.

        The usual case: a sequential beat of a run on top of the stack, that succeeded and
        that nothing noticed (its run holds no frame): no frame is filled in for it.
        """
        stack = observed.get()
        run = stack[-1] if stack else None
        if error is None and type(run) is Run and run.owner is self and run.beat is None:
            state = run.state
            series = state.beats.get(beat_name) if type(state) is _RunSeries else None
            if series is not None:
                series.success.inc()
                series.duration.observe(duration)
                return None
        return super().after_beat(beat_name, context, duration, error)

    def beat_ended(
        self, frame: Frame, duration: float, error: BaseException | None, outcome: Outcome
    ) -> None:
        """Count and time the beat, and the retries made in it."""
        run = frame.run
        state = run.state
        series = state.beats.get(frame.path) if type(state) is _RunSeries else None
        if series is None:
            series = self._metrics.beat(run.cadence, frame.path)
        (series.success if outcome == "success" else series.outcomes[outcome]).inc()
        series.duration.observe(duration)
        if frame.pending:
            retries = sum(1 for n in frame.pending if n.kind == "retry")
            if retries:
                series.retries.inc(retries)

    def breaker_changed(  # noqa: PLR0917 # as in Observer
        self,
        breaker: str,
        old: CircuitState,
        new: CircuitState,
        cadence: str,
        frame: Frame | None,
        at: float,
    ) -> None:
        """Move the breaker's state gauge."""
        self._set_state(breaker, new.value)

    def durable_event(self, event: DurableEvent) -> None:
        """Count the durable run's event (the cadence's four series made at zero the first time)."""
        durable = self._metrics.durable
        for kind in DURABLE_KINDS:
            durable.labels(event.cadence, kind)
        durable.labels(event.cadence, durable_kind(event)).inc()

    def _direct(self, beat_name: str, elapsed: float) -> None:
        """Record a beat reported by a direct `report(...)` call: a success of the current run."""
        run = current_run()
        series = self._metrics.beat("" if run is None else run.cadence, beat_name)
        series.outcomes["success"].inc()
        series.duration.observe(elapsed)
