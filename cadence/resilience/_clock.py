"""Time as the resilience decorators see it: injectable, and instant in testing mode."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio

__all__ = ["Clock", "get_clock", "is_testing", "set_clock", "set_testing", "use_clock"]


@dataclass(frozen=True)
class Clock:
    """The time source of `retry` waits and `circuit_breaker` timeouts.

    Attributes:
        monotonic: Seconds from an arbitrary origin, never going backwards.
        sleep: Blocks the calling thread (used by sync functions).
        async_sleep: Suspends the calling task (used by async functions).

    """

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    async_sleep: Callable[[float], Awaitable[None]] = field(default=anyio.sleep)


def _no_sleep(seconds: float) -> None:  # a sleep that does not
    """Skip a wait (testing mode)."""


async def _no_async_sleep(seconds: float) -> None:  # noqa: ARG001 # likewise
    """Skip a wait (testing mode), still yielding to the event loop once."""
    await anyio.lowlevel.checkpoint()


_REAL = Clock()
_INSTANT = Clock(sleep=_no_sleep, async_sleep=_no_async_sleep)


class _State:
    clock: Clock = _REAL
    testing: bool = False
    saved: Clock = _REAL  # the clock testing mode replaced, restored when it ends


_state = _State()


def get_clock() -> Clock:
    """Return the clock the decorators use now."""
    return _state.clock


def set_clock(clock: Clock) -> Clock:
    """Make every decorator use `clock`; return the clock used before."""
    previous = _state.clock
    _state.clock = clock
    return previous


@contextmanager
def use_clock(clock: Clock) -> Generator[Clock, None, None]:
    """Use `clock` inside the `with` block, then restore the previous one."""
    previous = set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(previous)


def set_testing(testing: bool = True) -> None:  # mirrors stamina.set_testing
    """Switch testing mode: retries wait no time at all (the attempts still happen).

    Use it in your own test suite so retried beats do not slow it down; it replaces the clock
    with one whose sleeps return at once, and `set_testing(False)` restores the clock that was
    in use before (the one `set_clock` set, not necessarily the real one). A clock set while
    testing mode is on stays in use when it ends. Switching to the mode already on does nothing.
    """
    if testing and not _state.testing:
        _state.saved = _state.clock
        _state.clock = _INSTANT
    elif not testing and _state.testing:
        if _state.clock is _INSTANT:  # not replaced meanwhile by set_clock
            _state.clock = _state.saved
        _state.saved = _REAL
    _state.testing = testing


def is_testing() -> bool:
    """Return whether testing mode is on."""
    return _state.testing
