"""Fully qualified names of the cadence objects the plugin looks at."""

from __future__ import annotations

from typing import Final

CONTEXT: Final = "cadence._context.Context"
IMMUTABLE_CONTEXT: Final = "cadence._context.ImmutableContext"
CADENCE: Final = "cadence._cadence.Cadence"
BEAT: Final = "cadence._beat.beat"
BEAT_DECORATOR: Final = "cadence._beat.BeatDecorator"
RETRY: Final = "cadence.resilience._retry.retry"
TIMEOUT: Final = "cadence.resilience._timeout.timeout"
CIRCUIT_BREAKER: Final = "cadence.resilience._breaker.circuit_breaker"
FALLBACK: Final = "cadence.resilience._fallback.fallback"
FALLBACK_DECORATOR: Final = "cadence.resilience._fallback.FallbackDecorator"
# Every type `fallback(...)` returns (one per form), whose `__call__` applies it to a function.
FALLBACK_GUARDS: Final = (
    FALLBACK_DECORATOR,
    "cadence.resilience._fallback.BeatFallback",
    "cadence.resilience._fallback.ValueFallback",
    "cadence.resilience._fallback.HandlerFallback",
)
DATACLASS: Final = "dataclasses.dataclass"

STEP_METHODS: Final = frozenset({"then", "sync", "split", "child"})
BUILDER_METHODS: Final = STEP_METHODS | {"on_error", "with_hooks", "with_reporter"}
