"""`@timeout`: give up on a call that runs past its deadline.

An async function is cancelled at the deadline, with the backend's native machinery (a timer
that cancels the task on asyncio, a cancel scope on trio), so its cleanup runs before
`BeatTimeoutError` is raised. A sync function cannot be stopped from outside: it runs in a
thread of its own, and at the deadline its caller is released while the thread is abandoned to
finish alone. Abandoned threads are counted (`abandoned_threads()`) and capped
(`set_abandoned_thread_limit()`, default 64). The cap counts every thread a timed sync call
holds, running or abandoned, because any running one may be abandoned next: so concurrent
callers can never push the abandoned threads past it. At the cap, a new call fails at once with
`BeatTimeoutError`, without starting, so a stuck dependency cannot pile up threads without bound.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from cadence import _events as events
from cadence._beat import default_name, is_async_callable
from cadence._errors import BeatTimeoutError
from cadence.resilience._checks import at_least, whole_at_least

__all__ = ["abandoned_threads", "set_abandoned_thread_limit", "timeout"]

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULT_THREAD_LIMIT = 64


class _Threads:
    """The threads of timed sync calls: all of them, and those whose callers timed out."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held = 0
        self.abandoned = 0
        self.limit = _DEFAULT_THREAD_LIMIT


_threads = _Threads()


def abandoned_threads() -> int:
    """Return how many timed-out sync calls are still running in their threads."""
    with _threads.lock:
        return _threads.abandoned


def set_abandoned_thread_limit(limit: int) -> int:
    """Cap the threads of timed sync calls, running or abandoned (default 64); return the old cap.

    Raises:
        ValueError: `limit` is below 1.

    """
    whole_at_least("set_abandoned_thread_limit", "limit", limit, 1)
    with _threads.lock:
        previous, _threads.limit = _threads.limit, limit
    return previous


class _Expiry:
    """The asyncio timer callback: cancel the task and remember that it was us."""

    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:  # Any: any task may be timed
        self.task = task
        self.fired = False

    def __call__(self) -> None:
        self.fired = True
        self.task.cancel()


def timeout(seconds: float) -> Callable[[F], F]:
    """Fail a sync or async function (or beat) that runs longer than `seconds`.

    Raises `BeatTimeoutError` (also a `TimeoutError`) at the deadline. An async function is
    cancelled and its cleanup runs first; a sync function's caller is released and its thread
    abandoned (see the module documentation for the cap). A cancellation from outside passes
    through unchanged.

    Raises:
        ValueError: `seconds` is not > 0 (raised when decorating).

    """
    at_least("timeout", "seconds", seconds, 0, strict=True)

    def decorate(fn: F) -> F:
        name = default_name(fn)

        if is_async_callable(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:  # Any: F's own signature
                loop = asyncio._get_running_loop()  # the C fast path; None off asyncio
                if loop is None:
                    return await _trio_timeout(fn, args, kwargs, seconds, name)
                task = asyncio.current_task(loop)
                if task is None:  # pragma: no cover # a coroutine always runs in a task
                    return await fn(*args, **kwargs)
                expiry = _Expiry(task)
                cancelling = task.cancelling()
                handle = loop.call_at(loop.time() + seconds, expiry)
                try:
                    return await fn(*args, **kwargs)
                except asyncio.CancelledError:
                    if expiry.fired:
                        expiry.fired = False
                        if task.uncancel() <= cancelling:
                            events.record_timeout(name, seconds)
                            raise BeatTimeoutError(name, seconds) from None
                    raise
                finally:
                    handle.cancel()
                    if expiry.fired:  # the function swallowed our cancellation
                        task.uncancel()

            events.mark(async_wrapper, "timeout", f"timeout {seconds:g}s")
            return cast("F", async_wrapper)

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:  # Any: F's own signature
            return _run_in_thread(fn, args, kwargs, seconds, name)

        events.mark(sync_wrapper, "timeout", f"timeout {seconds:g}s")
        return cast("F", sync_wrapper)

    return decorate


async def _trio_timeout(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], seconds: float, name: str
) -> Any:  # Any: what the wrapped function returns
    # Imported here: only ever needed on trio, where it is loaded already.
    from trio import CancelScope, current_time  # noqa: PLC0415

    with CancelScope(deadline=current_time() + seconds) as scope:
        return await fn(*args, **kwargs)
    if scope.cancelled_caught:
        events.record_timeout(name, seconds)
        raise BeatTimeoutError(name, seconds)
    return None  # pragma: no cover # the scope can only end early by its deadline


def _run_in_thread(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], seconds: float, name: str
) -> Any:  # Any: what the wrapped function returns
    with _threads.lock:
        if _threads.held >= _threads.limit:
            refused = _AtCapError(_threads.held, _threads.abandoned)
            events.record_timeout(name, seconds)
            raise BeatTimeoutError(name, seconds) from refused
        _threads.held += 1
    outcome: list[Any] = []  # Any: [True, result] or [False, exception]
    done = threading.Event()
    state = {"abandoned": False}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            outcome.extend((True, context.run(fn, *args, **kwargs)))
        except BaseException as error:  # noqa: BLE001 # handed to the caller, whatever it is
            outcome.extend((False, error))
        finally:
            with _threads.lock:
                done.set()
                _threads.held -= 1
                if state["abandoned"]:
                    _threads.abandoned -= 1

    try:
        thread = threading.Thread(target=target, name=f"cadence-timeout-{name}", daemon=True)
        thread.start()
    except BaseException:
        with _threads.lock:
            _threads.held -= 1
        raise
    if not done.wait(seconds):
        with _threads.lock:
            if not done.is_set():
                state["abandoned"] = True
                _threads.abandoned += 1
                events.record_timeout(name, seconds)
                raise BeatTimeoutError(name, seconds)
    ok, value = outcome
    if ok:
        return value
    raise value


class _AtCapError(RuntimeError):
    """The cause of a call refused because timed sync calls hold every allowed thread."""

    def __init__(self, held: int, abandoned: int) -> None:
        super().__init__(
            f"timed sync calls hold {held} threads ({abandoned} of them abandoned after a "
            "timeout), the cap; new calls are refused until some finish "
            "(see set_abandoned_thread_limit)"
        )
