"""`@circuit_breaker`: stop calling a dependency that keeps failing, and probe it to recover.

```
CLOSED --(failure_threshold consecutive failures, or the failure-rate rule)--> OPEN
OPEN --(recovery_timeout elapsed; the next call is a probe)--> HALF_OPEN
HALF_OPEN --(a probe succeeds)--> CLOSED
HALF_OPEN --(a probe fails)--> OPEN
```

While OPEN, calls fail fast with `CircuitOpenError` carrying `retry_after`. In HALF_OPEN at most
`half_open_max_calls` probes run at once; further calls are refused until a probe decides.
State lives behind a `threading.Lock` that is never held across an await, so one breaker is
safe to share between threads and between event loops (Flask runs each request on its own).
"""

from __future__ import annotations

import enum
import functools
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, cast

from cadence import _events as events
from cadence._beat import default_name, is_async_callable
from cadence._errors import CircuitOpenError
from cadence.resilience._checks import at_least, exception_types, whole_at_least
from cadence.resilience._clock import Clock, get_clock

__all__ = [
    "BreakerSettings",
    "CircuitBreaker",
    "CircuitState",
    "CircuitStats",
    "StateListener",
    "circuit_breaker",
    "get_circuit_breaker",
]

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("cadence")

BREAKER_ATTRIBUTE = "__cadence_circuit_breaker__"
"""The attribute a breaker-wrapped function carries its breaker on (diagrams read it)."""


class CircuitState(enum.Enum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN

StateListener: TypeAlias = Callable[["CircuitBreaker", CircuitState, CircuitState], object]
"""`listener(breaker, old_state, new_state)`, called after every state change.

A listener that raises is logged on the `cadence` logger and changes nothing else: the call
that caused the change keeps its own outcome, and the other listeners are still called.
"""


@dataclass(frozen=True, slots=True)
class CircuitStats:
    """What a breaker has seen since it was made (or reset).

    Attributes:
        successes: Calls that returned.
        failures: Calls that raised a counted exception.
        ignored: Calls that raised an excluded exception or were cancelled.
        rejections: Calls refused without being made.

    """

    successes: int
    failures: int
    ignored: int
    rejections: int

    @property
    def calls(self) -> int:
        """Every call, made or refused."""
        return self.successes + self.failures + self.ignored + self.rejections


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """A circuit breaker's configuration (see `CircuitBreaker` for each setting).

    `clock` is `None` for a breaker that reads the current `get_clock()` at each call.
    """

    failure_threshold: int
    recovery_timeout: float
    half_open_max_calls: int
    failure_rate_threshold: float | None
    sliding_window: int
    minimum_calls: int
    exclude: tuple[type[BaseException], ...]
    clock: Clock | None = None


def _settings(  # noqa: PLR0917 # mirrors the decorator's arguments
    failure_threshold: int,
    recovery_timeout: float,
    half_open_max_calls: int,
    failure_rate_threshold: float | None,
    sliding_window: int,
    minimum_calls: int,
    exclude: tuple[type[BaseException], ...],
    clock: Clock | None,
) -> BreakerSettings:
    where = "circuit_breaker"
    whole_at_least(where, "failure_threshold", failure_threshold, 1)
    at_least(where, "recovery_timeout", recovery_timeout, 0, strict=True)
    whole_at_least(where, "half_open_max_calls", half_open_max_calls, 1)
    if failure_rate_threshold is not None:
        at_least(where, "failure_rate_threshold", failure_rate_threshold, 0, strict=True)
        if failure_rate_threshold > 1:
            raise ValueError(
                f"{where}: failure_rate_threshold must be <= 1, got {failure_rate_threshold!r}"
            )
    whole_at_least(where, "sliding_window", sliding_window, 1)
    whole_at_least(where, "minimum_calls", minimum_calls, 1)
    if minimum_calls > sliding_window:
        raise ValueError(
            f"{where}: minimum_calls must be <= sliding_window ({sliding_window}), "
            f"got {minimum_calls!r}"
        )
    return BreakerSettings(
        failure_threshold,
        float(recovery_timeout),
        half_open_max_calls,
        failure_rate_threshold,
        sliding_window,
        minimum_calls,
        exception_types(where, "exclude", exclude),
        clock,
    )


class CircuitBreaker:
    """A circuit breaker; use it as a decorator, or through `@circuit_breaker`.

    Args:
        name: Names the breaker in errors and logs.
        failure_threshold: Consecutive failures that open the circuit (>= 1).
        recovery_timeout: Seconds the circuit stays open before a probe is let through (> 0).
        half_open_max_calls: Probes allowed at once while half-open (>= 1).
        failure_rate_threshold: Also open when this share of the last `sliding_window` calls
            failed, once at least `minimum_calls` were made (resilience4j's count-based rule).
        sliding_window: Calls the failure-rate rule looks at.
        minimum_calls: Calls needed before the failure-rate rule applies.
        exclude: Exceptions that count neither as failure nor as success; they pass through.
        clock: The time source; default: the current `get_clock()` at each call.

    Raises:
        ValueError: an argument is out of range.

    """

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        recovery_timeout: float = 30.0,
        *,
        half_open_max_calls: int = 1,
        failure_rate_threshold: float | None = None,
        sliding_window: int = 100,
        minimum_calls: int = 10,
        exclude: tuple[type[BaseException], ...] = (),
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self._settings = _settings(
            failure_threshold,
            recovery_timeout,
            half_open_max_calls,
            failure_rate_threshold,
            sliding_window,
            minimum_calls,
            exclude,
            clock,
        )
        self._lock = threading.Lock()
        self._listeners: list[StateListener] = []
        self._state = CLOSED
        self._opened_at = 0.0
        self._round = 1  # the state's number: a probe's ticket, so stale probes decide nothing
        self._probes = 0  # probes in flight, of any round
        # State changes wait here for the listeners; one thread at a time delivers them, in order.
        self._pending: deque[tuple[CircuitState, CircuitState]] = deque()
        self._delivering = threading.RLock()
        self._consecutive = 0
        self._window: deque[bool] | None = (
            deque(maxlen=sliding_window) if failure_rate_threshold is not None else None
        )
        self._failures = self._ignored = self._rejections = 0
        # Successes in the closed state are the hot path: counted by an itertools.count, whose
        # next() is atomic under the GIL, so they take no lock.
        self._successes = itertools.count()
        events.breaker_created(self)

    # ------------------------------------------------------------------ reading

    @property
    def settings(self) -> BreakerSettings:
        """The breaker's configuration."""
        return self._settings

    @property
    def failure_threshold(self) -> int:
        """Consecutive failures that open the circuit."""
        return self._settings.failure_threshold

    @property
    def recovery_timeout(self) -> float:
        """Seconds the circuit stays open before a probe."""
        return self._settings.recovery_timeout

    @property
    def state(self) -> CircuitState:
        """The current state (an open circuit whose timeout has passed reads as half-open)."""
        with self._lock:
            self._refresh(self._now())
            state = self._state
        self._deliver()
        return state

    @property
    def retry_after(self) -> float:
        """Seconds until a probe may be let through (0 unless open)."""
        with self._lock:
            if self._state is not OPEN:
                return 0.0
            return max(0.0, self._opened_at + self._settings.recovery_timeout - self._now())

    @property
    def stats(self) -> CircuitStats:
        """Counts of successes, failures, ignored calls and rejections."""
        with self._lock:
            successes = _current_count(self._successes)
            return CircuitStats(successes, self._failures, self._ignored, self._rejections)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.value})"

    # ------------------------------------------------------------------ observing and steering

    def add_listener(self, listener: StateListener) -> None:
        """Call `listener(breaker, old_state, new_state)` after every state change.

        Listeners hear of changes in the order they happened, one at a time, outside the
        breaker's state lock (a listener may read the breaker).
        """
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: StateListener) -> None:
        """Stop calling `listener`."""
        with self._lock:
            self._listeners.remove(listener)

    def open(self) -> None:
        """Open the circuit now; a probe is let through after `recovery_timeout`."""
        with self._lock:
            self._move(OPEN, self._now())
        self._deliver()

    def close(self) -> None:
        """Close the circuit now and forget the failures counted so far."""
        with self._lock:
            self._move(CLOSED, self._now())
        self._deliver()

    def reset(self) -> None:
        """Close the circuit and clear every count, as if the breaker were new."""
        with self._lock:
            self._move(CLOSED, self._now())
            self._successes = itertools.count()
            self._failures = self._ignored = self._rejections = 0
        self._deliver()

    # ------------------------------------------------------------------ calling

    def __call__(self, fn: F) -> F:
        """Guard `fn` (sync or async) with this breaker; the wrapper keeps `fn`'s type."""
        acquire, record, succeeded = self._acquire, self._record, self._succeeded

        if is_async_callable(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:  # Any: F's own signature
                ticket = acquire()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as error:
                    record(ticket, error)
                    raise
                succeeded(ticket)
                return result

            setattr(async_wrapper, BREAKER_ATTRIBUTE, self)
            return cast("F", async_wrapper)

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:  # Any: F's own signature
            ticket = acquire()
            try:
                result = fn(*args, **kwargs)
            except BaseException as error:
                record(ticket, error)
                raise
            succeeded(ticket)
            return result

        setattr(sync_wrapper, BREAKER_ATTRIBUTE, self)
        return cast("F", sync_wrapper)

    def _acquire(self) -> int:
        """Admit a call or raise `CircuitOpenError`.

        Returns the call's ticket: 0 for an ordinary call, or, for a probe, the number of the
        half-open round it was admitted to (a probe of an earlier round decides nothing).
        """
        if self._state is CLOSED:  # read without the lock: a racing trip admits one more call
            return 0
        with self._lock:
            self._refresh(self._now())
            state = self._current()
            if state is OPEN:
                self._rejections += 1
                retry_after = self._opened_at + self._settings.recovery_timeout - self._now()
                error = CircuitOpenError(self.name, max(0.0, retry_after))
            elif state is CLOSED:  # closed meanwhile, by another call or by close()
                return 0
            elif self._probes >= self._settings.half_open_max_calls:
                self._rejections += 1
                error = CircuitOpenError(self.name, 0.0)
            else:
                self._probes += 1
                error = None
            ticket = self._round
        if error is not None:
            self._deliver()
            raise error
        try:
            self._deliver()
        except BaseException:  # an interrupt while telling the listeners: the probe never ran
            with self._lock:
                self._probes -= 1
            raise
        return ticket

    def _succeeded(self, ticket: int) -> None:
        """Count a success; in the closed state with nothing to reset, without the lock."""
        if not ticket and self._state is CLOSED and not self._consecutive and self._window is None:
            next(self._successes)
            return
        self._record(ticket, None)

    def _record(self, ticket: int, error: BaseException | None) -> None:
        with self._lock:
            if ticket:
                self._probes -= 1  # a probe holds its slot until it ends, whatever the round
            probe = ticket == self._round and self._state is HALF_OPEN
            if error is None:
                next(self._successes)
                if self._state is CLOSED:
                    self._consecutive = 0
                    if self._window is not None:
                        self._window.append(False)
                    return
                if probe:
                    self._move(CLOSED, 0.0)
            elif not isinstance(error, Exception) or isinstance(error, self._settings.exclude):
                self._ignored += 1
                return
            else:
                self._failures += 1
                self._count_failure(probe)
        self._deliver()

    # ------------------------------------------------------------------ state machine (locked)

    def _current(self) -> CircuitState:
        return self._state

    def _now(self) -> float:
        return (self._settings.clock or get_clock()).monotonic()

    def _count_failure(self, probe: bool) -> None:  # internal
        if self._state is HALF_OPEN:
            if probe:
                self._move(OPEN, self._now())
            return
        if self._state is OPEN:
            return
        self._consecutive += 1
        window = self._window
        if window is not None:
            window.append(True)
        settings = self._settings
        if self._consecutive >= settings.failure_threshold or (
            window is not None
            and settings.failure_rate_threshold is not None
            and len(window) >= settings.minimum_calls
            and sum(window) / len(window) >= settings.failure_rate_threshold
        ):
            self._move(OPEN, self._now())

    def _refresh(self, now: float) -> None:
        if self._state is OPEN and now - self._opened_at >= self._settings.recovery_timeout:
            self._move(HALF_OPEN, now)

    def _move(self, new: CircuitState, now: float) -> None:
        """Enter `new`; queue the change for the listeners. Every change starts a new round."""
        old = self._state
        self._state = new
        if new is OPEN:
            self._opened_at = now
        elif new is CLOSED:
            self._consecutive = 0
            if self._window is not None:
                self._window.clear()
        if old is not new:
            self._round += 1
            if self._listeners:
                self._pending.append((old, new))

    def _deliver(self) -> None:
        """Tell the listeners of queued changes, in order, outside the state lock."""
        if not self._pending:
            return
        with self._delivering:
            while True:
                with self._lock:
                    if not self._pending:
                        return
                    old, new = self._pending.popleft()
                    listeners = list(self._listeners)
                for listener in listeners:
                    try:
                        listener(self, old, new)
                    except Exception:  # isolated like a hook: the call keeps its own outcome
                        logger.exception(
                            "state listener %r of circuit breaker %r raised on %s -> %s; "
                            "the breaker goes on",
                            listener,
                            self.name,
                            old.value,
                            new.value,
                        )


def _current_count(counter: itertools.count[int]) -> int:
    """Return how many times `next` was called on a fresh `itertools.count()`."""
    return int(repr(counter)[len("count(") : -1])


_registry: dict[str, CircuitBreaker] = {}
_registry_lock = threading.Lock()


def get_circuit_breaker(name_or_function: str | Callable[..., Any]) -> CircuitBreaker:
    """Return a breaker by the `name=` it was given, or the breaker guarding a function.

    Raises:
        LookupError: there is no such breaker.

    """
    if isinstance(name_or_function, str):
        with _registry_lock:
            breaker = _registry.get(name_or_function)
        if breaker is None:
            raise LookupError(f"no circuit breaker is named {name_or_function!r}")
        return breaker
    breaker = getattr(name_or_function, BREAKER_ATTRIBUTE, None)
    if not isinstance(breaker, CircuitBreaker):
        raise LookupError(f"{name_or_function!r} is not guarded by a circuit breaker")
    return breaker


def circuit_breaker(
    failure_threshold: int = 5,
    recovery_timeout: float = 30.0,
    *,
    name: str | None = None,
    half_open_max_calls: int = 1,
    failure_rate_threshold: float | None = None,
    sliding_window: int = 100,
    minimum_calls: int = 10,
    exclude: tuple[type[BaseException], ...] = (),
    clock: Clock | None = None,
) -> Callable[[F], F]:
    """Guard a sync or async function (or beat) with a circuit breaker.

    Without `name`, each decorated function gets a breaker of its own. With `name`, every
    function decorated with that name shares one breaker (it must be declared with the same
    settings each time). `get_circuit_breaker(name or function)` returns it, to read its state
    and stats, listen to it, or open, close and reset it by hand. See `CircuitBreaker` for the
    arguments.

    Raises:
        ValueError: an argument is out of range, or `name` is taken by a breaker with other
            settings (raised when decorating).

    """
    settings = _settings(
        failure_threshold,
        recovery_timeout,
        half_open_max_calls,
        failure_rate_threshold,
        sliding_window,
        minimum_calls,
        exclude,
        clock,
    )

    def make(breaker_name: str) -> CircuitBreaker:
        return CircuitBreaker(
            breaker_name,
            failure_threshold,
            recovery_timeout,
            half_open_max_calls=half_open_max_calls,
            failure_rate_threshold=failure_rate_threshold,
            sliding_window=sliding_window,
            minimum_calls=minimum_calls,
            exclude=exclude,
            clock=clock,
        )

    shared: CircuitBreaker | None = None
    if name is not None:
        with _registry_lock:
            shared = _registry.get(name)
            if shared is None:
                shared = _registry[name] = make(name)
        if shared.settings != settings:
            raise ValueError(
                f"circuit_breaker: a breaker named {name!r} already exists with other settings "
                f"({shared.settings}); give this one another name or the same settings"
            )

    def decorate(fn: F) -> F:
        breaker = shared if shared is not None else make(default_name(fn))
        return breaker(fn)

    return decorate
