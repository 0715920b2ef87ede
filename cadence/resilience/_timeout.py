"""`@timeout`: give up on a call that runs past its deadline.

An async function is cancelled at the deadline through a cancel scope (anyio's on asyncio, with
the event loop's own timer; trio's own on trio), so its cleanup runs before `BeatTimeoutError`
is raised, and a shielded scope inside it finishes its work on both backends. A sync function
cannot be stopped from outside: it runs in a thread of its own, and at the deadline its caller
is released while the thread is abandoned to finish alone. A sync beat runs on a private copy of
its context, whose changes are written into the context only if the call ended in time, so an
abandoned thread can never write into a context its caller has moved on with. Abandoned threads
are counted (`abandoned_threads()`) and capped (`set_abandoned_thread_limit()`, default 64).
The cap counts every thread a timed sync call holds, running or abandoned, because any running
one may be abandoned next: so concurrent callers can never push the abandoned threads past it.
At the cap, a new call fails at once with `BeatTimeoutError`, without starting, so a stuck
dependency cannot pile up threads without bound.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import anyio

from cadence import _events as events
from cadence._beat import default_name, is_async_callable
from cadence._context import Context, is_frozen
from cadence._errors import BeatTimeoutError
from cadence._isolation import DELETED, BranchState, FingerprintCache, open_branches
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


def timeout(seconds: float) -> Callable[[F], F]:
    """Fail a sync or async function (or beat) that runs longer than `seconds`.

    Raises `BeatTimeoutError` (also a `TimeoutError`) at the deadline. An async function is
    cancelled and its cleanup runs first (shielded cancel scopes inside it are respected); a
    sync function's caller is released and its thread abandoned (see the module documentation
    for the cap). A sync beat works on a private copy of its context, written back only if it
    ends in time. A cancellation from outside passes through unchanged.

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
                # anyio's scope, so shielded scopes inside are respected; the loop's own timer
                # cancels it (cheaper than the scope's deadline, which reads anyio's clock).
                scope = (_asyncio_scope or _load_asyncio_scope())()
                handle = loop.call_at(loop.time() + seconds, scope.cancel)
                try:
                    with scope:
                        return await fn(*args, **kwargs)
                finally:
                    handle.cancel()
                # Only the scope's own cancellation, at the deadline, ends up here.
                events.record_timeout(name, seconds)
                raise BeatTimeoutError(name, seconds)

            events.mark(async_wrapper, "timeout", f"timeout {seconds:g}s")
            return cast("F", async_wrapper)

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:  # Any: F's own signature
            return _run_in_thread(fn, args, kwargs, seconds, name)

        events.mark(sync_wrapper, "timeout", f"timeout {seconds:g}s")
        return cast("F", sync_wrapper)

    return decorate


_asyncio_scope: Callable[[], anyio.CancelScope] | None = None


def _load_asyncio_scope() -> Callable[[], anyio.CancelScope]:
    """Return the asyncio backend's own cancel scope class (loaded on first use, on asyncio).

    `anyio.CancelScope()` looks the running backend up at every construction, which costs about
    3 us, as much as the rest of the timeout; on asyncio the backend is known. If anyio's layout
    changes, the public class serves, only slower.
    """
    global _asyncio_scope  # noqa: PLW0603 # a cache filled once
    try:
        from anyio._backends._asyncio import CancelScope  # noqa: PLC0415 # asyncio only, lazily
    except ImportError:  # pragma: no cover # a future anyio may move it
        _asyncio_scope = anyio.CancelScope
    else:
        _asyncio_scope = CancelScope
    return _asyncio_scope


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
    try:
        live, private, call_args = _private_call(args, name)
    except BaseException:
        with _threads.lock:
            _threads.held -= 1
        raise
    outcome: list[Any] = []  # Any: [True, result] or [False, exception]
    done = threading.Event()
    state = {"abandoned": False}
    context = contextvars.copy_context()
    context.run(events.abandoned.set, (*events.abandoned.get(), state))

    def target() -> None:
        try:
            outcome.extend((True, context.run(fn, *call_args, **kwargs)))
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
    if live is not None and private is not None:  # ended in time: its changes count
        view, branch = private
        _write_back(live, branch.changes(view, FingerprintCache()))
        if ok and value is view:
            return live
    if ok:
        return value
    raise value


def _private_call(
    args: tuple[Any, ...], name: str
) -> tuple[Context | None, tuple[Context, BranchState] | None, tuple[Any, ...]]:
    """Return the live context, a private view of it and the arguments to call with.

    A mutable context (the first argument) is replaced by the view a parallel branch gets: its
    fields copy themselves from the live context on first read (shared fields and atomics are
    the same objects), and its writes stay in it. Anything else (no context, a frozen one) is
    called as it is.
    """
    live = args[0] if args and isinstance(args[0], Context) else None
    if live is None or is_frozen(type(live)):
        return None, None, args
    run = events.current_run()
    cadence_name = run.cadence if run is not None else "<not observed>"
    ((view, state),) = open_branches(live, cadence_name, [name])
    return live, (view, state), (view, *args[1:])


def _write_back(live: Context, changes: dict[str, object]) -> None:
    """Apply the fields a timed call changed in its view (it ended in time) to the live context."""
    for field, value in changes.items():
        if value is DELETED:
            delattr(live, field)
        else:
            setattr(live, field, value)


class _AtCapError(RuntimeError):
    """The cause of a call refused because timed sync calls hold every allowed thread."""

    def __init__(self, held: int, abandoned: int) -> None:
        super().__init__(
            f"timed sync calls hold {held} threads ({abandoned} of them abandoned after a "
            "timeout), the cap; new calls are refused until some finish "
            "(see set_abandoned_thread_limit)"
        )
