"""`PostgresStore`, `enqueue` and `Worker`: durable runs shared by many processes on many machines.

Runs are owned by lease: a claim sets `lease_until`; the store's heartbeat (and a checkpoint,
once half the lease is spent) extends it; a run whose lease ran out (its worker died) is
claimed again by another worker with `FOR UPDATE SKIP LOCKED`, so no two workers ever claim
one run at once, and a commit is written only while its owner still holds the lease. Needs
`pip install 'cadence-flow[postgres]'`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
import uuid
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    Literal,
    LiteralString,
    ParamSpec,
    TypeVar,
    cast,
)

import anyio
import anyio.abc

from cadence._errors import CadenceDefinitionError
from cadence.durable._bridge import AsyncioThread, LoopClosedError
from cadence.durable._codec import check_storable
from cadence.durable._errors import (
    PlanChangedError,
    RunCancelledError,
    RunDecodeError,
    StoreError,
    lost_run_error,
)
from cadence.durable._plan import plan_json
from cadence.durable._store import (
    COLUMNS,
    Claim,
    ClaimOutcome,
    ErrorInfo,
    NewRun,
    RunRecord,
    RunStatus,
    check_listing,
    listed_from_row,
    record_from_row,
    undone_to,
)

try:
    import psycopg
    import psycopg.errors
    import psycopg.generators
    from psycopg import pq
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from psycopg_pool import AsyncConnectionPool, PoolTimeout

    from cadence.durable._held_socket import HeldSocket  # psycopg's too
except ImportError as exc:  # pragma: no cover - psycopg is installed in the test venv
    raise ImportError(
        "PostgresStore needs psycopg 3: pip install 'cadence-flow[postgres]'"
    ) from exc


# Prepared statements through libpq, past psycopg's cursors (`PostgresStore._fast`), lean on
# psycopg's lower layer: its send-and-fetch loop (`psycopg.generators.execute`) and each
# connection's `pgconn` and `lock` (in every psycopg 3); should a psycopg lack the loop,
# cursors do the work.
_LIBPQ = hasattr(psycopg.generators, "execute")

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence
    from types import CoroutineType

    from cadence._cadence import Cadence
    from cadence._context import Context

__all__ = ["PostgresStore", "Worker", "enqueue"]

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C", bound="Context")

logger = logging.getLogger("cadence.durable")

SCHEMA_VERSION = 3

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
    # The queue's own indexes: a worker's claim takes the oldest pending run, or a running
    # one whose lease ran out, each from its own small index, instead of sorting the table
    # (or walking past every run in progress). Room in each page lets a checkpoint update its
    # row in place (a HOT update, no index writes).
    2: """
    CREATE INDEX IF NOT EXISTS cadence_runs_pending ON cadence_runs (created_at)
        WHERE status = 'pending';
    CREATE INDEX IF NOT EXISTS cadence_runs_leases ON cadence_runs (lease_until)
        WHERE status = 'running';
    ALTER TABLE cadence_runs SET (fillfactor = 70);
    """,
    # The queue's indexes, per cadence, read in order by a claim's one lookup per cadence:
    # with statistics that saw few pending runs (a fresh table, a burst of enqueues), the
    # planner took the first index for a claim and sorted every pending run by age (28 ms
    # with 50,000 queued). Leases are indexed for the running runs that hold one: a commit's
    # `status = 'running'` alone implies no partial index, so it finds its row by primary
    # key instead of walking every run in progress, and a claim's expired half needs no
    # filter that statistics-less estimates would take for rare (it sorted every expired
    # lease). A claim's scans step over the entries
    # of every run claimed or finished since the last vacuum (15 ms per claim after 200,000
    # runs, 0.16 ms after a vacuum): vacuum after a fixed number of dead rows, not after a
    # fifth of the table, which on a table keeping its history means rarely.
    3: """
    DROP INDEX IF EXISTS cadence_runs_claim;
    DROP INDEX IF EXISTS cadence_runs_pending;
    DROP INDEX IF EXISTS cadence_runs_leases;
    UPDATE cadence_runs SET lease_until = NULL
        WHERE status != 'running' AND lease_until IS NOT NULL;
    CREATE INDEX IF NOT EXISTS cadence_runs_queue ON cadence_runs (cadence, created_at)
        WHERE status = 'pending';
    CREATE INDEX IF NOT EXISTS cadence_runs_held ON cadence_runs (cadence, lease_until)
        WHERE lease_until IS NOT NULL AND status = 'running';
    ALTER TABLE cadence_runs SET (
        autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000
    );
    """,
}

_COLUMNS = f"{COLUMNS}, inner_state"
# What a select returns: the same columns, timestamps as epoch seconds. A timestamp psycopg
# cannot load ('infinity', after year 9999) is then the row's decoding error, not a failed
# query that hides every row of a listing.
_READ = _COLUMNS.replace(
    "created_at, updated_at",
    "extract(epoch FROM created_at)::float8, extract(epoch FROM updated_at)::float8",
)

_CLAIM = (
    # `found`, the status before the claim, is read where the update's condition asks for it:
    # after the conflict locked the row and before the update replaced it (a CTE is read when
    # first asked for; read in RETURNING only, it would see the update's own row). For a new
    # row it is read in RETURNING, and finds nothing: a row returned without it was inserted.
    "WITH found AS (SELECT status FROM cadence_runs WHERE run_id = %s FOR UPDATE) "  # noqa: S608 # constant columns
    f"INSERT INTO cadence_runs ({_COLUMNS}, lease_until) VALUES "
    "(%s, %s, 'running', 0, %s, %s, %s, %s, 1, %s, NULL, now(), now(), NULL, "
    "now() + make_interval(secs => %s)) "
    "ON CONFLICT (run_id) DO UPDATE SET status = 'running', owner = excluded.owner, "
    "attempts = cadence_runs.attempts + 1, updated_at = now(), lease_until = excluded.lease_until "
    "WHERE (SELECT status FROM found) IS NOT NULL AND (cadence_runs.status = 'pending' "
    "OR (cadence_runs.status = 'failed' AND %s) OR (cadence_runs.status = 'running' "
    "AND (cadence_runs.lease_until IS NULL OR cadence_runs.lease_until < now()))) "
    f"RETURNING {_READ}, (SELECT status FROM found)"
)
_SELECT_RUN = f"SELECT {_READ} FROM cadence_runs WHERE run_id = %s"  # noqa: S608 # constant columns


class _Statement:
    """A statement a run's held connection prepares once and runs through libpq directly.

    psycopg's cursor machinery (a cursor, a transformer, the query's conversion, the prepared
    cache) costs about a third of a commit's CPU in the worker; these few statements, with
    their parameters' types fixed, skip it. `query` is the same statement for a cursor, for
    a run that holds no connection.
    """

    __slots__ = ("formats", "name", "query", "result_format", "sql", "types")

    _OIDS: ClassVar[dict[str, int]] = {
        "int4": 23,
        "text": 25,
        "bytea": 17,
        "float8": 701,
        "text[]": 1009,
    }

    def __init__(
        self, name: str, query: LiteralString, types: tuple[str, ...], *, binary: bool = False
    ) -> None:
        self.result_format = 1 if binary else 0
        self.name = f"cadence_{name}".encode()
        self.query: LiteralString = query
        parts = query.split("%s")
        if len(parts) != len(types) + 1:  # pragma: no cover - a constant's own check
            raise ValueError(f"{name}: {len(parts) - 1} parameters, {len(types)} types")
        sql = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
        self.sql = sql.encode()
        self.types = [self._OIDS[kind] for kind in types]
        self.formats = [1 if kind == "bytea" else 0 for kind in types]


def _value(value: object) -> bytes | None:
    """Return a parameter in libpq's form: bytes as they are (binary), the rest as text."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):  # text[]: each element quoted, with its " and \ escaped
        items = (
            str(v).replace("\\", "\\\\").replace('"', '\\"') for v in cast("list[object]", value)
        )
        return ("{" + ",".join(f'"{item}"' for item in items) + "}").encode()
    return repr(value).encode()  # an int or a float


def _claimed(result: pq.abc.PGresult) -> tuple[object, ...]:
    """Return the row `_CLAIM_NEXT` returned (binary), as `_record` reads it."""
    row: list[object] = []
    for column, kind in enumerate(_CLAIMED_KINDS):
        value = result.get_value(0, column)
        if value is None:
            row.append(None)
        elif kind == "text":
            row.append(bytes(value).decode())
        elif kind == "int4":
            row.append(int.from_bytes(value, "big", signed=True))
        elif kind == "time":
            row.append(struct.unpack(">d", value)[0])  # epoch seconds: `record_from_row` reads them
        elif kind == "bool":
            row.append(bytes(value) == b"\x01")
        else:
            row.append(bytes(value))
    return tuple(row)


_CLAIMED_KINDS = (
    "text",  # run_id
    "text",  # cadence
    "text",  # status
    "int4",  # position
    "text",  # step
    "text",  # plan
    "text",  # fingerprint
    "bytea",  # context
    "int4",  # attempts
    "text",  # owner
    "text",  # error
    "time",  # created_at
    "time",  # updated_at
    "bytea",  # inner_state
    "bool",  # late: taken over from an expired lease (not part of the record)
)


# A plan and fingerprint only when a migration changed them. The lease only once half spent
# (the heartbeat renews it every third): a row whose indexed columns keep their values is
# updated in place (a HOT update), without a new entry in each of the table's indexes.
_CHECKPOINT = _Statement(
    "checkpoint",
    "UPDATE cadence_runs SET position = %s, step = %s, context = %s, inner_state = %s, "
    "plan = coalesce(%s, plan), fingerprint = coalesce(%s, fingerprint), updated_at = now(), "
    "lease_until = CASE WHEN lease_until < now() + make_interval(secs => %s) "
    "THEN now() + make_interval(secs => %s) ELSE lease_until END "
    "WHERE run_id = %s AND owner = %s AND status = 'running' RETURNING 1",
    ("int4", "text", "bytea", "bytea", "text", "text", "float8", "float8", "text", "text"),
)
_FINISH = _Statement(
    "finish",
    "UPDATE cadence_runs SET status = %s, owner = NULL, lease_until = NULL, "
    "context = coalesce(%s, context), position = coalesce(%s, position), "
    "inner_state = CASE WHEN %s::int IS NULL THEN inner_state END, "
    "step = CASE WHEN %s::int IS NULL THEN step END, error = %s, updated_at = now() "
    "WHERE run_id = %s AND owner = %s AND status = 'running' RETURNING 1",
    ("text", "bytea", "int4", "int4", "int4", "text", "text", "text"),
)
# A cancelled run stays while its owner's lease holds (still in its step, not let go of).
_LET_GO = "AND NOT (status = 'cancelled' AND lease_until IS NOT NULL AND lease_until > now())"
# status `pending`, or the status a claim undone found (one less attempt); a run cancelled
# meanwhile stays cancelled, let go of
_RELEASE = _Statement(
    "release",
    "UPDATE cadence_runs SET owner = NULL, lease_until = NULL, updated_at = now(), "
    "status = CASE status WHEN 'running' THEN %s ELSE status END, "
    "attempts = attempts - CASE status WHEN 'running' THEN %s ELSE 0 END "
    "WHERE run_id = %s AND owner = %s AND status IN ('running', 'cancelled') RETURNING 1",
    ("text", "int4", "text", "text"),
)


def _oldest_per_cadence(
    name: LiteralString, where: LiteralString, order: LiteralString
) -> LiteralString:
    """Return the CTEs `{name}_heads` and `name`, for one half of a claim.

    `{name}_heads` holds each cadence's oldest run by `order` where `where` holds (unlocked);
    `name` the first such run no other claim holds, locked, looked for in the cadence whose
    head is oldest first. Parameters: the cadences and the runs to skip, then those again.
    """
    # Constant pieces only (S608): no value is spliced in.
    return (
        f"{name}_heads AS (SELECT n.name, h.{order} FROM unnest(%s::text[]) AS n(name), "  # noqa: S608
        f"LATERAL (SELECT {order} FROM cadence_runs WHERE {where} AND cadence = n.name "
        f"AND NOT run_id = ANY(%s) ORDER BY {order} LIMIT 1) AS h), "
        f"{name} AS (SELECT c.run_id, c.created_at "
        f"FROM (SELECT name FROM {name}_heads ORDER BY {order}) AS o, LATERAL ("
        f"SELECT run_id, created_at FROM cadence_runs WHERE {where} AND cadence = o.name "
        f"AND NOT run_id = ANY(%s) ORDER BY {order} LIMIT 1 FOR UPDATE SKIP LOCKED) AS c LIMIT 1)"
    )


# A claim looks each of the worker's cadences up in its own ordered index (one index step,
# however many runs are queued), unlocked, then locks in the cadence whose head is oldest,
# skipping what other claims hold: it locks at most one pending and one expired run, however
# many cadences the worker serves (a lock on each cadence's head would send a concurrent
# claim away empty-handed while runs are queued). An expired run goes first: it is work in
# progress whose owner died, to be taken over within a third of a lease however long the queue.
_CLAIM_NEXT = _Statement(
    "claim_next",
    "WITH "  # noqa: S608 # constant pieces, as above
    + _oldest_per_cadence("pending", "status = 'pending'", "created_at")
    + ", "
    + _oldest_per_cadence("expired", "lease_until < now() AND status = 'running'", "lease_until")
    + " "
    "UPDATE cadence_runs SET status = 'running', owner = %s, attempts = attempts + 1, "
    "lease_until = now() + make_interval(secs => %s), updated_at = now() "
    "FROM (SELECT run_id, late FROM (SELECT *, false AS late FROM pending "
    "UNION ALL SELECT *, true FROM expired) AS candidates ORDER BY late DESC, created_at LIMIT 1) "
    "AS pick "
    "WHERE cadence_runs.run_id = pick.run_id "
    "RETURNING cadence_runs.run_id, cadence, status, position, step, plan, fingerprint, "
    "context, attempts, owner, error, extract(epoch FROM created_at)::float8, "
    "extract(epoch FROM updated_at)::float8, inner_state, pick.late",
    ("text[]", "text[]", "text[]", "text[]", "text[]", "text[]", "text", "float8"),
    binary=True,
)
_STATEMENTS = (_CHECKPOINT, _FINISH, _RELEASE, _CLAIM_NEXT)
_FOUND: dict[str, ClaimOutcome] = {
    "completed": "finished",
    "cancelled": "cancelled",
    "failed": "failed",  # only found when the claim was told not to resume failed runs
    "running": "busy",  # its lease holds (checked by the insert just before)
}


def _in_trio() -> bool:
    """Return whether the caller is a trio task (without importing trio where nothing did)."""
    trio = sys.modules.get("trio")
    return trio is not None and bool(trio.lowlevel.in_trio_task())


def _run_of(args: tuple[object, ...]) -> str:
    """Return the run a store call is about: the methods about one run take its id first."""
    return args[0] if args and isinstance(args[0], str) else ""


def _wrong_loop(run_id: str, why: str) -> StoreError:
    """Return the error of a call from an event loop the store is not used on."""
    name = f"run {run_id!r}: " if run_id else ""
    return StoreError(
        run_id,
        f"{name}this PostgresStore {why}: give each event loop its own store (or aclose() it "
        "there first)",
    )


def _on_asyncio(
    method: Callable[Concatenate[PostgresStore, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[PostgresStore, P], CoroutineType[Any, Any, T]]:  # Any: any coroutine's
    """Run a store's method on asyncio: at once, or from trio on the store's own loop thread."""

    @functools.wraps(method)
    async def call(self: PostgresStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # trio: this very call, on the store's own loop thread
            return await self._on_loop_thread(call(self, *args, **kwargs), _run_of(args))  # pyright: ignore[reportPrivateUsage] # the class's own decorator
        if self._loop is not loop:  # pyright: ignore[reportPrivateUsage] # as above; else it is the store's loop
            self._enter(loop, _run_of(args))  # pyright: ignore[reportPrivateUsage] # as above
        return await method(self, *args, **kwargs)

    # An `async def` is a `CoroutineType` to pyright (as the stores' protocol says), a
    # `Coroutine` to mypy: the one type both accept.
    return cast("Callable[Concatenate[PostgresStore, P], CoroutineType[Any, Any, T]]", call)


_IN_USE = "is in use on another event loop, still running"
_ON_ITS_THREAD = (
    "runs on its own loop thread since it was used under trio, and this call comes from "
    "another asyncio loop"
)
_LAPSE = 0.9  # the share of a lease after which a lease not renewed is given up


class _Watch:
    """A lease the heartbeat renews: its run, what to call if it is lost, its last renewal."""

    __slots__ = ("lost", "renewed", "run_id")

    def __init__(self, run_id: str, lost: Callable[[], None], renewed: float) -> None:
        self.run_id = run_id
        self.lost = lost
        self.renewed = renewed  # `time.monotonic()` before the last renewal was sent

    def lapses_at(self, lease: float) -> float:
        """Return the `time.monotonic()` at which this lease, not renewed, is given up."""
        return self.renewed + lease * _LAPSE


def _bounded(dsn: str, lease: float) -> str:
    """Return `dsn` with libpq's TCP timeouts and a lock timeout added where it sets none.

    Without them a call caught by a network partition waits for the kernel to give up on
    the connection (15 minutes by default), a claim or finish with it, shielded from
    cancellation as they are: keepalives find a silent server within half a lease, and
    `tcp_user_timeout` fails a write the server has not acknowledged within one lease
    (ignored on Unix-domain sockets). A run's row locked by another session (a
    `SELECT ... FOR UPDATE` left open) would hold a commit, or the hand-back after it, for as
    long as that session lives: `lock_timeout` fails the wait after a lease, by when the run
    is lost anyway. A DSN's own values are kept.

    Raises:
        psycopg.ProgrammingError: `dsn` does not parse.

    """
    given = conninfo_to_dict(dsn)
    idle = max(1, round(lease / 6))
    wait = max(1000, round(lease * 1000))
    bounds: dict[str, str | int] = {
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": idle,
        "keepalives_count": 2,
        "tcp_user_timeout": wait,
    }
    missing = {key: value for key, value in bounds.items() if key not in given}
    options = str(given.get("options") or "")
    if "lock_timeout" not in options:
        missing["options"] = f"{options} -c lock_timeout={wait}".strip()
    return make_conninfo(dsn, **missing) if missing else dsn


class PostgresStore:
    """Keep durable runs in PostgreSQL, shared by worker processes on many machines.

    It holds a psycopg 3 async connection pool, opened on first use (in the event loop that
    uses it: give each event loop its own store). psycopg's async API runs on asyncio only:
    under trio the store runs on an asyncio loop thread of its own, and each call crosses to
    it and back (`aclose()` stops it). The schema is created and migrated by the store
    (versioned in `cadence_meta`).

    A run being run holds one pooled connection from its claim to its finish (while fewer
    than `max_size - 1` runs hold one; the others check one out per commit), so a commit is
    one statement on a connection in hand. While a run's steps run, one background task per
    store renews the leases of all of them every third of the lease, in one statement.

    Args:
        dsn: A libpq connection string or URL. TCP keepalives and `tcp_user_timeout` are
            added where it sets none, scaled to the lease (a partition fails a call in time).
        lease: Seconds a claim holds a run without a heartbeat (or a checkpoint made once
            half of it is spent).
        poll_interval: Seconds between looks at a run another live caller owns.
        min_size: The pool's smallest size.
        max_size: The pool's largest size.
        prepare: Prepare the store's statements on each connection (the default). `False`
            for a pooler between the store and the server that does not keep a connection's
            prepared statements (PgBouncer in transaction mode before 1.21): every statement
            then goes through psycopg's cursor, unprepared (more CPU per commit).

    """

    def __init__(
        self,
        dsn: str,
        *,
        lease: float = 30.0,
        poll_interval: float = 0.2,
        min_size: int = 1,
        max_size: int = 10,
        prepare: bool = True,
    ) -> None:
        self.dsn = dsn
        self._conninfo = dsn  # with TCP timeouts, once parsed (`_bounded`)
        self.lease = lease
        self.prepare = prepare
        self._libpq = prepare and _LIBPQ  # past psycopg's cursors: a third of a commit's CPU
        self._poll_interval = poll_interval
        self._min_size = min_size
        self._max_size = max_size
        self._pool: AsyncConnectionPool[Any] | None = None  # Any: psycopg's connection class
        self._host = socket.gethostname()
        self._held: dict[str, psycopg.AsyncConnection[Any]] = {}  # owner -> its connection
        self._orphans: list[psycopg.AsyncConnection[Any]] = []  # to hand back to the pool
        self._watched: dict[str, _Watch] = {}  # owner -> its run, `lost`, its last renewal
        self._claimed_at: dict[str, float] = {}  # owner -> `time.monotonic()` before its claim
        self._beating: asyncio.Task[None] | None = None
        self._opening: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the store is used on
        self._loop_guard = threading.Lock()  # two loops' first calls at once: one takes it
        self._ready: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()  # prepared
        self._sockets: dict[psycopg.AsyncConnection[Any], HeldSocket] = {}  # watched by `_fast`
        self._bridge: AsyncioThread | None = None  # under trio: the loop the store runs on
        self._pid = os.getpid()  # the process whose pool and loop thread these are

    def __repr__(self) -> str:
        return f"PostgresStore(lease={self.lease})"

    async def _on_loop_thread(
        self, coroutine: Coroutine[Any, Any, T], run_id: str = ""
    ) -> T:  # Any: as above
        """Run a call made outside asyncio on the store's asyncio loop thread (trio only)."""
        if not _in_trio():
            coroutine.close()
            raise StoreError(
                run_id,
                "PostgresStore runs under asyncio or trio, and this is neither (no event loop)",
            )
        self._left_the_parent()
        with self._loop_guard:  # an asyncio loop's first call at the same time: one wins
            if self._bridge is None:
                used_on = self._loop
                if used_on is not None and used_on.is_running():  # an asyncio loop's, till closed
                    coroutine.close()
                    raise _wrong_loop(run_id, _IN_USE)
                self._bridge = AsyncioThread("cadence-postgres")
        try:
            return await self._bridge.run(coroutine)
        except LoopClosedError as exc:
            raise StoreError(run_id, f"PostgresStore was closed while a call ran: {exc}") from exc

    @property
    def poll_interval(self) -> float:
        """Seconds between looks at a run owned by another live caller, while waiting for it."""
        return self._poll_interval

    def new_owner(self) -> str:
        """Return a fresh owner token: this host, process and a nonce."""
        return f"{self._host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    def _left_the_parent(self) -> bool:
        """Return whether this is a forked child, now rid of its parent's pool and loop thread.

        They are the parent's sockets and thread: the child forgets them (psycopg never closes
        a connection in a process that did not open it) and opens its own on its next call.
        """
        if self._pid == os.getpid():
            return False
        self._pid = os.getpid()
        self._bridge, self._ready = None, weakref.WeakSet()
        self._loop_guard = threading.Lock()  # another thread of the parent may have held it
        self._forget_the_loop()  # and the sockets, watched by the parent's loop
        return True

    async def _open(self, run_id: str) -> AsyncConnectionPool[Any]:  # Any: as above
        self._left_the_parent()
        if self._pool is not None:
            if self._orphans:
                await self._return_orphans(self._pool)
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:  # the first calls, made at once, open one pool
            opened = cast("AsyncConnectionPool[Any] | None", self._pool)  # set while waiting?
            if opened is None:
                opened = self._pool = await self._new_pool(run_id)
            return opened

    def _enter(self, loop: asyncio.AbstractEventLoop, run_id: str) -> None:
        """Make `loop` the store's, unless its loop thread or another loop that still runs has it.

        A loop that ended took its pool with it (the pool's tasks died there): the store
        forgets it and opens a new one on `loop`. A forked child forgets its parent's first.

        Raises:
            StoreError: the store's trio loop thread, or another loop still running, has it
                (the run is named).

        """
        self._left_the_parent()  # first: a forked child's guard may be held by a parent thread
        with self._loop_guard:
            bridge = self._bridge  # a trio call may have started it since this call looked
            if bridge is not None and bridge.elsewhere():
                raise _wrong_loop(run_id, _ON_ITS_THREAD)
            used_on = self._loop
            if used_on is loop:
                return
            if used_on is not None:
                if used_on.is_running():  # its pool, lock and sockets are that loop's
                    raise _wrong_loop(run_id, _IN_USE)
                self._forget_the_loop()
            self._loop = loop

    async def _probe(self, run_id: str) -> None:
        """Connect once, alone: a server that cannot be reached is an error at once, naming why.

        The pool's own retries would time out after 10 s with the cause in its logs only.
        """
        try:
            self._conninfo = _bounded(self.dsn, self.lease)
            error = await _connect_error(self._conninfo, within=10)
        except psycopg.Error as exc:  # the DSN does not parse
            error = exc
        if error is not None:
            name = f"run {run_id!r}: " if run_id else ""
            raise StoreError(run_id, f"{name}PostgreSQL is unavailable: {error}") from error

    async def _new_pool(self, run_id: str) -> AsyncConnectionPool[Any]:  # Any: as above
        """Open the pool, and create or migrate the schema."""
        await self._probe(run_id)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self._conninfo,
            min_size=self._min_size,
            max_size=self._max_size,
            timeout=_pool_wait(self.lease),
            reconnect_timeout=_RECONNECTING,
            open=False,
            kwargs={"autocommit": True, "prepare_threshold": 5 if self.prepare else None},
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
        except BaseException:  # cancelled while opening: no pool is left behind
            with anyio.CancelScope(shield=True):
                await pool.close(timeout=1.0)  # its workers, stuck connecting: not for long
            raise
        return pool

    async def _return_orphans(self, pool: AsyncConnectionPool[Any]) -> None:  # Any: as above
        orphans, self._orphans = self._orphans, []
        with anyio.CancelScope(shield=True):
            for connection in orphans:
                try:
                    await pool.putconn(connection)  # the pool discards a broken one
                except Exception:  # noqa: BLE001 # not this pool's (one closed since): no pool's
                    with contextlib.suppress(Exception):
                        await connection.close()

    def _keeps(self, pool: AsyncConnectionPool[Any]) -> bool:  # Any: as above
        """Whether a run just claimed on a connection of `pool` may hold it until it ends.

        Not if `pool` is no longer the store's (closed under the claim), nor if holding it
        would leave the pool no connection for everything else.
        """
        return self._pool is pool and len(self._held) < self._max_size - 1

    async def _hand_back(self, owner: str) -> None:
        """Stop holding `owner`'s connection and put it back in the pool now, with any parked.

        A run's last write ends so: a connection parked until the next `_open` could wait
        there while every other caller waits in the pool for one (the runs still going make
        their commits on connections they hold, never through `_open`).
        """
        self._drop(owner)
        if self._orphans and self._pool is not None:
            await self._return_orphans(self._pool)

    def _drop(self, owner: str) -> None:
        """Stop holding `owner`'s connection; it goes back to the pool at the next call."""
        connection = self._held.pop(owner, None)
        if connection is not None:
            self._let_go(connection)
            self._orphans.append(connection)

    def _let_go(self, connection: psycopg.AsyncConnection[Any]) -> None:  # Any: as above
        """Stop watching a connection's socket: psycopg's own waits may use it again."""
        socket = self._sockets.pop(connection, None)
        if socket is not None:
            socket.close()

    async def _fetch(
        self, run_id: str, what: str, sql: LiteralString, parameters: Sequence[object] = ()
    ) -> list[tuple[Any, ...]]:  # Any: row values of the declared columns
        pool = await self._open(run_id)
        name = f"run {run_id!r}: " if run_id else ""
        connection = await _checkout(pool, run_id, f"{name}{what}")
        try:
            cursor = await connection.execute(sql, parameters)
            return list(await cursor.fetchall()) if cursor.description else []
        except psycopg.Error as exc:
            raise StoreError(run_id, f"{name}{what} failed in PostgreSQL: {exc}") from exc
        finally:
            with anyio.CancelScope(shield=True):
                await pool.putconn(connection)

    async def _owned_count(
        self, run_id: str, owner: str, what: str, statement: _Statement, values: Sequence[object]
    ) -> int:
        """Run `statement` on the connection `owner` holds (else on a pooled one); count rows.

        A held connection whose session ended while the step ran (a server restart, a
        terminated backend) is let go, and a pooled one runs the statement instead of the run
        failing on it. A watched socket has read the end as it came; an unwatched one (before
        the first prepared commit, or with `prepare=False`) reads it now (`_alive`).
        """
        connection = self._held.get(owner)
        if connection is not None and not (
            connection.pgconn.status == pq.ConnStatus.OK
            if connection in self._sockets
            else _alive(connection)
        ):
            self._drop(owner)
            connection = None
        if connection is None:
            return len(await self._fetch(run_id, what, statement.query, values))
        try:
            if not self._libpq:
                cursor = await connection.execute(statement.query, values, prepare=self.prepare)
                return len(await cursor.fetchall())
            return (await self._fast(connection, statement, values)).ntuples
        except psycopg.Error as exc:
            self._drop(owner)
            raise StoreError(run_id, f"run {run_id!r}: {what} failed in PostgreSQL: {exc}") from exc
        except BaseException:  # cancelled mid-statement: the connection's state is unknown
            self._drop(owner)
            raise

    async def _fast(
        self,
        connection: psycopg.AsyncConnection[Any],
        statement: _Statement,
        values: Sequence[object],
    ) -> pq.abc.PGresult:  # Any: psycopg's connection class
        """Run a prepared statement through libpq (preparing them all on first use).

        The connection's socket stays watched by the loop until the connection is let go
        (`HeldSocket`), or until a statement raises: then its state is unknown.
        """
        pgconn, execute = connection.pgconn, psycopg.generators.execute
        async with connection.lock:
            socket = self._sockets.get(connection)
            if socket is None:
                socket = self._sockets[connection] = HeldSocket(pgconn)
            try:
                if connection not in self._ready:
                    for each in _STATEMENTS:
                        pgconn.send_prepare(each.name, each.sql, param_types=each.types)
                        self._check(connection, await socket.run(execute(pgconn)), rows=False)
                    self._ready.add(connection)
                pgconn.send_query_prepared(
                    statement.name,
                    [_value(v) for v in values],
                    param_formats=statement.formats,
                    result_format=statement.result_format,
                )
                results = await socket.run(execute(pgconn))
            except BaseException:
                self._let_go(connection)
                raise
        return self._check(connection, results, rows=True)

    @staticmethod
    def _check(
        connection: psycopg.AsyncConnection[Any], results: list[pq.abc.PGresult], *, rows: bool
    ) -> pq.abc.PGresult:  # Any: as above
        """Return a statement's result, or raise the error it reports."""
        result = results[-1]
        if result.status != (pq.ExecStatus.TUPLES_OK if rows else pq.ExecStatus.COMMAND_OK):
            raise psycopg.errors.error_from_result(result, encoding=connection.info.encoding)
        return result

    @staticmethod
    def _record(row: Sequence[Any]) -> RunRecord:  # Any: row values
        return record_from_row(row, "in PostgreSQL")

    # ------------------------------------------------------------------ the runner's calls

    @_on_asyncio
    async def claim(self, run_id: str, owner: str, new: NewRun) -> Claim:
        """Create the run owned by `owner`, or take it over if its lease ran out.

        One statement: an insert that, on a taken run id, takes the run over only if it is
        `pending`, `failed` (unless `new.resume_failed` is false) or `running` with its
        lease run out. Its `RETURNING` tells the status the row had (`found`, which locks the
        row first), none for a new row.
        """
        pool = await self._open(run_id)
        parameters = (run_id, *new.row(run_id), owner, self.lease, new.resume_failed)
        connection = await _checkout(pool, run_id, f"run {run_id!r}: claiming the run")
        keep = False
        sent = time.monotonic()
        try:
            for _ in range(3):  # a run deleted or handed back between the two reads: again
                cursor = await connection.execute(_CLAIM, parameters, prepare=self.prepare)
                row = await cursor.fetchone()
                if row is not None:
                    previous = cast("RunStatus | None", row[14])
                    outcome = "created" if previous is None else "claimed"
                    try:
                        record = self._record(row)
                    except RunDecodeError:  # taken over, but unreadable: undo it, name it
                        undo = (undone_to(previous), 1, run_id, owner)
                        await connection.execute(_RELEASE.query, undo)
                        raise
                    keep = self._keeps(pool)
                    if keep:
                        self._held[owner] = connection
                    self._claimed_at[owner] = sent  # the lease's start, for `watch`
                    return Claim(cast("ClaimOutcome", outcome), record, previous)
                cursor = await connection.execute(_SELECT_RUN, (run_id,), prepare=self.prepare)
                row = await cursor.fetchone()
                if row is None:
                    continue
                record = self._record(row)
                found = _FOUND.get(record.status)
                if found is not None:
                    return Claim(found, record)
                # else `pending` (or `failed`, or a lease run out) since the insert: again
            raise StoreError(run_id, f"run {run_id!r}: claiming the run kept racing other callers")
        except psycopg.Error as exc:
            raise StoreError(run_id, f"run {run_id!r}: claiming the run failed: {exc}") from exc
        finally:
            if not keep:
                with anyio.CancelScope(shield=True):
                    await pool.putconn(connection)

    async def _owned(
        self, run_id: str, owner: str, what: str, statement: _Statement, values: Sequence[object]
    ) -> None:
        if await self._owned_count(run_id, owner, what, statement, values):
            return
        found = await self._fetch(
            run_id, what, "SELECT status, owner FROM cadence_runs WHERE run_id = %s", (run_id,)
        )
        raise lost_run_error(run_id, (found[0][0], found[0][1]) if found else None)

    @_on_asyncio
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
        """Commit the context, position and inner progress (and a lease half spent) at once."""
        values = (
            position,
            step,
            context,
            inner,
            None if plan is None else plan_json(plan),
            fingerprint,
            self.lease / 2,
            self.lease,
            run_id,
            owner,
        )
        await self._owned(run_id, owner, "committing a checkpoint", _CHECKPOINT, values)

    def done(self, owner: str) -> None:
        """Forget an owner token: its attempt has ended (its connection goes back to the pool)."""
        if self._bridge is not None and self._bridge.elsewhere():
            self._bridge.call_soon(self.done, owner)
            return
        self.unwatch(owner)
        self._claimed_at.pop(owner, None)
        self._drop(owner)

    def watch(self, run_id: str, owner: str, lost: Callable[[], None]) -> None:
        """Renew `owner`'s lease on `run_id` every third of the lease; call `lost()` if gone."""
        if self._bridge is not None and self._bridge.elsewhere():  # `lost` runs on trio
            self._bridge.call_soon(self.watch, run_id, owner, self._bridge.back_here(lost))
            return
        # The lease began with the claim, not now: observers and a resume's decoding ran since.
        renewed = self._claimed_at.pop(owner, None)
        start = time.monotonic() if renewed is None else renewed
        self._watched[owner] = _Watch(run_id, lost, start)
        if self._beating is None or self._beating.done():
            self._beating = asyncio.get_running_loop().create_task(
                self._beat(), name="cadence-postgres-heartbeat"
            )

    def unwatch(self, owner: str) -> None:
        """Stop renewing `owner`'s lease; the heartbeat task ends with the last one."""
        if self._bridge is not None and self._bridge.elsewhere():
            self._bridge.call_soon(self.unwatch, owner)
            return
        if self._watched.pop(owner, None) is not None and not self._watched:
            beating, self._beating = self._beating, None
            if beating is not None:
                beating.cancel()

    async def _beat(self) -> None:
        """Renew every watched lease in one statement, every third of the lease.

        A lease not renewed for `_LAPSE` of its length (the database unreachable, a renewal
        hanging) is given up here, before the database lets another worker take the run: its
        steps are stopped, so a worker cut off from the database does not go on running a run
        that another worker may now be running.
        """
        lease = self.lease
        while self._watched:
            lapse = min(w.lapses_at(lease) for w in self._watched.values())
            await asyncio.sleep(max(0.0, min(lease / 3, lapse - time.monotonic())))
            self._give_up_lapsed()
            watched = dict(self._watched)
            if not watched:
                return
            sent = time.monotonic()
            lapse = min(w.lapses_at(lease) for w in watched.values())
            try:
                async with asyncio.timeout(max(0.0, lapse - sent)):
                    rows = await self._fetch(
                        "",
                        "renewing the leases",
                        "UPDATE cadence_runs AS r "
                        "SET lease_until = now() + make_interval(secs => %s) "
                        "FROM unnest(%s::text[], %s::text[]) AS h(run_id, owner) "
                        "WHERE r.run_id = h.run_id AND r.owner = h.owner "
                        "AND r.status = 'running' RETURNING r.owner",
                        (lease, [w.run_id for w in watched.values()], list(watched)),
                    )
            except (StoreError, TimeoutError) as exc:  # the next beat tries again, in time
                why = str(exc) or "timed out"
                logger.warning("renewing %d leases failed: %s", len(watched), why)
                continue
            alive = {row[0] for row in rows}
            for owner, watch in watched.items():
                if self._watched.get(owner) is not watch:
                    continue  # unwatched (or watched anew) meanwhile
                if owner in alive:
                    watch.renewed = sent  # the database's lease began after this
                else:
                    del self._watched[owner]
                    # Lost, or cancelled: the run's caller logs which as it stops.
                    logger.debug("run %r: its lease is no longer held", watch.run_id)
                    watch.lost()

    def _give_up_lapsed(self) -> None:
        """Stop the runs whose lease may have run out unrenewed (see `_beat`)."""
        now = time.monotonic()
        for owner, watch in list(self._watched.items()):
            if now >= watch.lapses_at(self.lease):
                del self._watched[owner]
                logger.warning(
                    "run %r: its lease could not be renewed for %.1f s; its steps stop",
                    watch.run_id,
                    now - watch.renewed,
                )
                watch.lost()

    @_on_asyncio
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
        try:
            await self._owned(
                run_id,
                owner,
                "finishing the run",
                _FINISH,
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
        finally:
            await self._hand_back(owner)

    @_on_asyncio
    async def release(
        self, run_id: str, owner: str, *, undo: Literal["pending", "failed"] | None = None
    ) -> None:
        """Hand the run back (`pending`) to be resumed at once; `undo`: see `Store.release`."""
        try:
            values = (undo or "pending", int(undo is not None), run_id, owner)
            await self._owned_count(run_id, owner, "releasing the run", _RELEASE, values)
        finally:
            await self._hand_back(owner)

    # ------------------------------------------------------------------ the queue

    @_on_asyncio
    async def enqueue_row(self, run_id: str, new: NewRun) -> bool:
        """Queue a run for the workers; return False if the run id is taken."""
        rows = await self._fetch(
            run_id,
            "queueing the run",
            f"INSERT INTO cadence_runs ({_COLUMNS}) VALUES "  # noqa: S608 # constant columns
            "(%s, %s, 'pending', 0, %s, %s, %s, %s, 0, NULL, NULL, now(), now(), NULL) "
            "ON CONFLICT (run_id) DO NOTHING RETURNING run_id",
            new.row(run_id),
        )
        return bool(rows)

    async def claim_next(
        self,
        cadences: Sequence[str],
        owner: str,
        *,
        skip: Sequence[str] = (),
        expired: bool = True,
    ) -> RunRecord | None:
        """Claim a run of `cadences` whose lease ran out, else the oldest pending one.

        Runs named in `skip` are left to other workers; `expired=False` looks at pending runs
        only. The connection the claim ran on stays with the run (see the class docs).
        """
        record, _ = await self._claim_next(cadences, owner, skip=skip, expired=expired)
        return record

    @_on_asyncio
    async def _claim_next(
        self, cadences: Sequence[str], owner: str, *, skip: Sequence[str], expired: bool
    ) -> tuple[RunRecord | None, bool]:
        """`claim_next`, and whether the run claimed was taken over from an expired lease."""
        pool = await self._open("")
        connection = await _checkout(pool, "", "claiming a queued run")
        keep = False
        names, refused = list(cadences), list(skip)
        late = names if expired else []  # no cadence to look up: that half reads nothing
        # Each half of `_oldest_per_cadence`: its cadences, then the runs to skip twice.
        values = (names, refused, refused, late, refused, refused, owner, self.lease)
        sent = time.monotonic()
        try:
            if self._libpq:
                result = await self._fast(connection, _CLAIM_NEXT, values)
                row = _claimed(result) if result.ntuples else None
            else:
                cursor = await connection.execute(_CLAIM_NEXT.query, values, prepare=self.prepare)
                row = await cursor.fetchone()
            record = None if row is None else await self._readable(connection, row)
            keep = record is not None and self._keeps(pool)
            if keep:
                self._held[owner] = connection
            if record is not None:
                self._claimed_at[owner] = sent
        except psycopg.Error as exc:
            raise StoreError("", f"claiming a queued run failed in PostgreSQL: {exc}") from exc
        finally:
            if not keep:
                self._let_go(connection)
                with anyio.CancelScope(shield=True):
                    await pool.putconn(connection)
        return record, row is not None and row[-1] is True

    @_on_asyncio
    async def _reach(self) -> None:
        """Open the pool (probing the server first): a `StoreError` if it cannot be reached."""
        await self._open("")

    async def _readable(
        self, connection: psycopg.AsyncConnection[Any], row: Sequence[Any]
    ) -> RunRecord | None:  # Any: psycopg's connection class, row values
        """Return a claimed row's record; an unreadable one is marked failed, naming why.

        A worker never crashes on a corrupted row, nor claims it again and again: the run
        is `failed` with the decoding error (shown by `cadence runs show`) for a person.
        """
        try:
            return self._record(row)
        except RunDecodeError as exc:
            logger.error("%s; marking it failed", exc)  # noqa: TRY400 # the error names the run; no traceback needed
            self._let_go(connection)  # psycopg's own wait from here on
            await connection.execute(
                "UPDATE cadence_runs SET status = 'failed', owner = NULL, lease_until = NULL, "
                "error = %s, updated_at = now() WHERE run_id = %s AND owner = %s",
                (ErrorInfo.of(exc).to_json(), str(row[0]), str(row[9])),
            )
            return None

    # ------------------------------------------------------------------ inspecting runs

    @_on_asyncio
    async def get(self, run_id: str) -> RunRecord | None:
        """Return the run, or `None` if the store does not hold it."""
        rows = await self._fetch(
            run_id,
            "reading the run",
            _SELECT_RUN,
            (run_id,),
        )
        return self._record(rows[0]) if rows else None

    @_on_asyncio
    async def list_runs(
        self, *, status: RunStatus | None = None, cadence: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        """Return runs, newest first, optionally of one status or cadence."""
        check_listing(status, limit)
        rows = await self._fetch(
            "",
            "listing runs",
            f"SELECT {_READ} FROM cadence_runs WHERE (%s::text IS NULL OR status = %s) "  # noqa: S608 # constant columns
            "AND (%s::text IS NULL OR cadence = %s) ORDER BY created_at DESC, run_id LIMIT %s",
            (status, status, cadence, cadence, limit),
        )
        return [listed_from_row(row, "in PostgreSQL") for row in rows]

    @_on_asyncio
    async def cancel(self, run_id: str) -> bool:
        """Cancel a run that has not finished; return whether one was cancelled."""
        rows = await self._fetch(
            run_id,
            "cancelling the run",
            # The lease is kept until its owner, stopping at its heartbeat or next write, lets
            # go of the run (or the lease lapses): until then the run cannot be deleted.
            "UPDATE cadence_runs SET status = 'cancelled', updated_at = now() WHERE run_id = %s "
            "AND status IN ('pending', 'running', 'failed') RETURNING run_id",
            (run_id,),
        )
        return bool(rows)

    @_on_asyncio
    async def delete(self, run_id: str) -> bool:
        """Delete a run that is not running; return whether one was deleted.

        A cancelled run whose owner is still stopping it (its lease held) is kept until that
        owner lets it go: deleted, a later call could start it anew alongside.
        """
        rows = await self._fetch(
            run_id,
            "deleting the run",
            f"DELETE FROM cadence_runs WHERE run_id = %s AND status != 'running' {_LET_GO} "  # noqa: S608 # constant
            "RETURNING run_id",
            (run_id,),
        )
        return bool(rows)

    @_on_asyncio
    async def prune(self, older_than: datetime.timedelta) -> int:
        """Delete finished runs (completed, failed, cancelled) last written before the age.

        A cancelled run whose owner is still stopping it is kept, as by `delete`.
        """
        rows = await self._fetch(
            "",
            "pruning runs",
            f"DELETE FROM cadence_runs WHERE status IN ('completed', 'failed', 'cancelled') "  # noqa: S608 # constant
            f"AND updated_at < now() - %s {_LET_GO} RETURNING run_id",
            (older_than,),
        )
        return len(rows)

    async def aclose(self) -> None:
        """Close the connection pool (a later call opens a new one)."""
        try:
            await self._close()
        finally:
            bridge = self._bridge
            if bridge is not None:
                with anyio.CancelScope(shield=True):
                    await bridge.aclose()  # and with it, anything still running on it
                self._bridge = None
                self._forget_the_loop()

    def _forget_the_loop(self) -> None:
        """Drop what belonged to a loop that stopped; the next call starts afresh.

        The store's own loop thread's, or an asyncio loop's that ended. A call racing `aclose`
        may have opened a pool there, which no loop runs any more.
        """
        self._pool, self._opening, self._beating, self._loop = None, None, None, None
        self._sockets.clear()
        self._held.clear()
        self._orphans.clear()
        self._watched.clear()

    @_on_asyncio
    async def _close(self) -> None:
        beating, self._beating = self._beating, None
        if beating is not None:
            beating.cancel()
        self._watched.clear()
        self._opening = self._loop = None  # this event loop's: a later call may be in another
        for owner in list(self._held):
            self._drop(owner)
        for connection in list(self._sockets):  # any the store lost track of: not left watched
            self._let_go(connection)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await self._return_orphans(pool)
            await pool.close()


async def enqueue(cadence: Cadence[C], context: C, *, run_id: str, store: PostgresStore) -> bool:
    """Queue a durable run of `cadence` over `context` for the workers.

    Returns:
        Whether it was queued (`False`: the run id is taken).

    Raises:
        CadenceDefinitionError: `run_id` is not a non-empty string, `context` is not of the
            cadence's context class (a worker resumes the run onto its template), or the
            context type cannot be stored (the field is named).
        RunEncodeError: the context holds a value that cannot be stored (the field is named).
        TypeError: `store` is not a `PostgresStore`.

    """
    from cadence.durable._runner import checked_run_id, new_run  # noqa: PLC0415 # a cycle, as in Worker

    _check_queue(store, "enqueue")
    run_id = checked_run_id(cadence, run_id)
    expected = cadence.context_type
    if expected is not None and type(context) is not expected:
        raise CadenceDefinitionError(
            f"enqueue: cadence {cadence.name!r} runs over {expected.__qualname__}, got a "
            f"{type(context).__qualname__}: a worker resumes the run onto the cadence's "
            f"template, so it must be stored as one"
        )
    return await store.enqueue_row(run_id, new_run(cadence, context, run_id))


def _check_queue(store: object, what: str) -> None:
    """Refuse a store that holds no queue (a `SQLiteStore`) by name, not by AttributeError."""
    if not isinstance(store, PostgresStore):
        raise TypeError(
            f"{what}: store must be a PostgresStore (queued runs live in PostgreSQL), got {store!r}"
        )


_MOST_BACKOFF = 5.0  # seconds: the longest wait between claims while the store fails


class Worker:
    """Claim queued runs (and runs whose worker died) and run them, `concurrency` at a time.

    Each run is claimed with `FOR UPDATE SKIP LOCKED` and kept by the store's heartbeat (every
    third of the lease); a run whose lease is lost is stopped. On SIGTERM or SIGINT (or
    `stop()`) the worker finishes or hands back: it claims nothing more, gives the runs in
    hand `grace` seconds to finish, then cancels the rest, and each is handed back
    (`pending`, its lease released) so another worker claims it at once. The step in flight
    then runs again there.

    Args:
        store: The PostgreSQL store.
        cadences: The cadences this worker runs, by name; each needs a template context.
        concurrency: Runs at once. With the default, 8, a connection per run and the
            heartbeat's leave one of the store's default pool (`max_size=10`) to spare.
        idle: Seconds to wait when the queue is empty.
        grace: Seconds the runs in hand get to finish after SIGTERM, SIGINT or `stop()`; a
            second SIGTERM or SIGINT cuts it short (the runs are handed back at once).

    """

    def __init__(
        self,
        store: PostgresStore,
        cadences: Sequence[Cadence[Any]],  # Any: cadences over any context types
        *,
        concurrency: int = 8,
        idle: float = 0.2,
        grace: float = 30.0,
    ) -> None:
        _check_queue(store, "Worker")
        self.store = store
        self.cadences = {c.name: c for c in cadences}
        for c in cadences:
            if c.context is None:
                raise CadenceDefinitionError(
                    f"Worker: cadence {c.name!r} has no template context to resume runs onto"
                )
            check_storable(c)
        self.concurrency = concurrency
        self.idle = idle
        self.grace = grace
        self._stopping = False
        self._claiming: anyio.CancelScope | None = None
        self._grace: anyio.CancelScope | None = None  # the wait for the runs in hand to end
        self._rushed = False  # a second signal came: no grace
        self._refused: set[str] = set()  # runs this worker cannot resume (plan, decoding)
        self._in_hand: set[str] = set()  # not claimed again: one may be handed back any moment

    @property
    def stopping(self) -> bool:
        """Whether `stop()` was called (or SIGTERM or SIGINT received)."""
        return self._stopping

    def stop(self) -> None:
        """Claim no more runs; `run()` returns once the runs in hand finish or are handed back."""
        self._stopping = True
        if self._claiming is not None:
            self._claiming.cancel()

    async def run(self, *, handle_signals: bool = True) -> None:
        """Work until `stop()`, SIGTERM or SIGINT; then finish or hand back the runs in hand."""
        await self.store._reach()  # pyright: ignore[reportPrivateUsage] # the store's worker
        hand = _Hand(self.concurrency)
        async with anyio.create_task_group() as outer:
            if handle_signals:
                outer.start_soon(self._watch_signals)
            async with anyio.create_task_group() as runs:
                with anyio.CancelScope() as self._claiming:
                    if not self._stopping:
                        await self._claim_loop(runs, hand)
                self._claiming = None
                hand.stopping = True
                if hand.count:
                    waited = anyio.current_time()
                    with anyio.move_on_after(0 if self._rushed else self.grace) as self._grace:
                        await hand.empty.wait()
                    self._grace = None
                    if hand.count:
                        logger.warning(
                            "stopping: handing back %d runs still running after %.1f s",
                            hand.count,
                            anyio.current_time() - waited,
                        )
                        runs.cancel_scope.cancel()  # each run hands itself back (pending)
            outer.cancel_scope.cancel()

    async def _claim_loop(self, runs: anyio.abc.TaskGroup, hand: _Hand) -> None:
        """Claim runs while there is room, until stopped (cancelled by `stop()`).

        Runs whose lease ran out are looked for every third of a lease, and on the next claim
        again after one was taken (a dead worker may have held several): an expired lease's
        index also holds the entries of every run finished since the table's last vacuum
        whose lease would have run out, which a claim on every turn would read each time.
        """
        names = list(self.cadences)
        late_at = 0.0  # when to look for expired leases next (at once, on starting)
        failures = 0  # claims failed in a row: the store unreachable, waited for longer each time
        while not self._stopping:
            await hand.limiter.acquire()
            owner = self.store.new_owner()
            record: RunRecord | None = None
            late = False
            expired = anyio.current_time() >= late_at
            try:
                with anyio.CancelScope(shield=True):  # a claim made is a claim kept
                    record, late = await self.store._claim_next(  # pyright: ignore[reportPrivateUsage] # the store's worker
                        names, owner, skip=[*self._refused, *self._in_hand], expired=expired
                    )
            except StoreError as exc:
                failures += 1
                logger.error("claiming a run failed (attempt %d): %s", failures, exc)  # noqa: TRY400 # the error names its cause; a traceback each time would bury it
            else:
                if failures:
                    logger.warning("claiming runs again after %d failed claims", failures)
                    failures = 0
                if expired and not late:
                    late_at = anyio.current_time() + self.store.lease / 3
            if record is None:
                hand.limiter.release()
                await anyio.sleep(min(self.idle * 2**failures, _MOST_BACKOFF))
                continue
            if self.stopping:  # stopped while claiming: hand it straight back
                hand.limiter.release()
                with anyio.CancelScope(shield=True):
                    await self.store.release(record.run_id, owner)
                self.store.done(owner)
                return
            hand.count += 1
            self._in_hand.add(record.run_id)
            runs.start_soon(self._one, record, owner, hand)

    async def _one(self, record: RunRecord, owner: str, hand: _Hand) -> None:
        """Run one claimed run to its end (or its hand-back), logging how it ended."""
        from cadence.durable._runner import run_durable  # noqa: PLC0415 # a cycle: the runner imports stores' protocol

        cadence = self.cadences[record.cadence]
        try:
            await run_durable(
                cadence,
                cadence.fresh_context(),
                record.run_id,
                self.store,
                None,
                owner=owner,
                claimed=record,
            )
        except (StoreError, RunCancelledError):  # taken over, handed back or cancelled
            pass  # not a failure of the run: the runner has logged why it stopped
        except (PlanChangedError, RunDecodeError) as exc:
            # Handed back for a worker that can resume it (another version, a migration):
            # this one claims it no more, instead of claiming it again at once forever.
            logger.error("run %r handed back: %s", record.run_id, exc)  # noqa: TRY400 # the error says it all
            self._refused.add(record.run_id)
        except Exception:
            logger.exception("run %r failed", record.run_id)
        finally:  # a refused run is in `_refused` before it leaves `_in_hand`
            self._in_hand.discard(record.run_id)
            hand.limiter.release()
            hand.count -= 1
            if hand.count == 0 and hand.stopping:
                hand.empty.set()

    async def _watch_signals(self) -> None:
        """Stop at the first SIGTERM or SIGINT; at the next, hand the runs back at once."""
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                if not self._stopping:
                    self.stop()
                    continue
                self._rushed = True  # the grace is cut short: the runs are handed back now
                if self._grace is not None:
                    self._grace.cancel()


async def _checkout(
    pool: AsyncConnectionPool[Any], run_id: str, what: str
) -> psycopg.AsyncConnection[Any]:  # Any: psycopg's connection class
    """Take a live connection from the pool, as a `StoreError` if none comes in time.

    A session the server ended while it sat in the pool (a restart, a crash, a terminated
    backend) is closed here, so the pool opens another, instead of failing the call that got
    it: after a restart, each of the pool's idle sessions failed one run. The call waits in
    turns of `_RECONNECTING` seconds, each of which makes a pool that gave up retrying try
    again. The server gone or the pool spent: psycopg_pool's `PoolTimeout` is a failure of
    the store like any other, which the runner and a worker's claim loop expect as
    `StoreError`.
    """
    deadline = time.monotonic() + pool.timeout
    while True:
        wait = deadline - time.monotonic()
        try:
            connection: psycopg.AsyncConnection[Any] = await pool.getconn(
                min(max(wait, 0.001), _RECONNECTING)
            )
        except PoolTimeout as exc:
            if time.monotonic() < deadline:
                continue  # the pool may have given up retrying: this asks it again
            why = await _why_no_connection(pool)  # the pool's reason is in its log only
            raise StoreError(
                run_id,
                f"{what} failed in PostgreSQL: no connection came within {pool.timeout:g} s "
                f"({why})",
            ) from exc
        except psycopg.Error as exc:
            raise StoreError(run_id, f"{what} failed in PostgreSQL: {exc}") from exc
        if _alive(connection):
            return connection
        with anyio.CancelScope(shield=True):
            await connection.close()
            await pool.putconn(connection)  # closed: the pool opens another in its place


def _alive(connection: psycopg.AsyncConnection[Any]) -> bool:  # Any: as above
    """Whether a pooled session is still open, as libpq sees after reading what came in.

    An idle session's socket holds nothing unless the server wrote to it unasked: as it ended
    the session, its farewell and EOF (then libpq closes it); else a notice or notification,
    kept for psycopg. libpq's reads never block: two syscalls when nothing came.
    """
    pgconn = connection.pgconn
    try:
        pgconn.consume_input()  # what came: a farewell, a notification
        pgconn.consume_input()  # the EOF after a farewell: a read that got data ends there
    except psycopg.OperationalError:
        return False
    return pgconn.status == pq.ConnStatus.OK


_RECONNECTING = 5.0
"""Seconds the pool retries a connection before it gives up until the next call needs one.

Its retries back off (1 s, 2 s, 4 s, ...): with psycopg_pool's 300 s, after an outage of a
minute its next try could be half a minute away, and calls failed all that time with the
server back. Given up, the next call that finds no connection makes the pool try at once.
"""


def _pool_wait(lease: float) -> float:
    """Seconds a call waits for a pooled connection: about a lease, within 5 s and 30 s.

    psycopg_pool's own 30 s would let a short lease lapse long before the call gave up.
    """
    return max(5.0, min(lease, 30.0))


async def _why_no_connection(pool: AsyncConnectionPool[Any]) -> str:  # Any: as above
    """Say why the pool had no connection to give: the server unreachable, or the pool spent.

    Or, the server reachable again and the pool not spent, that it has not reconnected yet.
    (psycopg_pool counts a connection it is retrying as one of its own: spent or retrying.)
    """
    conninfo = pool.conninfo  # the store's: a string (a pool may take a function too)
    if not isinstance(conninfo, str):  # pragma: no cover - the store's pools take strings
        return "see the pool's log"
    error = await _connect_error(conninfo, within=2)
    if error is not None:
        return f"PostgreSQL is unavailable: {str(error).strip()}"
    stats = pool.get_stats()
    if stats["pool_size"] >= stats["pool_max"] and not stats["pool_available"]:
        return (
            "the server answers: every connection of the pool is in use (or reconnecting, "
            "after an outage); raise max_size"
        )
    return "the server answers again: the pool has not reconnected yet (a later call will)"


async def _connect_error(conninfo: str, *, within: int) -> psycopg.Error | None:
    """Connect once, alone (`within` seconds), and close again; return why it failed, if it did."""
    try:
        probe = await psycopg.AsyncConnection.connect(conninfo, connect_timeout=within)
    except psycopg.Error as exc:
        return exc
    await probe.close()
    return None


class _Hand:
    """A worker's runs in hand: the limit, their count, and "none left" once stopping."""

    __slots__ = ("count", "empty", "limiter", "stopping")

    def __init__(self, concurrency: int) -> None:
        self.limiter = anyio.Semaphore(concurrency)
        self.count = 0
        self.stopping = False
        self.empty = anyio.Event()
