"""`@retry`: call again after a failure, waiting longer each time."""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, cast

from anyio.lowlevel import checkpoint_if_cancelled

from cadence import _events as events
from cadence._beat import default_name, is_async_callable
from cadence.resilience._checks import at_least, exception_filter, whole_at_least
from cadence.resilience._clock import get_clock

__all__ = ["RetryEvent", "RetryOn", "retry"]

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("cadence")

RetryOn: TypeAlias = type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool]
"""Which failures to retry: exception types, or a predicate of the exception."""


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """One retry about to happen, as `on_retry` listeners receive it.

    Attributes:
        name: The retried function's beat name.
        attempt: The attempt that just failed (1 for the first call).
        max_attempts: The attempts allowed in all.
        wait: Seconds to wait before the next attempt.
        error: The exception of the failed attempt.

    """

    name: str
    attempt: int
    max_attempts: int
    wait: float
    error: Exception


def retry(  # noqa: PLR0915 # the sync and async wrappers are built side by side
    max_attempts: int = 3,
    delay: float = 1.0,
    backoff: float = 2.0,
    *,
    max_delay: float | None = None,
    jitter: float = 0.0,
    on: RetryOn = Exception,
    max_time: float | None = None,
    on_retry: Callable[[RetryEvent], object] | None = None,
) -> Callable[[F], F]:
    """Retry a sync or async function (or beat) when it raises.

    The n-th wait is `delay * backoff ** (n - 1)`, capped at `max_delay`, then spread by
    `jitter`: with `jitter=0.2` each wait is drawn uniformly from 80% to 120% of itself. The
    default is no jitter, so waits are exactly as configured; fleets of clients calling one
    service should set some. Each retry logs a WARNING on the `cadence` logger and calls
    `on_retry`. When attempts (or `max_time`) run out, the last exception propagates with a note
    recording the attempts made. Cancellation is never retried.

    Args:
        max_attempts: Calls in all, the first included (>= 1).
        delay: Seconds before the first retry (>= 0).
        backoff: Factor by which each wait grows (>= 1).
        max_delay: Upper bound of one wait, before jitter (>= 0).
        jitter: Relative spread of each wait, from 0 (none) to 1.
        on: The exceptions to retry: types, or a predicate; others propagate at once.
        max_time: Seconds the attempts and waits may take in all; a retry whose wait would
            end past it is not made.
        on_retry: Called with a `RetryEvent` before each wait.

    Raises:
        ValueError: an argument is out of range (raised when decorating).

    """
    whole_at_least("retry", "max_attempts", max_attempts, 1)
    at_least("retry", "delay", delay, 0)
    at_least("retry", "backoff", backoff, 1)
    if max_delay is not None:
        at_least("retry", "max_delay", max_delay, 0)
    at_least("retry", "jitter", jitter, 0)
    if jitter > 1:
        raise ValueError(f"retry: jitter must be <= 1, got {jitter!r}")
    if max_time is not None:
        at_least("retry", "max_time", max_time, 0, strict=True)
    should_retry = exception_filter("retry", on)

    def decorate(fn: F) -> F:  # noqa: PLR0915 # likewise
        name = default_name(fn)

        def next_wait(attempt: int, error: Exception, started: float) -> float | None:
            """Return the wait before the next attempt, or None to give up."""
            if attempt >= max_attempts or not should_retry(error):
                return None
            wait = delay * backoff ** (attempt - 1)
            if max_delay is not None:
                wait = min(wait, max_delay)
            if jitter:
                wait *= random.uniform(1 - jitter, 1 + jitter)  # noqa: S311 # spreading load, not secrets
            if max_time is not None and get_clock().monotonic() + wait - started > max_time:
                return None
            logger.warning(
                "retrying %r (attempt %d of %d failed: %s: %s); next attempt in %.3fs",
                name,
                attempt,
                max_attempts,
                type(error).__name__,
                error,
                wait,
            )
            events.record_retry(name, attempt, max_attempts, wait, error)
            if on_retry is not None:
                on_retry(RetryEvent(name, attempt, max_attempts, wait, error))
            return wait

        def give_up(error: Exception, attempt: int) -> Exception:
            if not should_retry(error):
                return error  # not ours to retry: it propagates as it came
            error.add_note(
                f"cadence.retry: {name!r} gave up after {attempt} of {max_attempts} attempts"
            )
            return error

        if is_async_callable(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:  # Any: F's own signature
                # The budget runs from the first call; the clock is read only when there is one.
                started = get_clock().monotonic() if max_time is not None else 0.0
                try:
                    return await fn(*args, **kwargs)
                except Exception as first:  # noqa: BLE001 # `on` decides; cancellation is a BaseException
                    error = first
                attempt = 1
                while True:
                    # Under a cancelled scope the cancellation wins, before any retry, whatever
                    # the clock's sleep does.
                    await checkpoint_if_cancelled()
                    wait = next_wait(attempt, error, started)
                    if wait is None:
                        raise give_up(error, attempt)
                    await get_clock().async_sleep(wait)
                    attempt += 1
                    try:
                        return await fn(*args, **kwargs)
                    except Exception as again:  # noqa: BLE001 # as above
                        error = again

            events.mark(async_wrapper, "retry", f"retry x{max_attempts}")
            return cast("F", async_wrapper)

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:  # Any: F's own signature
            started = get_clock().monotonic() if max_time is not None else 0.0
            try:
                return fn(*args, **kwargs)
            except Exception as first:  # noqa: BLE001 # `on` decides
                error = first
            attempt = 1
            while True:
                wait = next_wait(attempt, error, started)
                if wait is None:
                    raise give_up(error, attempt)
                get_clock().sleep(wait)
                attempt += 1
                try:
                    return fn(*args, **kwargs)
                except Exception as again:  # noqa: BLE001 # as above
                    error = again

        events.mark(sync_wrapper, "retry", f"retry x{max_attempts}")
        return cast("F", sync_wrapper)

    return decorate
