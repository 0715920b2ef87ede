"""`cadence runs`: list, show and cancel durable runs in a store."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio
import click
from rich_click import RichCommand, RichGroup

from cadence.cli._common import UserError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from cadence.durable import RunRecord, RunStatus, Store

__all__ = ["runs"]

_STATUSES = ["pending", "running", "completed", "failed", "cancelled"]


def _store_options(fn: Callable[..., Any]) -> Callable[..., Any]:  # Any: click's callbacks
    fn = click.option("--dsn", help="A PostgreSQL store's connection string.")(fn)
    return click.option(
        "--db",
        "db",
        type=click.Path(exists=True, dir_okay=False),  # a mistyped name must not make a store
        help="A SQLite store's file.",
    )(fn)


def _with_store(db: str | None, dsn: str | None, work: Callable[[Store], Awaitable[Any]]) -> Any:
    """Open the store named by `--db` or `--dsn`, run `work` on it, close it."""
    if (db is None) == (dsn is None):
        raise UserError("name one store: --db FILE (SQLite) or --dsn URL (PostgreSQL)")

    async def main() -> Any:  # Any: what `work` returns
        # Imported here: --help stays fast, and --db needs no psycopg (nor --dsn, msgspec alone).
        try:
            from cadence.durable import DurableError, SQLiteStore  # noqa: PLC0415

            if db is not None:
                store: Store = SQLiteStore(db)
            else:
                from cadence.durable import PostgresStore  # noqa: PLC0415

                store = PostgresStore(str(dsn))
        except ImportError as exc:  # an extra not installed: the message names it
            raise UserError(str(exc)) from exc
        try:
            if db is not None:
                _refuse_a_file_without_runs(db)
            else:
                await _refuse_a_database_without_runs(str(dsn))
            return await work(store)
        except DurableError as exc:
            raise UserError(str(exc)) from exc
        finally:
            await store.aclose()

    return anyio.run(main)


def _refuse_a_file_without_runs(db: str) -> None:
    """Refuse a SQLite file no store wrote: opening a store on it would create its tables.

    Listing, showing or cancelling runs in another application's file (a mistyped `--db`)
    must leave it as it was, not add cadence's tables and switch it to WAL.
    """
    try:
        uri = f"{Path(db).absolute().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
            tables = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cadence_runs'"
            found = connection.execute(tables).fetchone() is not None
    except sqlite3.Error as exc:
        raise UserError(f"{db}: {exc}") from exc
    if not found:
        raise UserError(f"{db} holds no cadence runs (no cadence_runs table): not a store's file")


async def _refuse_a_database_without_runs(dsn: str) -> None:
    """Refuse a PostgreSQL database no store wrote, as `_refuse_a_file_without_runs`."""
    import psycopg  # noqa: PLC0415 # the postgres extra's, there since PostgresStore imported

    from cadence.durable._errors import one_line  # noqa: PLC0415 # as the store says it

    try:
        async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=10) as connection:
            cursor = await connection.execute("SELECT to_regclass('cadence_runs') IS NOT NULL")
            row = await cursor.fetchone()
    except psycopg.Error as exc:
        raise UserError(f"PostgreSQL is unavailable: {one_line(str(exc))}") from exc
    if row is None or not row[0]:
        raise UserError("the database holds no cadence runs (no cadence_runs table): not a store's")


def _as_json(record: RunRecord) -> dict[str, object]:
    error = record.error
    chain: list[dict[str, str]] = []
    while error is not None:
        chain.append({"type": error.type, "message": error.message})
        error = error.cause
    return {
        "run_id": record.run_id,
        "cadence": record.cadence,
        "status": record.status,
        "position": record.position,
        "step": record.step,
        "steps": len(record.plan),
        "attempts": record.attempts,
        "owner": record.owner,
        "error": chain or None,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


@click.group(cls=RichGroup)
def runs() -> None:
    """Inspect and cancel durable runs in a store.

    \b
    Examples:
      cadence runs list --db runs.db --status failed
      cadence runs show order-123 --db runs.db
      cadence runs cancel order-123 --dsn postgresql://app@db/app
    """


@runs.command("list", cls=RichCommand)
@_store_options
@click.option("--status", type=click.Choice(_STATUSES), help="Only runs of this status.")
@click.option("--cadence", "cadence_name", help="Only runs of this cadence.")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table")
def list_runs(  # noqa: PLR0917 # click passes each option
    db: str | None,
    dsn: str | None,
    status: str | None,
    cadence_name: str | None,
    limit: int,
    output_format: str,
) -> None:
    """List runs, newest first: id, cadence, status, next step, attempts."""

    async def work(store: Store) -> list[RunRecord]:
        return await store.list_runs(
            status=cast("RunStatus | None", status),  # click.Choice checked it
            cadence=cadence_name,
            limit=limit,
        )

    records: list[RunRecord] = _with_store(db, dsn, work)
    if output_format == "json":
        click.echo(json.dumps([_as_json(r) for r in records], indent=2))
        return
    for r in records:
        where = f"{r.position}/{len(r.plan)} {r.step or '-'}"
        click.echo(f"{r.run_id}\t{r.cadence}\t{r.status}\t{where}\t{r.attempts}")


@runs.command("show", cls=RichCommand)
@click.argument("run_id")
@_store_options
def show_run(run_id: str, db: str | None, dsn: str | None) -> None:
    """Show one run as JSON: status, position, next step, attempts, error with its causes."""

    async def work(store: Store) -> RunRecord | None:
        return await store.get(run_id)

    record: RunRecord | None = _with_store(db, dsn, work)
    if record is None:
        raise UserError(f"no run {run_id!r} in the store")
    click.echo(json.dumps(_as_json(record), indent=2))


@runs.command("cancel", cls=RichCommand)
@click.argument("run_id")
@_store_options
def cancel_run(run_id: str, db: str | None, dsn: str | None) -> None:
    """Cancel a run that has not finished (a running one stops at its next commit)."""

    async def work(store: Store) -> bool:
        return await store.cancel(run_id)

    if not _with_store(db, dsn, work):
        raise UserError(f"run {run_id!r} is not in the store or has finished")
    click.echo(f"cancelled {run_id}", err=True)
