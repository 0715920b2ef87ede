"""Resilience decorators for beats and plain functions: retry, timeout, fallback, circuit breaker.

Each works on sync and async functions, stacks with `@beat` and with each other in any order,
and returns a function of exactly the type it was given. None of them ever retries, times out
or replaces a cancellation. Time is injectable (`use_clock`), and `set_testing()` makes retries
instant in your own tests.
"""

from __future__ import annotations

from cadence.resilience._breaker import BreakerSettings as BreakerSettings
from cadence.resilience._breaker import CircuitBreaker as CircuitBreaker
from cadence.resilience._breaker import CircuitState as CircuitState
from cadence.resilience._breaker import CircuitStats as CircuitStats
from cadence.resilience._breaker import StateListener as StateListener
from cadence.resilience._breaker import circuit_breaker as circuit_breaker
from cadence.resilience._breaker import get_circuit_breaker as get_circuit_breaker
from cadence.resilience._clock import Clock as Clock
from cadence.resilience._clock import get_clock as get_clock
from cadence.resilience._clock import is_testing as is_testing
from cadence.resilience._clock import set_clock as set_clock
from cadence.resilience._clock import set_testing as set_testing
from cadence.resilience._clock import use_clock as use_clock
from cadence.resilience._fallback import BeatFallback as BeatFallback
from cadence.resilience._fallback import FallbackDecorator as FallbackDecorator
from cadence.resilience._fallback import HandlerFallback as HandlerFallback
from cadence.resilience._fallback import ValueFallback as ValueFallback
from cadence.resilience._fallback import fallback as fallback
from cadence.resilience._retry import RetryEvent as RetryEvent
from cadence.resilience._retry import RetryOn as RetryOn
from cadence.resilience._retry import retry as retry
from cadence.resilience._timeout import abandoned_threads as abandoned_threads
from cadence.resilience._timeout import set_abandoned_thread_limit as set_abandoned_thread_limit
from cadence.resilience._timeout import timeout as timeout

__all__ = [
    "BeatFallback",
    "BreakerSettings",
    "CircuitBreaker",
    "CircuitState",
    "CircuitStats",
    "Clock",
    "FallbackDecorator",
    "HandlerFallback",
    "RetryEvent",
    "RetryOn",
    "StateListener",
    "ValueFallback",
    "abandoned_threads",
    "circuit_breaker",
    "fallback",
    "get_circuit_breaker",
    "get_clock",
    "is_testing",
    "retry",
    "set_abandoned_thread_limit",
    "set_clock",
    "set_testing",
    "timeout",
    "use_clock",
]
