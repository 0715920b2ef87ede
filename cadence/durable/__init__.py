"""Durable runs: checkpoint a cadence after every step and resume it after a crash.

    store = SQLiteStore("runs.db")
    await checkout.run(ctx, run_id="order-123", store=store)

Contexts are stored as typed JSON (msgspec), never pickle; `Shared[...]` fields are not
stored and come from the context passed on resume. Needs `pip install 'cadence-flow[durable]'`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cadence.durable._errors import DurableError as DurableError
from cadence.durable._errors import LeaseLostError as LeaseLostError
from cadence.durable._errors import PlanChangedError as PlanChangedError
from cadence.durable._errors import RunCancelledError as RunCancelledError
from cadence.durable._errors import RunDecodeError as RunDecodeError
from cadence.durable._errors import RunEncodeError as RunEncodeError
from cadence.durable._errors import RunFailedError as RunFailedError
from cadence.durable._errors import RunIdTakenError as RunIdTakenError
from cadence.durable._errors import StoreError as StoreError
from cadence.durable._plan import Migration as Migration
from cadence.durable._runner import idempotency_key as idempotency_key
from cadence.durable._sqlite import SQLiteStore as SQLiteStore
from cadence.durable._sqlite import Synchronous as Synchronous
from cadence.durable._store import Claim as Claim
from cadence.durable._store import ClaimOutcome as ClaimOutcome
from cadence.durable._store import ErrorInfo as ErrorInfo
from cadence.durable._store import Leased as Leased
from cadence.durable._store import NewRun as NewRun
from cadence.durable._store import RunRecord as RunRecord
from cadence.durable._store import RunStatus as RunStatus
from cadence.durable._store import Store as Store

if TYPE_CHECKING:
    from cadence.durable._postgres import PostgresStore as PostgresStore
    from cadence.durable._postgres import Worker as Worker
    from cadence.durable._postgres import enqueue as enqueue

__all__ = [
    "Claim",
    "ClaimOutcome",
    "DurableError",
    "ErrorInfo",
    "LeaseLostError",
    "Leased",
    "Migration",
    "NewRun",
    "PlanChangedError",
    "PostgresStore",
    "RunCancelledError",
    "RunDecodeError",
    "RunEncodeError",
    "RunFailedError",
    "RunIdTakenError",
    "RunRecord",
    "RunStatus",
    "SQLiteStore",
    "Store",
    "StoreError",
    "Synchronous",
    "Worker",
    "enqueue",
    "idempotency_key",
]

_POSTGRES = frozenset({"PostgresStore", "Worker", "enqueue"})


def __getattr__(name: str) -> object:
    """Load the PostgreSQL store on first use: it needs psycopg (the `postgres` extra)."""
    if name in _POSTGRES:
        from cadence.durable import _postgres  # noqa: PLC0415 # psycopg is optional

        return getattr(_postgres, name)
    raise AttributeError(f"module 'cadence.durable' has no attribute {name!r}")
