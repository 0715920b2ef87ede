"""An asyncio event loop on a thread of its own, for trio tasks to run asyncio-only code on.

psycopg 3's async API runs on asyncio alone. Under trio, `PostgresStore` runs its coroutines on
such a loop instead and the trio task waits for each (`AsyncioThread.run`): a call costs two
thread hand-offs, a fraction of a commit's round trip to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

T = TypeVar("T")

__all__ = ["AsyncioThread", "LoopClosedError"]


class LoopClosedError(RuntimeError):
    """The loop thread stopped (closed, or ended) before or while it ran a call."""


class AsyncioThread:
    """An asyncio event loop on a daemon thread, started on first use and stopped by `aclose`.

    Everything the loop runs stays on its thread: callers on trio hand it coroutines
    (`run`) and calls (`call_soon`), which start in the order handed, each in a context of
    its own (the caller's would tell anyio and sniffio that this is trio).
    """

    __slots__ = ("_loop", "_name", "_thread")

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def elsewhere(self) -> bool:
        """Whether the loop runs, and the caller is on another thread than the loop's."""
        return self._thread is not None and threading.get_ident() != self._thread.ident

    def _started(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        elif self._thread is None or not self._thread.is_alive():
            raise LoopClosedError(f"the event loop thread {self._name!r} ended")
        return self._loop

    @staticmethod
    def back_here(fn: Callable[[], None]) -> Callable[[], None]:
        """Return `fn` made to run on the calling trio thread when the loop calls it."""
        import trio  # noqa: PLC0415 # trio only

        token = trio.lowlevel.current_trio_token()

        def call() -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(fn)

        return call

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        """Call `fn(*args)` on the loop's thread, after what was handed before."""
        self._started().call_soon_threadsafe(fn, *args, context=contextvars.Context())

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:  # Any: any coroutine's
        """Run `coroutine` on the loop and return (or raise) what it did, from a trio task.

        A trio caller cancelled meanwhile has the coroutine cancelled on the loop and waits
        for it to end there, as an asyncio caller would: what it finished is never lost (it
        is returned, and trio raises `Cancelled` at the caller's next checkpoint), and its
        clean-up is over before the caller goes on.

        Raises:
            LoopClosedError: the loop stopped before the coroutine ended.

        """
        import outcome  # noqa: PLC0415 # trio's own dependency, on trio only
        import trio  # noqa: PLC0415 # as above

        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            loop = self._started()
        except BaseException:
            coroutine.close()
            raise
        caller = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()
        started: list[asyncio.Task[T]] = []
        cancelled: list[Callable[[], object]] = []  # the caller's cancellation, once asked

        def resume(task: asyncio.Task[T]) -> None:  # on the trio thread, once
            if not task.cancelled():
                trio.lowlevel.reschedule(caller, outcome.capture(task.result))
            elif cancelled:
                trio.lowlevel.reschedule(caller, outcome.capture(cancelled[0]))
            else:
                error = LoopClosedError(f"the event loop thread {self._name!r} stopped")
                trio.lowlevel.reschedule(caller, outcome.Error(error))

        def ended(task: asyncio.Task[T]) -> None:  # on the loop's thread
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(resume, task)

        def start() -> None:  # on the loop's thread
            task = loop.create_task(coroutine)
            started.append(task)
            task.add_done_callback(ended)

        def cancel() -> None:  # on the loop's thread, after `start`
            if started:
                started[0].cancel()

        def abort(raise_cancel: Callable[[], object]) -> trio.lowlevel.Abort:
            cancelled.append(raise_cancel)
            loop.call_soon_threadsafe(cancel)
            return trio.lowlevel.Abort.FAILED  # `resume` wakes the caller once the task ends

        loop.call_soon_threadsafe(start, context=contextvars.Context())
        return cast("T", await trio.lowlevel.wait_task_rescheduled(abort))

    async def aclose(self) -> None:
        """Cancel what still runs on the loop, stop it and let its thread end (until next use)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            with contextlib.suppress(LoopClosedError):
                await self.run(_cancel_the_rest())
            loop.call_soon_threadsafe(loop.stop)
            await anyio.to_thread.run_sync(thread.join)
        self._loop = self._thread = None
        loop.close()


async def _cancel_the_rest() -> None:
    """Cancel every other task on the running loop and wait for them to end."""
    current = asyncio.current_task()
    rest = [task for task in asyncio.all_tasks() if task is not current]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()
