"""Plain typing of durable runs: `run(..., store=)`, `enqueue`, `Worker`, inspection, migrations,
and durable web routes (`store=`, `run_id=`).

Type-checked only (mypy --strict without the plugin, pyright --strict), never executed, as the
other cases here: positive cases use `assert_type`; each negative case is one line carrying a
paired ignore (mypy's code, pyright's rule), so an expected error that does not happen fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_type

from cadence import Cadence, Context
from cadence.durable import (
    Migration,
    PostgresStore,
    RunRecord,
    SQLiteStore,
    Worker,
    enqueue,
    idempotency_key,
)
from cadence.integrations.fastapi import CadenceRouter
from cadence.integrations.flask import CadenceBlueprint


@dataclass
class Checkout(Context):
    order_id: str = ""
    charged: bool = False


@dataclass
class Refund(Context):
    refund_id: str = ""


async def charge(ctx: Checkout) -> None:
    ctx.charged = bool(idempotency_key())


checkout = Cadence("checkout", Checkout()).then("charge", charge)
refunds = Cadence("refund", Refund())


async def durable_runs(sqlite: SQLiteStore, postgres: PostgresStore) -> None:
    assert_type(await checkout.run(Checkout("o-1"), run_id="o-1", store=sqlite), Checkout)
    migrated = await checkout.run(
        Checkout("o-2"), run_id="o-2", store=postgres, migration=Migration(renamed={"a": "b"})
    )
    assert_type(migrated, Checkout)
    assert_type(await enqueue(checkout, Checkout("o-3"), run_id="o-3", store=postgres), bool)
    assert_type(await sqlite.get("o-1"), RunRecord | None)
    assert_type(await postgres.list_runs(status="failed"), list[RunRecord])
    await Worker(postgres, [checkout, refunds], concurrency=4).run()


async def durable_mistakes(sqlite: SQLiteStore, postgres: PostgresStore) -> None:
    await enqueue(checkout, Refund("r-1"), run_id="r-1", store=postgres)  # type: ignore[misc] # pyright: ignore[reportArgumentType]
    await enqueue(checkout, Checkout("o-4"), run_id="o-4", store=sqlite)  # type: ignore[arg-type] # pyright: ignore[reportArgumentType]
    await checkout.run(Checkout("o-5"), run_id=5, store=sqlite)  # type: ignore[arg-type] # pyright: ignore[reportArgumentType]
    Worker(sqlite, [checkout])  # type: ignore[arg-type] # pyright: ignore[reportArgumentType]
    await postgres.list_runs(status="done")  # type: ignore[arg-type] # pyright: ignore[reportArgumentType]


def refund_run(ctx: Refund) -> str:
    return ctx.refund_id


def durable_routes(sqlite: SQLiteStore) -> None:
    router = CadenceRouter()
    router.cadence("/o/{order_id}", checkout, store=sqlite, run_id=lambda ctx: ctx.order_id)
    blueprint = CadenceBlueprint("orders", __name__)
    blueprint.cadence_route("/o/<order_id>", checkout, store=sqlite, run_id=lambda c: c.order_id)


def durable_route_mistakes(sqlite: SQLiteStore) -> None:
    router = CadenceRouter()
    router.cadence("/o/{order_id}", checkout, store=sqlite, run_id=refund_run)  # type: ignore[arg-type] # pyright: ignore[reportArgumentType]
    router.cadence("/o/{order_id}", checkout, store=sqlite, run_id=lambda ctx: ctx.charged)  # type: ignore[arg-type,return-value] # pyright: ignore[reportArgumentType]
    router.cadence("/o/{order_id}", checkout, store=sqlite, run_id=lambda ctx: ctx.nothing)  # type: ignore[attr-defined] # pyright: ignore[reportAttributeAccessIssue,reportUnknownMemberType,reportUnknownLambdaType]
    CadenceBlueprint("o", __name__).cadence_route("/o", checkout, store="runs.db")  # type: ignore[arg-type] # pyright: ignore[reportArgumentType]
