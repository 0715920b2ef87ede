"""SQLiteStore's writer thread: off the event loop, one thread per store, calls in order."""

from __future__ import annotations

import datetime
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest

from cadence import Cadence, Context
from cadence.durable import DurableError, SQLiteStore, StoreError, Synchronous

pytestmark = pytest.mark.anyio


@dataclass
class Count(Context):
    n: int = 0


async def bump(ctx: Count) -> None:
    ctx.n += 1


def _writers(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"cadence-sqlite {name}"]


async def test_every_call_runs_on_the_stores_own_thread(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "w1.db", synchronous="NORMAL", offload=True)
    threads: list[str] = []
    work = store._work  # pyright: ignore[reportPrivateUsage] # every call goes through it

    def spy(fn: Callable[[sqlite3.Connection], object]) -> object:
        threads.append(threading.current_thread().name)
        return work(fn)

    store._work = spy  # type: ignore[method-assign,assignment] # pyright: ignore[reportPrivateUsage] # a spy
    flow = Cadence("count", context_type=Count).then("a", bump).then("b", bump).then("c", bump)

    async def one(run_id: str) -> None:
        assert (await flow.run(Count(), run_id=run_id, store=store)).n == 3

    async with anyio.create_task_group() as group:
        for i in range(4):  # four runs at once share the one thread, in order
            group.start_soon(one, f"run-{i}")
    for i in range(4):
        record = await store.get(f"run-{i}")
        assert record is not None
        assert (record.status, record.position) == ("completed", 3)
    # claim, 2 checkpoints, finish per run, then the four gets: all on the writer thread
    assert threads == ["cadence-sqlite w1.db"] * (4 * 4 + 4)
    assert threading.current_thread().name not in threads
    assert len(_writers("w1.db")) == 1
    await store.aclose()


async def test_aclose_ends_the_thread_and_a_later_call_starts_one(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "w2.db", synchronous="NORMAL")
    flow = Cadence("count", context_type=Count).then("a", bump)
    assert (await flow.run(Count(), run_id="one", store=store)).n == 1
    await store.aclose()
    for _ in range(1000):  # the thread ends once it has taken the stop
        if not _writers("w2.db"):
            break
        await anyio.sleep(0.001)
    assert _writers("w2.db") == []
    assert (await flow.run(Count(), run_id="two", store=store)).n == 1  # reopened
    assert len(_writers("w2.db")) == 1
    await store.aclose()


async def test_a_call_whose_caller_is_cancelled_still_lands_before_the_next(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "w3.db", synchronous="NORMAL")
    started, gate = threading.Event(), threading.Event()
    seen: list[str] = []

    def slow(_: None) -> None:
        started.set()
        gate.wait(30)
        seen.append("slow")

    writer = store._writer  # pyright: ignore[reportPrivateUsage] # the writer itself

    async def call_then_cancel() -> None:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:

                async def cancel_when_started() -> None:
                    while not started.is_set():  # a thread's event
                        await anyio.lowlevel.checkpoint()
                    scope.cancel()
                    gate.set()

                group.start_soon(cancel_when_started)
                await writer.run(slow, None)
        assert scope.cancelled_caught or seen == ["slow"]  # asyncio stops waiting; trio waits

    await call_then_cancel()
    await writer.run(lambda _: seen.append("after"), None)
    assert seen == ["slow", "after"]  # the cancelled call completed, and first
    await store.aclose()


async def test_a_failing_call_is_a_store_error_and_the_thread_goes_on(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "w4.db", synchronous="NORMAL")
    await store.list_runs()
    store_ro = SQLiteStore(tmp_path / "missing" / "w4.db")
    with pytest.raises(StoreError, match=r"w4\.db"):
        await store_ro.list_runs()
    assert await store.list_runs() == []  # the first store's thread still serves
    await store.aclose()
    await store_ro.aclose()


async def test_a_claim_skips_the_fsync_and_commits_stay_full(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "w5.db")  # FULL, the default
    levels: list[int] = []
    work = store._work  # pyright: ignore[reportPrivateUsage] # every call goes through it

    def spy(fn: Callable[[sqlite3.Connection], object]) -> object:
        def watched(connection: sqlite3.Connection) -> object:
            try:
                return fn(connection)
            finally:
                levels.append(int(connection.execute("PRAGMA synchronous").fetchone()[0]))

        return work(watched)

    store._work = spy  # type: ignore[method-assign,assignment] # pyright: ignore[reportPrivateUsage] # a spy
    inside: list[int] = []
    assert await store.get("none") is None  # opens the store's connection
    real = store._connection  # pyright: ignore[reportPrivateUsage] # spied on below
    assert real is not None

    class Spied:
        """The store's connection, telling the level each claim's INSERT runs at."""

        def execute(self, sql: str, *parameters: Any) -> sqlite3.Cursor:
            if sql.startswith("INSERT INTO cadence_runs"):
                inside.append(int(real.execute("PRAGMA synchronous").fetchone()[0]))
            return real.execute(sql, *parameters)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    store._connection = cast("sqlite3.Connection", Spied())  # pyright: ignore[reportPrivateUsage] # a spy
    flow = Cadence("count", context_type=Count).then("a", bump).then("b", bump)
    assert (await flow.run(Count(), run_id="full", store=store)).n == 2
    assert inside == [1]  # inside the claim: NORMAL (1), no fsync of its own
    # after the claim, every call finds FULL (2) again
    assert levels == [2, 2, 2]  # the get that opened the connection, the checkpoint, the finish
    with sqlite3.connect(tmp_path / "w5.db") as connection:
        connection.execute("UPDATE cadence_runs SET plan = 'not json'")
    with pytest.raises(DurableError, match="corrupted"):
        await flow.run(Count(), run_id="full", store=store)  # the claim fails and rolls back
    assert levels[-1] == 2
    await store.aclose()


def _trace(store: SQLiteStore, seen: list[tuple[str, str]]) -> None:
    """Record (thread name, statement) of every statement on the store's connection."""
    connection = store._connection  # pyright: ignore[reportPrivateUsage] # to trace it
    assert connection is not None
    connection.set_trace_callback(
        lambda sql: seen.append((threading.current_thread().name, " ".join(sql.split()[:2])))
    )


async def test_at_normal_commits_run_inline_and_at_full_on_the_thread(tmp_path: Path) -> None:
    flow = Cadence("count", context_type=Count).then("a", bump).then("b", bump).then("c", bump)
    here = threading.current_thread().name
    cases: list[tuple[Synchronous, str]] = [("NORMAL", here), ("FULL", "cadence-sqlite w6.db")]
    for level, thread in cases:
        store = SQLiteStore(tmp_path / "w6.db", synchronous=level)
        assert store.offload is (level == "FULL")
        await flow.run(Count(), run_id=f"warm-{level}", store=store)  # opens the connection
        seen: list[tuple[str, str]] = []
        _trace(store, seen)
        assert (await flow.run(Count(), run_id=f"run-{level}", store=store)).n == 3
        updates = [(name, sql) for name, sql in seen if sql.startswith("UPDATE")]
        # two checkpoints and the finish: one UPDATE each (the owner check in its WHERE)
        assert updates == [(thread, "UPDATE cadence_runs")] * 3
        assert [sql for _, sql in seen[-3:]] == ["UPDATE cadence_runs"] * 3  # nothing else
        # the claim never fsyncs: at every level it runs on the caller's thread
        assert ("MainThread", "INSERT INTO") in seen
        await store.aclose()


async def test_an_inline_store_checkpoints_the_wal_on_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cadence.durable._sqlite._WRITE_BYTES", 1000)  # a small context's write:
    monkeypatch.setattr("cadence.durable._sqlite._CHECKPOINT_BYTES", 4000)  # every 4 writes
    store = SQLiteStore(tmp_path / "w7.db", synchronous="NORMAL")
    flow = Cadence("count", context_type=Count).then("a", bump).then("b", bump).then("c", bump)
    await flow.run(Count(), run_id="warm", store=store)
    connection = store._connection  # pyright: ignore[reportPrivateUsage] # its settings
    assert connection is not None
    assert connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    before = (tmp_path / "w7.db").stat().st_size
    threads: list[str] = []
    checkpoint = store._checkpoint  # pyright: ignore[reportPrivateUsage] # to watch it

    def spy(_: None) -> None:
        checkpoint(None)
        threads.append(threading.current_thread().name)  # once its pages are in the file

    store._checkpoint = spy  # type: ignore[method-assign] # pyright: ignore[reportPrivateUsage] # a spy
    store._wal_bytes = 0  # pyright: ignore[reportPrivateUsage] # count from here
    for i in range(3):  # a claim, 2 checkpoints, a finish each: 12 writes, 3 checkpoints
        await flow.run(Count(), run_id=f"run-{i}", store=store)
    for _ in range(1000):
        if len(threads) == 3:
            break
        await anyio.sleep(0.001)
    assert threads == ["cadence-sqlite w7.db"] * 3
    assert (tmp_path / "w7.db").stat().st_size > before  # the WAL's pages reached the file
    for i in range(3):
        record = await store.get(f"run-{i}")
        assert record is not None
        assert (record.status, record.position) == ("completed", 3)
    await store.aclose()


async def test_an_inline_stores_checkpoint_ends_under_the_lock_so_the_wal_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cadence.durable._sqlite._CHECKPOINT_BYTES", 10**18)  # by hand here
    path = tmp_path / "w8.db"
    store = SQLiteStore(path, synchronous="NORMAL")
    flow = Cadence("count", context_type=Count).then("a", bump).then("b", bump).then("c", bump)
    for i in range(5):
        await flow.run(Count(), run_id=f"run-{i}", store=store)
    lock = store._lock  # pyright: ignore[reportPrivateUsage] # held by every connection call
    seen: list[tuple[str, bool, str]] = []

    class Watched(sqlite3.Connection):
        """A connection that records whether the store's lock is held at each statement."""

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            seen.append((sql, lock.locked(), "own" if self is checkpointer else "store's"))
            return super().execute(sql, *args)

    def watched() -> sqlite3.Connection:
        return sqlite3.connect(path, isolation_level=None, check_same_thread=False, factory=Watched)

    checkpointer, store_connection = watched(), store._connection  # pyright: ignore[reportPrivateUsage] # watched in turn
    store._checkpointer, store._connection = checkpointer, watched()  # pyright: ignore[reportPrivateUsage] # as above
    await store._writer.run(store._checkpoint, None)  # pyright: ignore[reportPrivateUsage]
    store._connection = store_connection  # pyright: ignore[reportPrivateUsage] # as it was
    # the bulk while commits go on; the frames those wrote meanwhile with none going on
    assert seen == [
        ("PRAGMA wal_checkpoint(PASSIVE)", False, "own"),
        ("PRAGMA wal_checkpoint(PASSIVE)", True, "store's"),
    ]
    wal = tmp_path / "w8.db-wal"
    size = wal.stat().st_size
    assert size > 10 * 4096
    await flow.run(Count(), run_id="after", store=store)
    assert wal.stat().st_size == size  # every frame was copied: the run wrote over the WAL
    await store.aclose()


@dataclass
class Blob(Context):
    data: str = ""


async def grow(ctx: Blob) -> None:
    ctx.data += "x" * 500_000


def _wal_size(path: Path) -> int:
    wal = path.with_name(f"{path.name}-wal")
    return wal.stat().st_size if wal.exists() else 0


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_the_wal_stays_near_a_thousand_pages_whatever_the_contexts_size(
    tmp_path: Path, synchronous: Synchronous
) -> None:
    """The checkpoint counts the bytes written: 400 writes of half a megabyte were 200 MB."""
    path = tmp_path / "big.db"
    store = SQLiteStore(path, synchronous=synchronous)
    flow = Cadence("big", context_type=Blob).then("a", grow).then("b", grow).then("c", grow)
    for i in range(12):  # claim, 2 checkpoints, finish: 48 writes, 36 MB of contexts
        await flow.run(Blob(), run_id=f"big-{i}", store=store)
        await store._writer.run(lambda _: None, None)  # pyright: ignore[reportPrivateUsage] # the checkpoints it was handed
    assert _wal_size(path) < 12_000_000
    assert len(await store.list_runs()) == 12
    await store.aclose()


async def test_a_checkpoint_its_own_connection_cannot_write_is_made_on_the_stores(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file this process may no longer write opens read-only: the WAL would grow for ever."""
    path = tmp_path / "ro.db"
    store = SQLiteStore(path, synchronous="NORMAL")
    flow = Cadence("count", context_type=Count).then("a", bump).then("b", bump).then("c", bump)
    for i in range(5):
        await flow.run(Count(), run_id=f"run-{i}", store=store)

    def read_only() -> sqlite3.Connection:
        uri = f"{path.absolute().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)

    store._checkpointer = read_only()  # pyright: ignore[reportPrivateUsage] # as SQLite opens it
    await store._writer.run(store._checkpoint, None)  # pyright: ignore[reportPrivateUsage]
    size = _wal_size(path)
    await flow.run(Count(), run_id="after", store=store)
    assert _wal_size(path) == size  # every frame was copied: the run wrote over the WAL
    assert not caplog.records
    writable = store._connection  # pyright: ignore[reportPrivateUsage] # cannot write either, now
    store._connection = read_only()  # pyright: ignore[reportPrivateUsage] # as above
    for _ in range(2):
        await store._writer.run(store._checkpoint, None)  # pyright: ignore[reportPrivateUsage]
    store._connection = writable  # pyright: ignore[reportPrivateUsage] # as it was
    await store._writer.run(store._checkpoint, None)  # pyright: ignore[reportPrivateUsage]
    told = [r.getMessage().split(": ", 1)[1] for r in caplog.records]
    assert len(told) == 2  # once, not at every checkpoint; and once it is made again
    assert told[0].startswith("checkpointing its WAL failed (it grows until one succeeds): ")
    assert told[1] == "its WAL is checkpointed again"
    await store.aclose()


async def test_a_wal_grown_in_a_burst_is_cut_back_as_it_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cadence.durable._sqlite._CHECKPOINT_BYTES", 10**18)  # by hand here
    monkeypatch.setattr("cadence.durable._sqlite._WAL_KEPT", 200_000)
    path = tmp_path / "burst.db"
    store = SQLiteStore(path, synchronous="NORMAL")
    flow = Cadence("big", context_type=Blob).then("a", grow)
    for i in range(4):
        await flow.run(Blob(), run_id=f"big-{i}", store=store)
    assert _wal_size(path) > 2_000_000
    await store._writer.run(store._checkpoint, None)  # pyright: ignore[reportPrivateUsage]
    await (
        Cadence("count", context_type=Count)
        .then("a", bump)
        .run(Count(), run_id="small", store=store)
    )
    assert _wal_size(path) <= 200_000
    await store.aclose()


async def test_a_prune_counts_the_rows_it_deleted_towards_the_next_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cadence.durable._sqlite._CHECKPOINT_BYTES", 10**18)
    store = SQLiteStore(tmp_path / "prune.db", synchronous="NORMAL")
    flow = Cadence("count", context_type=Count).then("a", bump)
    for i in range(6):
        await flow.run(Count(), run_id=f"run-{i}", store=store)
    handed: list[None] = []
    store._checkpoint = handed.append  # type: ignore[method-assign,assignment] # pyright: ignore[reportPrivateUsage] # a spy
    store._wal_bytes = 0  # pyright: ignore[reportPrivateUsage] # count from here
    monkeypatch.setattr("cadence.durable._sqlite._CHECKPOINT_BYTES", 6 * 10_000)
    assert await store.prune(datetime.timedelta(0)) == 6  # six rows' pages: a checkpoint's worth
    await store._writer.run(lambda _: None, None)  # pyright: ignore[reportPrivateUsage] # what it was handed
    assert handed == [None]
    await store.aclose()


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])  # by default inline at NORMAL, not FULL
@pytest.mark.parametrize("offload", [False, None], ids=["inline", "default"])
async def test_a_listing_and_a_prune_never_run_on_the_event_loop(
    tmp_path: Path, offload: bool | None, synchronous: Synchronous
) -> None:
    """They may read the whole table: seconds, with a few hundred thousand runs."""
    store = SQLiteStore(tmp_path / "list.db", synchronous=synchronous, offload=offload)
    flow = Cadence("count", context_type=Count).then("a", bump)
    await flow.run(Count(), run_id="one", store=store)
    connection = store._connection  # pyright: ignore[reportPrivateUsage] # traced
    assert connection is not None
    ran: list[tuple[str, str]] = []
    connection.set_trace_callback(lambda sql: ran.append((sql, threading.current_thread().name)))
    assert [r.run_id for r in await store.list_runs()] == ["one"]
    assert await store.prune(datetime.timedelta(0)) == 1
    connection.set_trace_callback(None)
    threads = {thread for sql, thread in ran if sql.startswith(("SELECT", "DELETE"))}
    assert threads == {"cadence-sqlite list.db"}
    listing = next(sql for sql, _ in ran if sql.startswith("SELECT"))
    plan = connection.execute(f"EXPLAIN QUERY PLAN {listing}").fetchall()
    assert "USING INDEX cadence_runs_created" in str(plan)  # newest first: no sort of them all
    await store.aclose()


async def test_a_full_stores_claim_waits_on_the_thread_while_another_process_writes(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "w9.db")  # FULL: claims inline, commits on the thread
    ticks: list[int] = []
    seen: list[int] = []  # the ticks made when a run's first step starts

    async def first(ctx: Count) -> None:
        seen.append(len(ticks))
        await bump(ctx)

    flow = Cadence("count", context_type=Count).then("a", first).then("b", bump)
    await flow.run(Count(), run_id="warm", store=store)  # opens the connection
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock

    async def tick_then_release() -> None:
        for i in range(5):
            await anyio.sleep(0.01)
            ticks.append(i)  # the loop stays free while the claim waits on the thread
        other.execute("COMMIT")

    with anyio.fail_after(5):  # a claim waiting on the loop would block it for 30 s
        async with anyio.create_task_group() as group:
            group.start_soon(tick_then_release)
            assert (await flow.run(Count(), run_id="blocked", store=store)).n == 2
    other.close()
    assert ticks == [0, 1, 2, 3, 4]
    assert seen == [0, 5]  # the claim waited for the other writer, while the loop ticked
    record = await store.get("blocked")
    assert record is not None
    assert (record.status, record.attempts) == ("completed", 1)
    connection = store._connection  # pyright: ignore[reportPrivateUsage] # its settings
    assert connection is not None
    assert connection.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000  # restored
    await store.aclose()


_FORK_MID_CALL = """
import os, subprocess, sys, threading, time
import anyio
from cadence.durable import SQLiteStore

path = sys.argv[1]
store = SQLiteStore(path)  # FULL: its calls run on the writer thread, holding the store's lock
anyio.run(store.get, "warm")
code = (
    "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
    "c.execute('BEGIN IMMEDIATE'); print('held', flush=True); time.sleep(0.8)"
)
other = subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE, text=True)
assert other.stdout.readline().strip() == "held"  # another process's write lock
threading.Thread(target=anyio.run, args=(store.cancel, "x"), daemon=True).start()
time.sleep(0.3)  # that call now waits on the writer thread, the store's lock held
pid = os.fork()
if pid == 0:
    async def child() -> None:
        with anyio.move_on_after(5):
            print("child:", await store.get("x"), flush=True)
            return
        print("child: blocked", flush=True)
    anyio.run(child)
    os._exit(0)
other.wait()
os.waitpid(pid, 0)
"""


def test_a_child_forked_while_a_call_holds_the_stores_lock_uses_the_store(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FORK_MID_CALL, str(tmp_path / "runs.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.splitlines() == ["child: None"]
