"""What a checkpoint store is: the protocol the durable runner talks to, and its records."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol, TypeAlias, TypeVar, cast, get_args

from cadence.durable._errors import RunDecodeError
from cadence.durable._plan import plan_json

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "Claim",
    "ClaimOutcome",
    "ErrorInfo",
    "Leased",
    "NewRun",
    "RunRecord",
    "RunStatus",
    "Store",
]

RunStatus: TypeAlias = Literal["pending", "running", "completed", "failed", "cancelled"]
"""Where a run stands: `pending` (stopped, resumable), `running` (owned by a live caller),
`completed`, `failed` (resumable: it goes on at the failed step), `cancelled`."""

ClaimOutcome: TypeAlias = Literal["created", "claimed", "busy", "finished", "cancelled", "failed"]
"""What `Store.claim` found: a new run, a run to resume, one owned by a live caller, a
completed run, a cancelled one, or (only when `NewRun.resume_failed` is false) a failed one."""


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error a run failed with, as stored: its type, message and cause chain.

    Attributes:
        type: The exception's qualified type name.
        message: `str(exception)`.
        cause: The error it was raised from, if any.

    """

    type: str
    message: str
    cause: ErrorInfo | None = None

    @classmethod
    def of(cls, error: BaseException) -> ErrorInfo:
        """Return the stored form of `error` and its chain of causes."""
        chain: list[BaseException] = []
        current: BaseException | None = error
        while current is not None and current not in chain and len(chain) < 16:
            chain.append(current)
            current = current.__cause__ or (
                None if current.__suppress_context__ else current.__context__
            )
        info: ErrorInfo | None = None
        for item in reversed(chain):
            kind = type(item)
            name = (
                kind.__qualname__
                if kind.__module__ == "builtins"
                else (f"{kind.__module__}.{kind.__qualname__}")
            )
            info = ErrorInfo(name, str(item), info)
        return cast("ErrorInfo", info)  # the chain holds `error` at least

    def to_json(self) -> str:
        """Return this error as JSON text."""
        chain: list[dict[str, str]] = []
        current: ErrorInfo | None = self
        while current is not None:
            chain.append({"type": current.type, "message": current.message})
            current = current.cause
        return json.dumps(chain)

    @classmethod
    def from_json(cls, text: str) -> ErrorInfo:
        """Read an error written by `to_json`."""
        info: ErrorInfo | None = None
        for item in reversed(json.loads(text)):
            info = ErrorInfo(str(item["type"]), str(item["message"]), info)
        if info is None:
            raise ValueError("an empty error chain")
        return info

    def __str__(self) -> str:
        text = f"{self.type}: {self.message}"
        return text if self.cause is None else f"{text} (caused by {self.cause})"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One durable run as the store holds it.

    Attributes:
        run_id: The run's id.
        cadence: The cadence's name.
        status: Where the run stands.
        position: How many top-level steps have completed.
        step: The next step to run (`None` once all are done).
        plan: The plan the run was made by, one line per top-level step.
        fingerprint: The plan's SHA-256.
        context: The last committed context, as stored JSON (shared fields left out).
        attempts: How many times the run was started or resumed.
        owner: Who runs it now: set while `running`, and while `cancelled` until the caller
            that ran it has stopped; else `None`.
        error: What it failed with, if it failed.
        created_at: When it was first started (UTC).
        updated_at: When it was last written (UTC).
        inner: The progress inside the step at `position` (a `child` step's, or a `sync`
            step's finished branches), as stored JSON.

    """

    run_id: str
    cadence: str
    status: RunStatus
    position: int
    step: str | None
    plan: tuple[str, ...]
    fingerprint: str
    context: bytes | None
    attempts: int
    owner: str | None
    error: ErrorInfo | None
    created_at: datetime.datetime
    updated_at: datetime.datetime
    inner: bytes | None = None


STATUSES: Final[frozenset[str]] = frozenset(get_args(RunStatus))

COLUMNS: Final = (
    "run_id, cadence, status, position, step, plan, fingerprint, context, attempts, owner, "
    "error, created_at, updated_at"
)
"""A run row's columns, as `record_from_row` reads them (then the inner progress column)."""


_UNREADABLE = (ValueError, TypeError, KeyError, OverflowError, OSError, RecursionError)
"""What reading a corrupted column raises (RecursionError: JSON nested past Python's limit)."""


def record_from_row(row: Sequence[object], where: str) -> RunRecord:
    """Return the record a run row holds (`COLUMNS`, then the inner progress), or refuse it.

    Timestamps may be datetimes or epoch seconds, JSON columns bytes or text. A row that does
    not decode raises `RunDecodeError` naming the run and `where` it is kept.
    """
    run_id = str(row[0])
    try:
        status = str(row[2])
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")  # one message for every bad column
        position = int(cast("int", row[3]))
        plan = tuple(str(line) for line in json.loads(cast("str", row[5])))
        if not 0 <= position <= len(plan):
            steps = len(plan)
            raise ValueError(f"position {position} is outside its plan of {steps} steps")
        return RunRecord(
            run_id=run_id,
            cadence=str(row[1]),
            status=cast("RunStatus", status),
            position=position,
            step=None if row[4] is None else str(row[4]),
            plan=plan,
            fingerprint=str(row[6]),
            context=_as_bytes(row[7]),
            attempts=int(cast("int", row[8])),
            owner=None if row[9] is None else str(row[9]),
            error=None if row[10] is None else ErrorInfo.from_json(str(row[10])),
            created_at=_timestamp(row[11]),
            updated_at=_timestamp(row[12]),
            inner=_as_bytes(row[13]),
        )
    except _UNREADABLE as exc:
        raise RunDecodeError(
            run_id, f"run {run_id!r}: its row {where} is corrupted: {exc}"
        ) from exc


T = TypeVar("T")


def check_listing(status: object, limit: object) -> None:
    """Refuse a listing's filter that would quietly list nothing, or everything.

    Raises:
        ValueError: `status` is no run status, or `limit` is not a count (0 or more).

    """
    if status is not None and status not in STATUSES:
        raise ValueError(
            f"list_runs: status must be one of {', '.join(sorted(STATUSES))} or None, "
            f"got {status!r}"
        )
    if type(limit) is not int or limit < 0:
        raise ValueError(f"list_runs: limit must be a count of runs (0 or more), got {limit!r}")


def listed_from_row(row: Sequence[object], where: str) -> RunRecord:
    """Return a row's record for a listing: one that does not decode is listed all the same.

    Its columns are read as far as they go, and its `error` is the decoding error, so that
    one corrupted row neither hides the others nor stops the listing (`get` still refuses it).
    """
    try:
        return record_from_row(row, where)
    except RunDecodeError as exc:
        error = ErrorInfo("cadence.durable.RunDecodeError", str(exc))

    def read(index: int, convert: Callable[[object], T], default: T) -> T:
        try:
            return convert(row[index])
        except _UNREADABLE:
            return default

    status = str(row[2])
    epoch = datetime.datetime.fromtimestamp(0, tz=datetime.UTC)
    return RunRecord(
        run_id=str(row[0]),
        cadence=str(row[1]),
        status=cast("RunStatus", status) if status in STATUSES else "failed",
        position=read(3, lambda v: int(cast("int", v)), 0),
        step=None if row[4] is None else str(row[4]),
        plan=(),
        fingerprint=str(row[6]),
        context=read(7, _as_bytes, None),
        attempts=read(8, lambda v: int(cast("int", v)), 0),
        owner=None if row[9] is None else str(row[9]),
        error=error,
        created_at=read(11, _timestamp, epoch),
        updated_at=read(12, _timestamp, epoch),
        inner=read(13, _as_bytes, None),
    )


def _as_bytes(value: object) -> bytes | None:
    """Return a stored JSON column as bytes (a row written as text too)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    if not isinstance(value, (bytearray, memoryview)):  # bytes(n) would be n zero bytes
        raise TypeError(f"a JSON column holds a value of type {type(value).__qualname__}")
    return bytes(cast("bytearray | memoryview[int]", value))


def _timestamp(value: object) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value
    return datetime.datetime.fromtimestamp(cast("float", value), tz=datetime.UTC)


@dataclass(frozen=True, slots=True)
class NewRun:
    """What the runner gives `Store.claim` for a run the store may not hold yet.

    Attributes:
        cadence: The cadence's name.
        plan: The described plan.
        fingerprint: The plan's SHA-256.
        context: The starting context, as stored JSON.
        step: The first step's name (`None` for a cadence without steps).
        resume_failed: Whether a `failed` run is taken over (retried from its failed step).
            `False` (a caller that waited for another's attempt) asks the store to answer
            outcome `failed` instead; a store that ignores it takes the run over, and the
            runner then reads the run first (a narrower window, not none).

    """

    cadence: str
    plan: tuple[str, ...]
    fingerprint: str
    context: bytes
    step: str | None
    resume_failed: bool = True

    def row(self, run_id: str) -> tuple[str, str, str | None, str, str, bytes]:
        """Return a new run's first columns: id, cadence, step, plan JSON, fingerprint, context."""
        plan = plan_json(self.plan)
        return (run_id, self.cadence, self.step, plan, self.fingerprint, self.context)

    def record(self, run_id: str, owner: str, at: float) -> RunRecord:
        """Return the record of the run as created: `running`, owned by `owner` since `at`."""
        when = _timestamp(at)
        return RunRecord(
            run_id=run_id,
            cadence=self.cadence,
            status="running",
            position=0,
            step=self.step,
            plan=self.plan,
            fingerprint=self.fingerprint,
            context=self.context,
            attempts=1,
            owner=owner,
            error=None,
            created_at=when,
            updated_at=when,
            inner=None,
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """What `Store.claim` returns: the outcome, the record as it now stands, the status before.

    `previous` is `None` when the run is new (or the store does not tell).
    """

    outcome: ClaimOutcome
    record: RunRecord
    previous: RunStatus | None = None


def undone_to(previous: RunStatus | None) -> Literal["pending", "failed"]:
    """Return the status a claim is undone to: `failed` if the run was, else `pending`."""
    return "failed" if previous == "failed" else "pending"


class Store(Protocol):
    """A checkpoint store: where durable runs commit their context and position.

    Each method is a coroutine that never blocks the event loop on I/O that can wait (a
    SQLite call that cannot wait may run inline; see `SQLiteStore`'s `offload`). Ownership is
    by token: `claim` hands a run to one owner, and `checkpoint`, `finish` and `release` only
    write while that owner still holds it (else `StoreError`, or `RunCancelledError` after
    `cancel`).
    """

    @property
    def poll_interval(self) -> float:
        """Seconds between looks at a run owned by another live caller, while waiting for it."""
        ...

    def new_owner(self) -> str:
        """Return a fresh owner token for one run attempt of this process."""
        ...

    async def claim(self, run_id: str, owner: str, new: NewRun) -> Claim:
        """Create the run owned by `owner`, or take it over if nobody live holds it."""
        ...

    def done(self, owner: str) -> None:
        """Forget an owner token: its attempt has ended, however it ended."""
        ...

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
        """Commit the context, position and inner progress (and a migrated plan) at once.

        `inner` is the progress inside the step at `position` (`None`: none yet).
        """
        ...

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
        """Mark the run completed or failed (with its final context and position, or its error).

        A `None` context or position keeps the last committed one.
        """
        ...

    async def release(
        self, run_id: str, owner: str, *, undo: Literal["pending", "failed"] | None = None
    ) -> None:
        """Hand the run back (status `pending`) so another caller may resume it.

        With `undo`, undo this owner's claim instead: the run is `undo` again and the claim's
        attempt is not counted (a resume refused before it ran a step: another plan, a row it
        cannot decode). A run cancelled meanwhile stays cancelled: the owner lets go of it.
        """
        ...

    async def get(self, run_id: str) -> RunRecord | None:
        """Return the run, or `None` if the store does not hold it."""
        ...

    async def list_runs(
        self, *, status: RunStatus | None = None, cadence: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        """Return runs, newest first, optionally of one status or cadence."""
        ...

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run that has not completed (pending, running, failed); say if one was."""
        ...

    async def delete(self, run_id: str) -> bool:
        """Delete a run that is not running; return whether one was deleted."""
        ...

    async def prune(self, older_than: datetime.timedelta) -> int:
        """Delete finished runs (completed, failed, cancelled) last written before the age."""
        ...

    async def aclose(self) -> None:
        """Close the store's connections."""
        ...


class Leased(Protocol):
    """A store whose ownership is a lease kept alive by a heartbeat (`PostgresStore`).

    The runner finds these methods with `getattr` (a store without them, `SQLiteStore`, needs
    no heartbeat): it watches each attempt's owner while its steps run, and the store renews
    every watched lease in the background and calls `lost` when one was taken over.
    """

    def watch(self, run_id: str, owner: str, lost: Callable[[], None]) -> None:
        """Keep renewing `owner`'s lease on `run_id`; call `lost()` if it is found gone."""
        ...

    def unwatch(self, owner: str) -> None:
        """Stop renewing `owner`'s lease (its steps are done or stopped)."""
        ...
