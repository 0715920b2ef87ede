"""`PostgresStore`, `enqueue` and `Worker`: durable runs shared by many processes on many machines.

Runs are owned by lease: a claim sets `lease_until`; a worker's heartbeat (and every checkpoint)
extends it; a run whose lease ran out (its worker died) is claimed again by another worker with
`FOR UPDATE SKIP LOCKED`, so no two workers ever claim one run at once, and a commit is written
only while its owner still holds the lease. Needs `pip install 'cadence-flow[postgres]'`.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any, cast

import anyio

from cadence._errors import CadenceDefinitionError
from cadence._events import LeaseLost, emit_durable
from cadence.durable._codec import codec_for
from cadence.durable._errors import (
    RunDecodeError,
    StoreError,
    lost_run_error,
)
from cadence.durable._plan import describe_plan, plan_fingerprint
from cadence.durable._store import Claim, ErrorInfo, NewRun, RunRecord, RunStatus

try:
    import psycopg
    from psycopg_pool import AsyncConnectionPool
except ImportError as exc:  # pragma: no cover - psycopg is installed in the test venv
    raise ImportError(
        "PostgresStore needs psycopg 3: pip install 'cadence-flow[postgres]'"
    ) from exc

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cadence._cadence import Cadence
    from cadence._context import Context

__all__ = ["PostgresStore", "Worker", "enqueue"]

logger = logging.getLogger("cadence.durable")

SCHEMA_VERSION = 1

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE IF NOT EXISTS cadence_runs (
        run_id      TEXT PRIMARY KEY,
        cadence     TEXT NOT NULL,
        status      TEXT NOT NULL,
        position    INTEGER NOT NULL,
        step        TEXT,
        plan        TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        context     BYTEA,
        inner_state BYTEA,
        attempts    INTEGER NOT NULL,
        owner       TEXT,
        lease_until TIMESTAMPTZ,
        error       TEXT,
        created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX IF NOT EXISTS cadence_runs_claim ON cadence_runs (cadence, status, created_at);
    """,
}

_COLUMNS = (
    "run_id, cadence, status, position, step, plan, fingerprint, context, attempts, owner, "
    "error, created_at, updated_at, inner_state"
)


class PostgresStore:
    """Keep durable runs in PostgreSQL, shared by worker processes on many machines.

    It holds a psycopg 3 async connection pool, opened on first use (in the event loop that
    uses it: give each event loop its own store). psycopg's async API runs on asyncio only.
    The schema is created and migrated by the store (versioned in `cadence_meta`).

    Args:
        dsn: A libpq connection string or URL.
        lease: Seconds a claim holds a run without a heartbeat or a checkpoint.
        poll_interval: Seconds between looks at a run another live caller owns.
        min_size: The pool's smallest size.
        max_size: The pool's largest size.

    """

    def __init__(
        self,
        dsn: str,
        *,
        lease: float = 30.0,
        poll_interval: float = 0.2,
        min_size: int = 1,
        max_size: int = 10,
    ) -> None:
        self.dsn = dsn
        self.lease = lease
        self._poll_interval = poll_interval
        self._min_size = min_size
        self._max_size = max_size
        self._pool: AsyncConnectionPool[Any] | None = None  # Any: psycopg's connection class
        self._host = socket.gethostname()

    def __repr__(self) -> str:
        return f"PostgresStore(lease={self.lease})"

    @property
    def poll_interval(self) -> float:
        """Seconds between looks at a run owned by another live caller, while waiting for it."""
        return self._poll_interval

    def new_owner(self) -> str:
        """Return a fresh owner token: this host, process and a nonce."""
        return f"{self._host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    async def _open(self, run_id: str) -> AsyncConnectionPool[Any]:  # Any: as above
        if self._pool is not None:
            return self._pool
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self.dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            open=False,
            kwargs={"autocommit": True},
        )
        try:
            await pool.open(wait=True, timeout=10)
            async with pool.connection() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(4242001)")
                await connection.execute(
                    "CREATE TABLE IF NOT EXISTS cadence_meta (key TEXT PRIMARY KEY, value TEXT)"
                )
                row = await (
                    await connection.execute(
                        "SELECT value FROM cadence_meta WHERE key = 'schema_version'"
                    )
                ).fetchone()
                version = 0 if row is None else int(row[0])
                if version > SCHEMA_VERSION:
                    raise StoreError(  # noqa: TRY301 # closes the pool just below
                        run_id,
                        f"the database has schema version {version}; this cadence knows up to "
                        f"{SCHEMA_VERSION} (upgrade cadence-flow)",
                    )
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    await connection.execute(_MIGRATIONS[target])
                await connection.execute(
                    "INSERT INTO cadence_meta VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )
        except (psycopg.Error, Exception) as exc:
            await pool.close()
            if isinstance(exc, StoreError):
                raise
            name = f"run {run_id!r}: " if run_id else ""
            raise StoreError(run_id, f"{name}PostgreSQL is unavailable: {exc}") from exc
        self._pool = pool
        return pool

    async def _fetch(
        self, run_id: str, what: str, sql: str, parameters: Sequence[object] = ()
    ) -> list[tuple[Any, ...]]:  # Any: row values of the declared columns
        pool = await self._open(run_id)
        try:
            async with pool.connection() as connection:
                cursor = await connection.execute(sql, parameters)
                return list(await cursor.fetchall()) if cursor.description else []
        except psycopg.Error as exc:
            name = f"run {run_id!r}: " if run_id else ""
            raise StoreError(run_id, f"{name}{what} failed in PostgreSQL: {exc}") from exc

    @staticmethod
    def _record(row: Sequence[Any]) -> RunRecord:  # Any: row values
        run_id = str(row[0])
        try:
            return RunRecord(
                run_id=run_id,
                cadence=str(row[1]),
                status=cast("RunStatus", str(row[2])),
                position=int(row[3]),
                step=None if row[4] is None else str(row[4]),
                plan=tuple(str(x) for x in json.loads(row[5])),
                fingerprint=str(row[6]),
                context=None if row[7] is None else bytes(row[7]),
                attempts=int(row[8]),
                owner=None if row[9] is None else str(row[9]),
                error=None if row[10] is None else ErrorInfo.from_json(str(row[10])),
                created_at=row[11],
                updated_at=row[12],
                inner=None if row[13] is None else bytes(row[13]),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise RunDecodeError(run_id, f"run {run_id!r}: its row is corrupted: {exc}") from exc

    # ------------------------------------------------------------------ the runner's calls

    async def claim(self, run_id: str, owner: str, new: NewRun) -> Claim:
        """Create the run owned by `owner`, or take it over if its lease ran out."""
        pool = await self._open(run_id)
        try:
            async with pool.connection() as connection, connection.transaction():
                await connection.execute(
                    f"INSERT INTO cadence_runs ({_COLUMNS}) VALUES "  # noqa: S608 # constant columns
                    "(%s, %s, 'running', 0, %s, %s, %s, %s, 1, %s, NULL, now(), now(), NULL) "
                    "ON CONFLICT (run_id) DO NOTHING",
                    (
                        run_id,
                        new.cadence,
                        new.step,
                        json.dumps(list(new.plan)),
                        new.fingerprint,
                        new.context,
                        owner,
                    ),
                )
                cursor = await connection.execute(
                    f"SELECT {_COLUMNS}, lease_until < now() OR lease_until IS NULL "  # noqa: S608 # constant columns
                    "FROM cadence_runs WHERE run_id = %s FOR UPDATE",
                    (run_id,),
                )
                row = await cursor.fetchone()
                if row is None:  # pragma: no cover - inserted or present just above
                    raise StoreError(run_id, f"run {run_id!r} vanished while being claimed")
                record = self._record(row)
                expired = bool(row[14])
                if record.owner == owner and record.status == "running":
                    # Ours: just inserted, or claimed from the queue by this owner's worker.
                    outcome = (
                        "created"
                        if record.attempts == 1
                        and expired is False
                        and (record.context == new.context and record.position == 0)
                        else "claimed"
                    )
                    await self._extend(connection, run_id, owner)
                elif record.status == "completed":
                    outcome = "finished"
                elif record.status == "cancelled":
                    outcome = "cancelled"
                elif record.status == "running" and not expired:
                    outcome = "busy"
                else:
                    await connection.execute(
                        "UPDATE cadence_runs SET status = 'running', owner = %s, "
                        "attempts = attempts + 1, updated_at = now(), "
                        "lease_until = now() + make_interval(secs => %s) WHERE run_id = %s",
                        (owner, self.lease, run_id),
                    )
                    outcome = "claimed"
                    record = self._record((*row[:8], record.attempts + 1, owner, *row[10:14]))
        except psycopg.Error as exc:
            raise StoreError(run_id, f"run {run_id!r}: claiming the run failed: {exc}") from exc
        return Claim(cast("Any", outcome), record)

    async def _extend(
        self, connection: psycopg.AsyncConnection[Any], run_id: str, owner: str
    ) -> None:
        await connection.execute(
            "UPDATE cadence_runs SET lease_until = now() + make_interval(secs => %s) "
            "WHERE run_id = %s AND owner = %s",
            (self.lease, run_id, owner),
        )

    async def _owned(
        self, run_id: str, owner: str, what: str, sql: str, parameters: tuple[object, ...]
    ) -> None:
        rows = await self._fetch(run_id, what, sql + " RETURNING run_id", parameters)
        if rows:
            return
        found = await self._fetch(
            run_id, what, "SELECT status, owner FROM cadence_runs WHERE run_id = %s", (run_id,)
        )
        raise lost_run_error(run_id, (found[0][0], found[0][1]) if found else None)

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
        """Commit the context, position and inner progress (and extend the lease) at once."""
        await self._owned(
            run_id,
            owner,
            "committing a checkpoint",
            "UPDATE cadence_runs SET position = %s, step = %s, context = %s, inner_state = %s, "
            "plan = coalesce(%s, plan), fingerprint = coalesce(%s, fingerprint), "
            "updated_at = now(), lease_until = now() + make_interval(secs => %s) "
            "WHERE run_id = %s AND owner = %s AND status = 'running'",
            (
                position,
                step,
                context,
                inner,
                None if plan is None else json.dumps(list(plan)),
                fingerprint,
                self.lease,
                run_id,
                owner,
            ),
        )

    def done(self, owner: str) -> None:
        """Forget an owner token: its attempt has ended (leases need no bookkeeping)."""

    async def heartbeat(self, run_id: str, owner: str) -> bool:
        """Extend the lease on a run; return whether `owner` still holds it."""
        rows = await self._fetch(
            run_id,
            "renewing the lease",
            "UPDATE cadence_runs SET lease_until = now() + make_interval(secs => %s) "
            "WHERE run_id = %s AND owner = %s AND status = 'running' RETURNING run_id",
            (self.lease, run_id, owner),
        )
        return bool(rows)

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
        await self._owned(
            run_id,
            owner,
            "finishing the run",
            "UPDATE cadence_runs SET status = %s, owner = NULL, lease_until = NULL, "
            "context = coalesce(%s, context), position = coalesce(%s, position), "
            "inner_state = CASE WHEN %s::int IS NULL THEN inner_state END, "
            "step = CASE WHEN %s::int IS NULL THEN step END, error = %s, updated_at = now() "
            "WHERE run_id = %s AND owner = %s AND status = 'running'",
            (
                status,
                context,
                position,
                position,
                position,
                None if error is None else error.to_json(),
                run_id,
                owner,
            ),
        )

    async def release(self, run_id: str, owner: str) -> None:
        """Hand the run back (status `pending`) so another caller may resume it."""
        await self._fetch(
            run_id,
            "releasing the run",
            "UPDATE cadence_runs SET status = 'pending', owner = NULL, lease_until = NULL, "
            "updated_at = now() WHERE run_id = %s AND owner = %s AND status = 'running'",
            (run_id, owner),
        )

    # ------------------------------------------------------------------ the queue

    async def enqueue_row(self, run_id: str, new: NewRun) -> bool:
        """Queue a run for the workers; return False if the run id is taken."""
        rows = await self._fetch(
            run_id,
            "queueing the run",
            f"INSERT INTO cadence_runs ({_COLUMNS}) VALUES "  # noqa: S608 # constant columns
            "(%s, %s, 'pending', 0, %s, %s, %s, %s, 0, NULL, NULL, now(), now(), NULL) "
            "ON CONFLICT (run_id) DO NOTHING RETURNING run_id",
            (
                run_id,
                new.cadence,
                new.step,
                json.dumps(list(new.plan)),
                new.fingerprint,
                new.context,
            ),
        )
        return bool(rows)

    async def claim_next(self, cadences: Sequence[str], owner: str) -> RunRecord | None:
        """Claim the oldest pending run of `cadences`, or one whose lease ran out."""
        rows = await self._fetch(
            "",
            "claiming a queued run",
            "UPDATE cadence_runs SET status = 'running', owner = %s, attempts = attempts + 1, "  # noqa: S608 # constant columns
            "lease_until = now() + make_interval(secs => %s), updated_at = now() "
            "WHERE run_id = (SELECT run_id FROM cadence_runs WHERE cadence = ANY(%s) AND "
            "(status = 'pending' OR (status = 'running' AND lease_until < now())) "
            "ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) "
            f"RETURNING {_COLUMNS}",
            (owner, self.lease, list(cadences)),
        )
        return self._record(rows[0]) if rows else None

    # ------------------------------------------------------------------ inspecting runs

    async def get(self, run_id: str) -> RunRecord | None:
        """Return the run, or `None` if the store does not hold it."""
        rows = await self._fetch(
            run_id,
            "reading the run",
            f"SELECT {_COLUMNS} FROM cadence_runs WHERE run_id = %s",  # noqa: S608 # constant columns
            (run_id,),
        )
        return self._record(rows[0]) if rows else None

    async def list_runs(
        self, *, status: RunStatus | None = None, cadence: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        """Return runs, newest first, optionally of one status or cadence."""
        rows = await self._fetch(
            "",
            "listing runs",
            f"SELECT {_COLUMNS} FROM cadence_runs WHERE (%s::text IS NULL OR status = %s) "  # noqa: S608 # constant columns
            "AND (%s::text IS NULL OR cadence = %s) ORDER BY created_at DESC, run_id LIMIT %s",
            (status, status, cadence, cadence, limit),
        )
        return [self._record(row) for row in rows]

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run that has not finished; return whether one was cancelled."""
        rows = await self._fetch(
            run_id,
            "cancelling the run",
            "UPDATE cadence_runs SET status = 'cancelled', updated_at = now() WHERE run_id = %s "
            "AND status IN ('pending', 'running', 'failed') RETURNING run_id",
            (run_id,),
        )
        return bool(rows)

    async def delete(self, run_id: str) -> bool:
        """Delete a run that is not running; return whether one was deleted."""
        rows = await self._fetch(
            run_id,
            "deleting the run",
            "DELETE FROM cadence_runs WHERE run_id = %s AND status != 'running' RETURNING run_id",
            (run_id,),
        )
        return bool(rows)

    async def prune(self, older_than: datetime.timedelta) -> int:
        """Delete finished runs (completed, failed, cancelled) last written before the age."""
        rows = await self._fetch(
            "",
            "pruning runs",
            "DELETE FROM cadence_runs WHERE status IN ('completed', 'failed', 'cancelled') "
            "AND updated_at < now() - %s RETURNING run_id",
            (older_than,),
        )
        return len(rows)

    async def aclose(self) -> None:
        """Close the connection pool (a later call opens a new one)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


async def enqueue(
    cadence: Cadence[Any], context: Context, *, run_id: str, store: PostgresStore
) -> bool:  # Any: a queue takes cadences over any context type
    """Queue a durable run of `cadence` over `context` for the workers.

    Returns:
        Whether it was queued (`False`: the run id is taken).

    Raises:
        CadenceDefinitionError: the context type cannot be stored (the field is named).

    """
    codec = codec_for(type(context))
    plan = describe_plan(cadence)
    first = cadence.steps[0].name if cadence.steps else None
    new = NewRun(cadence.name, plan, plan_fingerprint(plan), codec.encode(context, run_id), first)
    return await store.enqueue_row(run_id, new)


class Worker:
    """Claim queued runs (and runs whose worker died) and run them, `concurrency` at a time.

    Each run is claimed with `FOR UPDATE SKIP LOCKED` and kept by a heartbeat every third of
    the lease; a run whose lease is lost is stopped. On SIGTERM (or `stop()`) the worker
    claims nothing more and lets its runs finish; cancelled, they are handed back.

    Args:
        store: The PostgreSQL store.
        cadences: The cadences this worker runs, by name; each needs a template context.
        concurrency: Runs at once.
        idle: Seconds to wait when the queue is empty.

    """

    def __init__(
        self,
        store: PostgresStore,
        cadences: Sequence[Cadence[Any]],  # Any: cadences over any context types
        *,
        concurrency: int = 4,
        idle: float = 0.2,
    ) -> None:
        self.store = store
        self.cadences = {c.name: c for c in cadences}
        for c in cadences:
            if c.context is None:
                raise CadenceDefinitionError(
                    f"Worker: cadence {c.name!r} has no template context to resume runs onto"
                )
        self.concurrency = concurrency
        self.idle = idle
        self._stopping = anyio.Event()

    def stop(self) -> None:
        """Claim no more runs; `run()` returns once the runs in hand finish."""
        self._stopping.set()

    async def run(self, *, handle_signals: bool = True) -> None:
        """Work until `stop()` or SIGTERM, then finish the runs in hand and return."""
        from cadence.durable._runner import run_durable  # noqa: PLC0415 # a cycle: the runner imports stores' protocol

        limiter = anyio.Semaphore(self.concurrency)

        async def one(record: RunRecord, owner: str) -> None:
            cadence = self.cadences[record.cadence]
            try:
                async with anyio.create_task_group() as group:

                    async def beat_heart() -> None:
                        while True:
                            await anyio.sleep(self.store.lease / 3)
                            if not await self.store.heartbeat(record.run_id, owner):
                                logger.warning("run %r: the lease was lost", record.run_id)
                                await emit_durable(
                                    cadence,
                                    LeaseLost(
                                        cadence=cadence.name,
                                        run_id=record.run_id,
                                        at=time.time(),
                                        owner=owner,
                                        position=record.position,
                                        step=record.step,
                                    ),
                                )
                                group.cancel_scope.cancel()
                                return

                    group.start_soon(beat_heart)
                    await run_durable(
                        cadence,
                        cadence.fresh_context(),
                        record.run_id,
                        self.store,
                        None,
                        owner=owner,
                        claimed=record,
                    )
                    group.cancel_scope.cancel()
            except Exception:
                logger.exception("run %r failed", record.run_id)
            finally:
                limiter.release()

        async with anyio.create_task_group() as outer:
            if handle_signals:
                outer.start_soon(self._watch_signals)
            async with anyio.create_task_group() as runs:  # waits for the runs in hand
                names = list(self.cadences)
                while not self._stopping.is_set():
                    await limiter.acquire()
                    owner = self.store.new_owner()
                    try:
                        record = await self.store.claim_next(names, owner)
                    except StoreError:
                        logger.exception("claiming a run failed")
                        record = None
                    if record is None:
                        limiter.release()
                        with anyio.move_on_after(self.idle):
                            await self._stopping.wait()
                        continue
                    runs.start_soon(one, record, owner)
            outer.cancel_scope.cancel()

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                self.stop()
                return
