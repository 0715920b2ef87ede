"""An asyncio event loop on a thread of its own, for trio tasks to run asyncio-only code on.

psycopg 3's async API runs on asyncio alone. Under trio, `PostgresStore` runs its coroutines on
such a loop instead and the trio task waits for each (`AsyncioThread.run`): a call costs two
thread hand-offs, a fraction of a commit's round trip to the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

T = TypeVar("T")

__all__ = ["AsyncioThread"]


class AsyncioThread:
    """An asyncio event loop on a daemon thread, started on first use and stopped by `aclose`.

    Everything the loop runs stays on its thread: callers on trio hand it coroutines
    (`run`) and calls (`call_soon`), which run in the order handed.
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

        A trio caller cancelled meanwhile stops waiting at once, and the coroutine is
        cancelled on the loop (it runs its own clean-up there).
        """
        import outcome  # noqa: PLC0415 # trio's own dependency, on trio only
        import trio  # noqa: PLC0415 # as above

        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            coroutine.close()
            raise
        # In a context of its own: the caller's says "trio" to anyio and sniffio.
        loop = self._started()
        future = contextvars.Context().run(asyncio.run_coroutine_threadsafe, coroutine, loop)
        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()
        waiting = [True]

        def resume() -> None:  # on the trio thread
            if waiting[0]:
                waiting[0] = False
                trio.lowlevel.reschedule(task, outcome.capture(future.result))

        def done(_: concurrent.futures.Future[T]) -> None:  # on the loop's thread
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(resume)

        future.add_done_callback(done)

        def abort(_: object) -> trio.lowlevel.Abort:
            waiting[0] = False
            future.cancel()
            return trio.lowlevel.Abort.SUCCEEDED

        return cast("T", await trio.lowlevel.wait_task_rescheduled(abort))

    async def aclose(self) -> None:
        """Stop the loop and let its thread end (a later call starts another)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        await anyio.to_thread.run_sync(thread.join)
        loop.close()
