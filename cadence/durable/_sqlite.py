"""`SQLiteStore`: durable runs in one SQLite file, for the processes of one machine."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import queue
import socket
import sqlite3
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar, cast

from cadence.durable._errors import (
    StoreError,
    lost_run_error,
)
from cadence.durable._plan import plan_json
from cadence.durable._store import (
    COLUMNS,
    Claim,
    ErrorInfo,
    NewRun,
    RunRecord,
    RunStatus,
    check_listing,
    listed_from_row,
    record_from_row,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["SQLiteStore", "Synchronous"]

logger = logging.getLogger("cadence.durable")

T = TypeVar("T")

Synchronous: TypeAlias = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
"""SQLite's `PRAGMA synchronous`: how hard a commit waits for the disk."""

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cadence_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cadence_runs (
    run_id      TEXT PRIMARY KEY,
    cadence     TEXT NOT NULL,
    status      TEXT NOT NULL,
    position    INTEGER NOT NULL,
    step        TEXT,
    plan        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    context     BLOB,
    inner       BLOB,
    attempts    INTEGER NOT NULL,
    owner       TEXT,
    error       TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cadence_runs_status ON cadence_runs (status);
CREATE INDEX IF NOT EXISTS cadence_runs_created ON cadence_runs (created_at);
"""

_COLUMNS = f"{COLUMNS}, inner"
_FINISHED = ("completed", "failed", "cancelled")
# A cancelled run stays while its owner lives and has not let it go (still in its step).
_LET_GO = "AND NOT (status = 'cancelled' AND cadence_owner_alive(owner))"
_INSERT = (
    f"INSERT INTO cadence_runs ({_COLUMNS}) "  # noqa: S608 # constant columns
    "VALUES (?, ?, 'running', 0, ?, ?, ?, ?, 1, ?, NULL, ?, ?, NULL)"
)  # a new run, as its claim creates it
# WAL bytes between checkpoints handed to the writer thread: ~1000 pages, as SQLite's own. A
# write counts its payload (a context, a plan) and about two and a half pages (its row's leaf,
# an index, the frames' headers): 400 writes of a small context, 4 of a megabyte.
_CHECKPOINT_BYTES = 4_000_000
_WRITE_BYTES = 10_000
_WAL_KEPT = 64 * 1024 * 1024  # a WAL grown past this (a burst) is cut back as it starts over


def _stat(pid: int) -> tuple[str, str]:
    """Return a process's state letter and start time (Linux `/proc`); else `("", "")`.

    The start time tells a reused pid apart; the state a killed process that its parent has
    not reaped yet (a zombie: `kill(pid, 0)` still finds it).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[0], fields[19]


_ACTIVE: set[str] = set()  # owner tokens of this process's attempts in progress (any store)
_SELF: list[object] = [-1, ""]  # this process's pid and start time, read once per process


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (0 and below name process groups: no owner's pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: no pid is that large
        return False
    except PermissionError:
        return True
    return True


class SQLiteStore:
    """Keep durable runs in a SQLite file (WAL), shared by the processes of one machine.

    Calls use one connection per process guarded by a lock, on the store's writer thread
    whenever they could wait (an fsync, another process's write lock) and, by default at
    OFF and NORMAL, on the event loop when they cannot (see `offload`). A run belongs to the
    process that claimed it while that process lives: a run whose owner died (killed,
    crashed) is taken over by the next caller at once; one whose owner lives is waited for.

    Args:
        path: The database file (created with its schema if missing).
        synchronous: `PRAGMA synchronous`. `"FULL"` (default) fsyncs every commit: a
            committed step survives a power loss. `"NORMAL"` fsyncs at WAL checkpoints only: a
            committed step survives the process dying, and a power loss may undo the last few.
            `"OFF"` leaves it to the OS; `"EXTRA"` also fsyncs the directory.
        busy_timeout: Seconds a write waits for another process's write lock.
        poll_interval: Seconds between looks at a run another live caller owns.
        offload: Where a call runs. `True`: always on the store's writer thread. `False`: on
            the event loop when it cannot wait for another process or thread (no other
            process writing, no other thread in the store, WAL checkpoints moved to the writer
            thread) and on the writer thread otherwise: a commit then costs tens of
            microseconds instead of a thread round trip. At FULL and EXTRA, `False` makes the
            event loop wait for each commit's fsync: only for a process whose loop runs
            durable work alone (a worker, a batch job). `None` (the default): `False` at OFF
            and NORMAL; at FULL and EXTRA, commits on the writer thread and claims (which
            never fsync) as with `False`. Listings and prunes, which may read the whole
            table, run on the writer thread whatever it says.
        clock: Wall-clock seconds, for timestamps and retention (injectable for tests).

    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 30.0,
        poll_interval: float = 0.05,
        offload: bool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(
                f"SQLiteStore: synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}"
            )
        # A claim never fsyncs (see `claim`): by default it runs inline at every level.
        self._inline_claims = offload is not True
        if offload is None:
            offload = synchronous in ("FULL", "EXTRA")
        self.offload: bool = offload
        self.path = Path(path)
        self.synchronous: Synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._poll_interval = poll_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._checkpointer: sqlite3.Connection | None = None  # the writer thread's, inline only
        self._pid = -1
        self._wal_bytes = 0  # about what inline writes added to the WAL since its checkpoint
        self._checkpoint_failing = False  # told once, until one succeeds again
        self._host = socket.gethostname()
        self._writer = _Writer(f"cadence-sqlite {self.path.name}")
        # Hand-backs that failed, made again later: run id -> (owner, undo).
        self._owed: dict[str, tuple[str, Literal["pending", "failed"] | None]] = {}
        _STORES.add(self)

    def _forked(self) -> None:
        """In a forked child: locks another thread of the parent held stay held, so renew them."""
        self._lock = threading.Lock()
        self._writer.forked()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, synchronous={self.synchronous!r})"

    @property
    def poll_interval(self) -> float:
        """Seconds between looks at a run owned by another live caller, while waiting for it."""
        return self._poll_interval

    def new_owner(self) -> str:
        """Return a fresh owner token: this host, process and a nonce."""
        pid = os.getpid()
        if _SELF[0] != pid:
            _SELF[:] = [pid, _stat(pid)[1]]
        return f"{self._host}:{pid}:{_SELF[1]}:{uuid.uuid4().hex[:12]}"

    def _owner_alive(self, owner: str | None) -> bool:
        """Return whether the process named by an owner token still runs."""
        if owner is None:
            return False
        host, pid, started, _ = (*owner.split(":"), "", "", "")[:4]
        if host != self._host:
            return True  # another machine: SQLite is for one machine; never steal its runs
        try:
            number = int(pid)
        except ValueError:
            return False
        if number == os.getpid():
            return owner in _ACTIVE  # this process: alive while its attempt is
        if not _pid_alive(number):
            return False
        state, start = _stat(number)  # a zombie (killed, not reaped yet) is gone all the same
        return state not in ("Z", "X") and (not started or start in ("", started))

    def done(self, owner: str) -> None:
        """Forget an owner token: its attempt has ended, however it ended."""
        _ACTIVE.discard(owner)

    # ------------------------------------------------------------------ plumbing

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            # Whether a cancelled run's owner may still be in its step, for delete and prune.
            connection.create_function("cadence_owner_alive", 1, self._owner_alive)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            connection.execute(f"PRAGMA journal_size_limit={_WAL_KEPT}")
            if self._inline_claims:
                # A checkpoint inside a commit writes and fsyncs the database file, which
                # must not happen on the event loop: the writer thread checkpoints instead.
                connection.execute("PRAGMA wal_autocheckpoint=0")
            connection.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                row = connection.execute(
                    "SELECT value FROM cadence_meta WHERE key = 'schema_version'"
                ).fetchone()
                if row is None:
                    connection.execute(
                        "INSERT INTO cadence_meta VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
                elif int(row[0]) > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(  # noqa: TRY301 # rolled back just below
                        f"the database has schema version {row[0]}; this cadence knows up to "
                        f"{SCHEMA_VERSION} (upgrade cadence-flow)"
                    )
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self._checkpointer = None  # a forked child's parent connection is not its own
        self._pid = os.getpid()
        self._wal_bytes = 0
        return connection

    def _wrote(self, size: int) -> None:
        """Count an inline write of `size` bytes; past `_CHECKPOINT_BYTES`, checkpoint."""
        self._wal_bytes += size + _WRITE_BYTES
        if self._wal_bytes >= _CHECKPOINT_BYTES:
            self._wal_bytes = 0
            self._writer.post(self._checkpoint, None)

    def _checkpoint(self, _: None) -> None:
        """Copy the WAL into the database, so the WAL restarts from its beginning.

        First on a connection of its own, without the store's lock: the event loop's connection
        keeps committing meanwhile (a checkpointer and a writer do not wait for each other in
        WAL mode). Then, holding the lock, on the store's connection: what was written in the
        meantime (or all of it, if the first failed: a file this process may no longer write
        opens read-only). With every frame copied, the next commit starts the WAL from its
        beginning instead of growing it. Both are PASSIVE (they never wait for other
        processes) and sync as the store's level says. A checkpoint that fails is logged once
        (the WAL grows until one succeeds) and retried by the next.
        """
        try:
            checkpointer = self._checkpointer
            if checkpointer is None:
                checkpointer = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
                checkpointer.execute(f"PRAGMA synchronous={self.synchronous}")
                self._checkpointer = checkpointer
            checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            pass  # the store's connection copies it all below
        try:
            with self._lock:
                connection = self._connection
                if connection is None or self._pid != os.getpid():
                    return
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            if not self._checkpoint_failing:
                logger.warning(
                    "SQLite store %r: checkpointing its WAL failed (it grows until one "
                    "succeeds): %s",
                    str(self.path),
                    exc,
                )
            self._checkpoint_failing = True
            return
        if self._checkpoint_failing:
            self._checkpoint_failing = False
            logger.warning("SQLite store %r: its WAL is checkpointed again", str(self.path))

    async def _call(  # one call's pieces, passed once
        self,
        run_id: str,
        what: str,
        fn: Callable[[sqlite3.Connection], T],
        *,
        inline: bool | None = None,
        size: int | None = None,
    ) -> T:
        """Run `fn` on the connection, inline if it cannot wait, else on the writer thread.

        `inline`: whether to try it inline; `None` (most calls) as `offload` says. A claim
        (which never fsyncs) of an inline store passes `True`; a listing or a prune (which may
        read the whole table) `False`. `size`: the bytes a write adds to the WAL (its
        payload), `None` for a read.
        """
        if inline is None:
            inline = not self.offload
        try:
            done, value = self._try_inline(fn) if inline else (False, cast("T", None))
            if not done:
                value = await self._writer.run(self._work, fn)
        except sqlite3.Error as exc:
            name = f"run {run_id!r}: " if run_id else ""
            raise StoreError(
                run_id,
                f"{name}{what} failed in SQLite store {str(self.path)!r}: {exc}"
                f"{_why_unopened(self.path, exc)}",
            ) from exc
        if size is not None and self._inline_claims:
            self._wrote(size)
        return value

    def _work(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            connection = self._connect()
            if not self.offload:  # inline commits never wait (busy_timeout 0); this thread may
                connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            try:
                value = fn(connection)
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            finally:
                if not self.offload:
                    connection.execute("PRAGMA busy_timeout = 0")
            return value

    def _try_inline(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T]:
        """Run `fn` on this thread if that cannot wait; `(False, ...)` means "use a thread".

        It never waits: not for this store's lock (a thread holds it), not for another
        process's write lock (`busy_timeout` 0 for the call). At OFF and NORMAL a commit never
        waits for the disk either; at FULL and EXTRA it does only if `offload=False` said so.
        """
        if not self._lock.acquire(blocking=False):
            return False, cast("T", None)
        try:
            connection = self._connection  # busy_timeout 0 between thread calls, if inline
            if connection is None or self._pid != os.getpid():
                return False, cast("T", None)  # (re)connecting may wait: on the thread
            if self.offload:  # commits run on the thread, with busy_timeout: not this call
                connection.execute("PRAGMA busy_timeout = 0")
            try:
                value = fn(connection)
            except sqlite3.OperationalError as exc:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                if "locked" in str(exc) or "busy" in str(exc):
                    return False, cast("T", None)  # another process writes: wait on a thread
                raise
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            finally:
                if self.offload:
                    connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            return True, value
        finally:
            self._lock.release()

    def _record(self, row: tuple[object, ...]) -> RunRecord:
        return record_from_row(row, f"in {str(self.path)!r}")

    @staticmethod
    def _select(connection: sqlite3.Connection, run_id: str) -> tuple[object, ...] | None:
        return cast(
            "tuple[object, ...] | None",
            connection.execute(
                f"SELECT {_COLUMNS} FROM cadence_runs WHERE run_id = ?",  # noqa: S608 # constant columns
                (run_id,),
            ).fetchone(),
        )

    # ------------------------------------------------------------------ the runner's calls

    async def claim(self, run_id: str, owner: str, new: NewRun) -> Claim:
        """Create the run owned by `owner`, or take it over if nobody live holds it."""
        if self._owed:
            await self._hand_back_owed()

        def work(connection: sqlite3.Connection) -> tuple[str, RunRecord, RunStatus | None]:
            now = self._clock()
            # A new run id, the usual case, is one statement: the row as written is the record.
            created = connection.execute(
                f"{_INSERT} ON CONFLICT (run_id) DO NOTHING", (*new.row(run_id), owner, now, now)
            )
            if created.rowcount == 1:
                _ACTIVE.add(owner)
                return "created", new.record(run_id, owner, now), None
            connection.execute("BEGIN IMMEDIATE")
            row = self._select(connection, run_id)
            previous = None if row is None else cast("RunStatus", row[2])
            if row is None:
                connection.execute(_INSERT, (*new.row(run_id), owner, now, now))  # deleted since
                outcome = "created"
                _ACTIVE.add(owner)
            else:
                status = row[2]
                if status == "completed":
                    outcome = "finished"
                elif status == "cancelled":
                    outcome = "cancelled"
                elif status == "failed" and not new.resume_failed:
                    outcome = "failed"  # a waiter's: the failure it waited for, not retried
                elif status == "running" and self._owner_alive(cast("str | None", row[9])):
                    outcome = "busy"
                else:
                    connection.execute(
                        "UPDATE cadence_runs SET status = 'running', owner = ?, "
                        "attempts = attempts + 1, updated_at = ? WHERE run_id = ?",
                        (owner, now, run_id),
                    )
                    outcome = "claimed"
                    _ACTIVE.add(owner)
            # Read before the commit: a corrupted row rolls the claim back (and is named).
            record = self._record(cast("tuple[object, ...]", self._select(connection, run_id)))
            connection.execute("COMMIT")
            return outcome, record, previous

        def relaxed(connection: sqlite3.Connection) -> tuple[str, RunRecord, RunStatus | None]:
            # A claim needs no fsync: a power loss ends every owner anyway, and the next
            # commit's fsync of the WAL makes the claim durable with it. It saves one fsync
            # per run at FULL.
            connection.execute("PRAGMA synchronous=NORMAL")
            try:
                return work(connection)
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            finally:
                connection.execute(f"PRAGMA synchronous={self.synchronous}")

        fsyncs = self.synchronous in ("FULL", "EXTRA")
        call = relaxed if fsyncs else work
        outcome, record, previous = await self._call(
            run_id, "claiming the run", call, inline=self._inline_claims, size=len(new.context)
        )
        return Claim(cast("Literal['created']", outcome), record, previous)

    def _owned_update(
        self, run_id: str, owner: str, sql: str, parameters: tuple[object, ...]
    ) -> Callable[[sqlite3.Connection], None]:
        def work(connection: sqlite3.Connection) -> None:
            cursor = connection.execute(sql, parameters)
            if cursor.rowcount == 1:
                return
            row = connection.execute(
                "SELECT status, owner FROM cadence_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            raise lost_run_error(run_id, None if row is None else (row[0], row[1]))

        return work

    async def checkpoint(
        self,
        run_id: str,
        owner: str,
        *,
        position: int,
        step: str | None,
        context: bytes,
        inner: bytes | None = None,
        plan: tuple[str, ...] | None = None,
        fingerprint: str | None = None,
    ) -> None:
        """Commit the context, position and inner progress (and a migrated plan) at once."""
        work = self._owned_update(
            run_id,
            owner,
            "UPDATE cadence_runs SET position = ?, step = ?, context = ?, inner = ?, "
            "updated_at = ?, plan = coalesce(?, plan), fingerprint = coalesce(?, fingerprint) "
            "WHERE run_id = ? AND owner = ? AND status = 'running'",
            (
                position,
                step,
                context,
                inner,
                self._clock(),
                None if plan is None else plan_json(plan),
                fingerprint,
                run_id,
                owner,
            ),
        )
        size = len(context) + len(inner or b"")
        await self._call(run_id, "committing a checkpoint", work, size=size)

    async def finish(
        self,
        run_id: str,
        owner: str,
        *,
        status: RunStatus,
        context: bytes | None,
        error: ErrorInfo | None,
        position: int | None = None,
    ) -> None:
        """Mark the run completed or failed (with its final context and position, or its error)."""
        now = self._clock()
        text = None if error is None else error.to_json()
        work = self._owned_update(
            run_id,
            owner,
            "UPDATE cadence_runs SET status = ?, owner = NULL, context = coalesce(?, context), "
            "inner = CASE WHEN ? IS NULL THEN inner END, position = coalesce(?, position), "
            "step = CASE WHEN ? IS NULL THEN step END, "
            "error = ?, updated_at = ? WHERE run_id = ? AND owner = ? AND status = 'running'",
            (status, context, position, position, position, text, now, run_id, owner),
        )
        await self._call(run_id, "finishing the run", work, size=len(context or b""))

    async def release(
        self, run_id: str, owner: str, *, undo: Literal["pending", "failed"] | None = None
    ) -> None:
        """Hand the run back (`pending`), or with `undo` undo the claim (see `Store.release`).

        A hand-back that fails (the store failing still) is made again at the store's next
        claim or `aclose()`: until then, other processes wait for the run, its owner alive.
        """
        now = self._clock()

        def work(connection: sqlite3.Connection) -> None:
            connection.execute(
                "UPDATE cadence_runs SET owner = NULL, updated_at = ?, "
                "status = CASE status WHEN 'running' THEN ? ELSE status END, "
                "attempts = attempts - CASE status WHEN 'running' THEN ? ELSE 0 END "
                "WHERE run_id = ? AND owner = ? AND status IN ('running', 'cancelled')",
                (now, undo or "pending", int(undo is not None), run_id, owner),
            )

        try:
            await self._call(run_id, "releasing the run", work, size=0)
        except StoreError:
            self._owed[run_id] = (owner, undo)
            raise
        self._owed.pop(run_id, None)

    async def _hand_back_owed(self) -> None:
        """Make the hand-backs that failed before; those failing again wait for the next."""
        for run_id, (owner, undo) in list(self._owed.items()):
            with contextlib.suppress(StoreError):
                await self.release(run_id, owner, undo=undo)

    # ------------------------------------------------------------------ inspecting runs

    async def get(self, run_id: str) -> RunRecord | None:
        """Return the run, or `None` if the store does not hold it."""
        row = await self._call(run_id, "reading the run", lambda c: self._select(c, run_id))
        return None if row is None else self._record(row)

    async def list_runs(
        self, *, status: RunStatus | None = None, cadence: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        """Return runs, newest first, optionally of one status or cadence."""
        check_listing(status, limit)
        where: list[str] = []
        parameters: list[object] = []
        if status is not None:
            where.append("status = ?")
            parameters.append(status)
        if cadence is not None:
            where.append("cadence = ?")
            parameters.append(cadence)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        sql = (
            f"SELECT {_COLUMNS} FROM cadence_runs {clause}ORDER BY created_at DESC, run_id LIMIT ?"  # noqa: S608 # constant columns and placeholders
        )

        def work(connection: sqlite3.Connection) -> list[tuple[object, ...]]:
            return cast(
                "list[tuple[object, ...]]", connection.execute(sql, (*parameters, limit)).fetchall()
            )

        rows = await self._call("", "listing runs", work, inline=False)
        return [listed_from_row(row, f"in {str(self.path)!r}") for row in rows]

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run that has not finished; return whether one was cancelled.

        A running run stops at its next checkpoint with `RunCancelledError`.
        """

        def work(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "UPDATE cadence_runs SET status = 'cancelled', updated_at = ? "
                "WHERE run_id = ? AND status IN ('pending', 'running', 'failed')",
                (self._clock(), run_id),
            )
            return cursor.rowcount == 1

        return await self._call(run_id, "cancelling the run", work, size=0)

    async def delete(self, run_id: str) -> bool:
        """Delete a run that is not running; return whether one was deleted.

        A cancelled run whose owner is still stopping it (in the step it was cancelled in) is
        kept until that owner lets it go: deleted, a later call could start it anew alongside.
        """

        def work(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                f"DELETE FROM cadence_runs WHERE run_id = ? AND status != 'running' {_LET_GO}",  # noqa: S608 # constant
                (run_id,),
            )
            return cursor.rowcount == 1

        return await self._call(run_id, "deleting the run", work, size=0)

    async def prune(self, older_than: datetime.timedelta) -> int:
        """Delete finished runs (completed, failed, cancelled) last written before the age.

        A cancelled run whose owner is still stopping it is kept, as by `delete`.
        """
        cutoff = self._clock() - older_than.total_seconds()

        def work(connection: sqlite3.Connection) -> int:
            cursor = connection.execute(
                f"DELETE FROM cadence_runs WHERE status IN (?, ?, ?) AND updated_at < ? {_LET_GO}",  # noqa: S608 # constant
                (*_FINISHED, cutoff),
            )
            return cursor.rowcount

        deleted = await self._call("", "pruning runs", work, inline=False)
        if self._inline_claims:
            self._wrote(deleted * _WRITE_BYTES)  # each deleted row's pages, in the WAL
        return deleted

    async def aclose(self) -> None:
        """Close the store's connection (a later call opens it again)."""
        if self._owed:
            await self._hand_back_owed()

        def work(_: None) -> None:
            with self._lock:
                if self._checkpointer is not None:
                    self._checkpointer.close()
                    self._checkpointer = None
                if self._connection is not None:  # last: it checkpoints and removes the WAL
                    self._connection.close()
                    self._connection = None

        await self._writer.run(work, None)
        self._writer.stop()


A = TypeVar("A")


def _why_unopened(path: Path, error: sqlite3.Error) -> str:
    """Say why SQLite could not open `path`, which its own message does not."""
    if "unable to open database file" not in str(error):
        return ""
    folder = path.parent
    if path.is_dir():
        why = "the path is a directory"
    elif not folder.is_dir():
        why = f"its directory {str(folder)!r} does not exist"
    elif not os.access(folder, os.W_OK | os.X_OK):
        why = f"this process may not write in its directory {str(folder)!r}"
    else:
        return ""
    return f" ({why})"


class _Writer:
    """One long-lived thread per store that runs its calls in order, fed by a queue.

    A call costs a queue put and one wake-up of the event loop (`call_soon_threadsafe` on
    asyncio, a trio token's `run_sync_soon` on trio), instead of a trip through
    `anyio.to_thread` and its limiter. Calls run one at a time in submission order, so a call
    made after another (a release after a cancelled commit) always lands after it. A caller
    cancelled while its call runs stops waiting (asyncio) or waits it out (trio); either way
    the call completes. The thread ends after `idle` seconds without work, and a forked child
    starts its own.
    """

    __slots__ = ("_alive", "_guard", "_idle", "_name", "_pid", "_queue")

    def __init__(self, name: str, idle: float = 5.0) -> None:
        self._name = name
        self._idle = idle
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._guard = threading.Lock()
        self._alive = False
        self._pid = os.getpid()

    async def run(self, fn: Callable[[A], T], argument: A) -> T:
        """Run `fn(argument)` on the writer thread and return (or raise) what it did."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return await self._run_trio(fn, argument)
        future: asyncio.Future[T] = loop.create_future()

        def reply(value: object, error: BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(_settle, future, value, error)
            except RuntimeError:  # pragma: no cover - the loop closed while the call ran
                return

        self._submit((fn, argument, reply))
        return await future

    async def _run_trio(self, fn: Callable[[A], T], argument: A) -> T:
        import outcome  # noqa: PLC0415 # trio's own dependency, on trio only
        import trio  # noqa: PLC0415 # as above

        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()

        def reply(value: object, error: BaseException | None) -> None:
            result: outcome.Outcome[object] = (
                outcome.Value(value) if error is None else outcome.Error(error)
            )
            try:
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)
            except trio.RunFinishedError:  # pragma: no cover - the run ended while it ran
                return

        await trio.lowlevel.checkpoint_if_cancelled()
        self._submit((fn, argument, reply))
        value = await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        return cast("T", value)

    def post(self, fn: Callable[[A], object], argument: A) -> None:
        """Queue `fn(argument)` on the writer thread without waiting for it (errors dropped)."""
        self._submit((fn, argument, _ignore))

    def _submit(self, job: _Job) -> None:
        with self._guard:
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._queue, self._alive, self._pid = queue.SimpleQueue(), False, os.getpid()
            self._queue.put(job)
            if not self._alive:
                self._alive = True
                thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                thread.start()

    def forked(self) -> None:
        """In a forked child: renew the guard (the parent's thread may have held it)."""
        self._guard = threading.Lock()

    def stop(self) -> None:
        """Let the thread end now (a later call starts another)."""
        self._queue.put(None)

    def _serve(self) -> None:
        jobs = self._queue
        while True:
            try:
                job = jobs.get(timeout=self._idle)
            except queue.Empty:
                job = None
            if job is None:
                with self._guard:
                    if jobs is not self._queue or jobs.empty():
                        if jobs is self._queue:
                            self._alive = False
                        return
                continue
            fn, argument, reply = job
            try:
                value = fn(argument)
            except BaseException as exc:  # noqa: BLE001 # handed to the caller, raised there
                reply(None, exc)
            else:
                reply(value, None)


_Job: TypeAlias = tuple[
    "Callable[[Any], object]", object, "Callable[[object, BaseException | None], None]"
]  # Any: each job's own argument type


def _ignore(value: object, error: BaseException | None) -> None:
    """Drop a posted call's outcome: nobody waits for it."""


def _settle(future: asyncio.Future[T], value: object, error: BaseException | None) -> None:
    """Complete a writer call's future on its loop (unless its caller stopped waiting)."""
    if future.done():
        return
    if error is None:
        future.set_result(cast("T", value))
    else:
        future.set_exception(error)


_STORES: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()  # this process's, for a fork


def _after_fork_in_child() -> None:
    for store in list(_STORES):
        store._forked()  # pyright: ignore[reportPrivateUsage] # the module's own class


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
