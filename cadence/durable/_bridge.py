"""An asyncio event loop on a thread of its own, for trio tasks to run asyncio-only code on.

psycopg 3's async API runs on asyncio alone. Under trio, `PostgresStore` runs its coroutines on
such a loop instead and the trio task waits for each (`AsyncioThread.run`): a call costs two
thread hand-offs, a fraction of a commit's round trip to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, cast

import anyio
from typing_extensions import TypeVarTuple

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    import outcome
    import trio

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

__all__ = ["AsyncioThread", "LoopClosedError"]

logger = logging.getLogger("cadence.durable")

_SHUTDOWN_WAIT = 2.0  # seconds `aclose` gives the loop's tasks to end, twice, before it stops


class LoopClosedError(RuntimeError):
    """The loop thread stopped (closed, or ended) before or while it ran a call."""


class AsyncioThread:
    """An asyncio event loop on a daemon thread, started on first use and stopped by `aclose`.

    Everything the loop runs stays on its thread: callers on trio hand it coroutines
    (`run`) and calls (`call_soon`), which start in the order handed, each in a context of
    its own (the caller's would tell anyio and sniffio that this is trio). However the
    thread ends, every caller still waiting is woken (`LoopClosedError`). A forked child has
    no such thread (it was the parent's): it must start an `AsyncioThread` of its own, as
    `PostgresStore` does.
    """

    __slots__ = ("_ended", "_guard", "_loop", "_name", "_thread", "_waiting")

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._waiting: set[_Call[Any]] = set()  # the calls not settled yet (Any: any result)
        self._ended = False  # the loop's thread ran its last: no call is woken any more
        self._guard = threading.Lock()  # a call is either waiting before the end, or refused

    def elsewhere(self) -> bool:
        """Return whether the loop runs and the caller is on another thread than the loop's."""
        return self._thread is not None and threading.get_ident() != self._thread.ident

    def _started(self) -> asyncio.AbstractEventLoop:
        """Return the running loop, starting it on first use (hold `_guard`)."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=self._serve, args=(loop,), name=self._name)
            thread.daemon = True
            self._loop, self._thread, self._ended = loop, thread, False
            thread.start()
        elif self._ended:
            raise LoopClosedError(f"the event loop thread {self._name!r} ended")
        return self._loop

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.run_forever()
        finally:  # stopped, or ended by an exception out of a task: wake whoever still waits
            with self._guard:
                self._ended = True
                waiting = list(self._waiting)
            for call in waiting:
                call.loop_ended()

    @staticmethod
    def back_here(fn: Callable[[], None]) -> Callable[[], None]:
        """Return `fn` made to run on the calling trio thread when the loop calls it."""
        import trio  # noqa: PLC0415 # trio only

        return functools.partial(_run_soon, trio.lowlevel.current_trio_token(), fn)

    def call_soon(self, fn: Callable[[*Ts], object], *args: *Ts) -> None:
        """Call `fn(*args)` on the loop's thread, after what was handed before.

        Once the loop has stopped the call is dropped: the state it would touch went with it.
        """
        with contextlib.suppress(LoopClosedError, RuntimeError):  # RuntimeError: loop closed
            with self._guard:
                loop = self._started()
            loop.call_soon_threadsafe(fn, *args, context=contextvars.Context())

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:  # Any: any coroutine's
        """Run `coroutine` on the loop and return (or raise) what it did, from a trio task.

        A trio caller cancelled meanwhile has the coroutine cancelled on the loop and waits
        for it to end there, as an asyncio caller would: what it finished is never lost (it
        is returned, and trio raises `Cancelled` at the caller's next checkpoint), and its
        clean-up is over before the caller goes on.

        Raises:
            LoopClosedError: the loop stopped before the coroutine ended.

        """
        import trio  # noqa: PLC0415 # trio only

        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            coroutine.close()
            raise
        call = _Call(self._name, self._waiting, coroutine)
        try:
            with self._guard:  # waiting before the thread's end, so woken by it; or refused
                call.loop = self._started()
                self._waiting.add(call)
            call.loop.call_soon_threadsafe(call.start, context=contextvars.Context())
        except (LoopClosedError, RuntimeError) as exc:  # RuntimeError: the loop is closed
            self._waiting.discard(call)
            coroutine.close()
            raise LoopClosedError(f"the event loop thread {self._name!r} stopped") from exc
        return cast("T", await trio.lowlevel.wait_task_rescheduled(call.abort))

    async def aclose(self) -> None:
        """Cancel what still runs on the loop, stop it and let its thread end (until next use)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not self._ended:
            with contextlib.suppress(LoopClosedError):  # unless it ends on its own meanwhile
                await self.run(_cancel_the_rest(self._name))
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        await anyio.to_thread.run_sync(thread.join)
        if asyncio.all_tasks(loop):  # it ended on its own: end the tasks it left behind
            with contextlib.suppress(Exception):
                await anyio.to_thread.run_sync(
                    loop.run_until_complete, _cancel_the_rest(self._name)
                )
        self._loop = self._thread = None
        loop.close()


class _Call(Generic[T]):
    """One trio task's call on the loop: which thread each part runs on is said per method."""

    __slots__ = (
        "caller",
        "cancelled",
        "coroutine",
        "loop",
        "name",
        "settled",
        "task",
        "token",
        "waiting",
    )

    def __init__(
        self,
        name: str,
        waiting: set[_Call[Any]],  # Any: any result
        coroutine: Coroutine[Any, Any, T],  # Any: any coroutine's
    ) -> None:
        import trio  # noqa: PLC0415 # trio only

        self.name = name
        self.waiting = waiting  # the thread's open calls, this one among them
        self.coroutine = coroutine
        self.caller = trio.lowlevel.current_task()
        self.token = trio.lowlevel.current_trio_token()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[T] | None = None
        self.cancelled: Callable[[], NoReturn] | None = None  # the caller's cancellation
        self.settled = False

    def start(self) -> None:
        """On the loop's thread: run the coroutine as a task."""
        assert self.loop is not None  # noqa: S101 # set before `start` is handed over
        self.task = self.loop.create_task(self.coroutine)
        self.task.add_done_callback(self.ended)

    def ended(self, task: asyncio.Task[T]) -> None:
        """On the loop's thread: the task ended; wake the caller with its outcome."""
        self._to_caller(self.resume)

    def loop_ended(self) -> None:
        """On the loop's thread, as it ends: wake the caller if it still waits."""
        self._to_caller(self.closed)

    def cancel(self) -> None:
        """On the loop's thread (after `start`): cancel the task."""
        if self.task is not None:
            self.task.cancel()

    def abort(self, raise_cancel: Callable[[], NoReturn]) -> trio.lowlevel.Abort:
        """On the trio thread: the caller is cancelled; it is woken once the task ended."""
        import trio  # noqa: PLC0415 # trio only

        self.cancelled = raise_cancel
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: `closed` wakes it
                self.loop.call_soon_threadsafe(self.cancel)
        return trio.lowlevel.Abort.FAILED

    def resume(self) -> None:
        """On the trio thread: hand the caller the task's outcome."""
        import outcome  # noqa: PLC0415 # trio's own dependency, on trio only

        task = self.task
        assert task is not None  # noqa: S101 # resumed only once the task ended
        self._settle(self._stopped() if task.cancelled() else outcome.capture(task.result))

    def closed(self) -> None:
        """On the trio thread, once the loop's thread ended: nothing will end the call."""
        if self.task is None:
            self.coroutine.close()  # never started
        self._settle(self._stopped())

    def _stopped(self) -> outcome.Outcome[T]:
        import outcome  # noqa: PLC0415 # as above

        if self.cancelled is not None:
            return cast("outcome.Outcome[T]", outcome.capture(self.cancelled))  # it raises
        return outcome.Error(LoopClosedError(f"the event loop thread {self.name!r} stopped"))

    def _settle(self, result: outcome.Outcome[T]) -> None:
        import trio  # noqa: PLC0415 # trio only

        if not self.settled:
            self.settled = True
            self.waiting.discard(self)
            trio.lowlevel.reschedule(self.caller, result)

    def _to_caller(self, fn: Callable[[], None]) -> None:
        _run_soon(self.token, fn)


def _run_soon(token: trio.lowlevel.TrioToken, fn: Callable[[], None]) -> None:
    """Run `fn` soon on the trio thread of `token`, unless its run is over (nobody waits)."""
    import trio  # noqa: PLC0415 # trio only

    with contextlib.suppress(trio.RunFinishedError):
        token.run_sync_soon(fn)


async def _cancel_the_rest(name: str) -> None:
    """Cancel every other task on the running loop; wait a little for them to end."""
    current = asyncio.current_task()
    for _ in range(2):  # a task that swallows one cancellation gets a second
        rest = [task for task in asyncio.all_tasks() if task is not current]
        if not rest:
            break
        for task in rest:
            task.cancel()
        await asyncio.wait(rest, timeout=_SHUTDOWN_WAIT)
    else:
        left = [task for task in asyncio.all_tasks() if task is not current]
        if left:
            logger.warning("%s: stopping with %d tasks that would not end", name, len(left))
    await asyncio.get_running_loop().shutdown_asyncgens()
