"""HeldSocket on real sockets: the waits a statement makes, driven by the event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Generator

import pytest

psycopg = pytest.importorskip("psycopg")

from psycopg.waiting import READY_R, READY_W, WAIT_R, WAIT_RW  # noqa: E402 # after the skip

from cadence.durable._held_socket import HeldSocket  # noqa: E402 # as above

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the store's sockets are watched by an asyncio loop (on trio, its thread's)


class FakeConnection:
    """A libpq connection's few calls HeldSocket makes, over one end of a socket pair."""

    def __init__(self, end: socket.socket) -> None:
        self.end = end
        self.read = b""
        self.fd = end.fileno()  # kept: libpq's socket number outlives its closing

    @property
    def socket(self) -> int:
        return self.fd

    def consume_input(self) -> None:
        try:
            chunk = self.end.recv(65536)
        except BlockingIOError:
            return
        except OSError:  # reset by the peer, or closed already
            chunk = b""
        if not chunk:  # as libpq does: the socket is closed, then the loss raised
            self.end.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        self.read += chunk

    def is_busy(self) -> bool:
        return not self.read.endswith(b"answer")


def statement(seen: list[int]) -> Generator[int, int, str]:
    """What psycopg's execute does: wait to send the rest, then wait for the answer."""
    seen.append((yield WAIT_RW))
    seen.append((yield WAIT_R))
    return "done"


@pytest.fixture(autouse=True)
async def loop_errors() -> AsyncIterator[list[dict[str, object]]]:
    """Fail a test whose loop ran a callback that raised (asyncio would only log it)."""
    errors: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    yield errors
    assert errors == []


def _pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    return ours, theirs


def _watched() -> tuple[HeldSocket, FakeConnection, socket.socket]:
    """A HeldSocket on the fake connection's end of a pair, and the pair's other end."""
    ours, theirs = _pair()
    connection = FakeConnection(ours)
    return HeldSocket(connection), connection, theirs  # type: ignore[arg-type] # libpq's few calls


def _fill(end: socket.socket) -> None:
    """Send until the socket takes no more."""
    try:
        while True:
            end.send(b"\0" * 65536)
    except BlockingIOError:
        pass


def _drain(end: socket.socket) -> None:
    try:
        while end.recv(1 << 20):
            pass
    except BlockingIOError:
        pass


async def test_a_statement_waits_to_send_then_for_its_whole_answer() -> None:
    held, connection, theirs = _watched()
    ours = connection.end
    _fill(ours)
    seen: list[int] = []
    task = asyncio.create_task(held.run(statement(seen)))
    await asyncio.sleep(0.05)
    assert seen == []  # the socket is full: not writable yet
    _drain(theirs)
    await asyncio.sleep(0.05)
    assert seen == [READY_W]
    theirs.send(b"half an ")
    await asyncio.sleep(0.05)
    assert not task.done()  # read, but not whole: the statement is not woken
    theirs.send(b"answer")
    assert await asyncio.wait_for(task, 1) == "done"
    assert seen == [READY_W, READY_R]
    assert connection.read == b"half an answer"
    theirs.send(b"a notice, between statements")  # read at once: the loop does not spin on it
    await asyncio.sleep(0.05)
    assert connection.read.endswith(b"between statements")
    held.close()
    loop = asyncio.get_running_loop()
    assert not loop.remove_reader(ours.fileno())  # nothing was left registered
    ours.close()
    theirs.close()


async def test_a_socket_lost_between_statements_is_let_go_and_the_next_wait_raises() -> None:
    held, connection, theirs = _watched()
    ours = connection.end
    theirs.close()  # the server ends the session
    await asyncio.sleep(0.05)
    assert held.closed
    assert not asyncio.get_running_loop().remove_reader(connection.fd)
    with pytest.raises(psycopg.OperationalError, match="socket was closed"):
        await held.run(statement([]))
    ours.close()


async def test_a_socket_lost_during_a_wait_wakes_the_statement() -> None:
    held, connection, theirs = _watched()
    ours = connection.end

    def waits_for_the_answer() -> Generator[int, int, str]:
        yield WAIT_R
        connection.consume_input()  # as psycopg's fetch does: it raises for the lost socket
        return "never"

    task = asyncio.create_task(held.run(waits_for_the_answer()))
    await asyncio.sleep(0.05)
    theirs.close()
    with pytest.raises(psycopg.OperationalError, match="closed the connection"):
        await asyncio.wait_for(task, 1)
    assert held.closed
    ours.close()


async def test_a_statement_waiting_when_its_socket_is_let_go_raises() -> None:
    held, connection, theirs = _watched()
    ours = connection.end
    task = asyncio.create_task(held.run(statement([])))
    await asyncio.sleep(0.05)  # waiting to send (the socket is writable: it sends at once)...
    await asyncio.sleep(0.05)  # ...then for the answer
    held.close()  # the store closed under it
    with pytest.raises(psycopg.OperationalError, match="socket was closed"):
        await asyncio.wait_for(task, 1)
    ours.close()
    theirs.close()


async def test_a_socket_lost_while_a_big_statement_is_sent_raises_and_is_forgotten() -> None:
    held, connection, theirs = _watched()
    ours = connection.end
    _fill(ours)  # reader and writer both watched while the rest waits to be sent

    def sends_the_rest() -> Generator[int, int, str]:
        while True:
            ready = yield WAIT_RW
            if ready & READY_R:
                connection.consume_input()  # as psycopg's send does: it raises for the loss
            if ready & READY_W:
                return "sent"

    task = asyncio.create_task(held.run(sends_the_rest()))
    await asyncio.sleep(0.05)
    theirs.close()  # the server goes: the reader finds the loss, libpq closes the socket
    with pytest.raises(psycopg.OperationalError, match="closed the connection"):
        await asyncio.wait_for(task, 1)
    assert held.closed
    other, peer = _pair()  # a new socket may take the closed one's number: it is free to use
    loop = asyncio.get_running_loop()
    loop.add_reader(other.fileno(), lambda: None)
    assert loop.remove_reader(other.fileno())
    other.close()
    peer.close()
