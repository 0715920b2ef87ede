"""A held connection's socket, watched by the event loop for as long as a run holds it.

psycopg's `wait` adds the socket to the loop's selector before each wait and removes it after
(two `epoll_ctl` calls and a dozen Python calls of asyncio's selector layer), and arms a timer
for each: about a fifth of a worker's CPU per run. A run's connection runs one statement
after another, so `HeldSocket` adds its reader once and keeps it until the run lets the
connection go. Between statements the reader reads whatever arrives (a notice, the server
closing), so the loop never spins on a socket nobody waits for.

The reader must be the socket's only one: psycopg's own waits replace it and then remove it.
So a connection is let go (`close`) before anything but `HeldSocket.run` uses it again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, TypeVar

import psycopg
from psycopg.waiting import READY_R, READY_W, WAIT_W

if TYPE_CHECKING:
    from psycopg import pq
    from psycopg.abc import PQGen

T = TypeVar("T")

_CLOSED = "the connection's socket was closed"

__all__ = ["HeldSocket"]


class HeldSocket:
    """The socket of one connection, read by the loop between and during its statements."""

    __slots__ = ("_fd", "_loop", "_pgconn", "_waiter", "closed")

    def __init__(self, pgconn: pq.abc.PGconn) -> None:
        self._pgconn = pgconn
        self._fd = pgconn.socket
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[int] | None = None
        self.closed = False
        self._loop.add_reader(self._fd, self._readable)

    async def run(self, gen: PQGen[T]) -> T:
        """Drive one of psycopg's generators (a statement's send and fetch) to its end."""
        try:
            wait = next(gen)
            while True:
                wait = gen.send(await self._ready(wait))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return] # psycopg's PQGen says T

    async def _ready(self, wait: int) -> int:
        if self.closed:
            raise psycopg.OperationalError(_CLOSED)
        waiter: asyncio.Future[int] = self._loop.create_future()
        self._waiter = waiter
        writing = bool(wait & WAIT_W)  # a statement too big for the socket's buffer: rare
        if writing:
            self._loop.add_writer(self._fd, self._writable)
        try:
            return await waiter
        finally:
            self._waiter = None
            if writing and not self.closed:
                self._loop.remove_writer(self._fd)

    def _readable(self) -> None:
        """Read what arrived; wake the statement once its result is whole, or the socket lost."""
        try:
            self._pgconn.consume_input()
        except psycopg.Error:  # lost: libpq closed the socket; the statement raises it
            self._wake(READY_R)
            self.close()
            return
        if not self._pgconn.is_busy():
            self._wake(READY_R)

    def _writable(self) -> None:
        self._wake(READY_W)

    def _wake(self, ready: int) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(ready)

    def close(self) -> None:
        """Stop watching the socket (psycopg's own waits may use it from now on).

        A statement still waiting (the store closed under it) raises `OperationalError`.
        """
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(psycopg.OperationalError(_CLOSED))
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):  # a socket libpq closed: the selector forgets it
                self._loop.remove_reader(self._fd)
                self._loop.remove_writer(self._fd)
