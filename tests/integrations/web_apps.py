"""Contexts, beats and cadences the web integration tests serve (module level, so hints resolve)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

import anyio

from cadence import (
    AtomicDict,
    AtomicList,
    BeatTimeoutError,
    Cadence,
    CircuitBreaker,
    Context,
    beat,
)

EPOCH = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
NAMESPACE = uuid.UUID("12345678-1234-5678-1234-567812345678")
SECRET = "secret-db-password-4711"  # noqa: S105 # a marker that must never reach a client


class Tier(enum.Enum):
    SILVER = "silver"
    GOLD = "gold"


@dataclass
class Line:
    sku: str
    quantity: int
    price: Decimal


@dataclass
class OrderContext(Context):
    """An order being placed."""

    order_id: str
    quantity: int = 1
    customer: str = ""
    tier: Tier = Tier.SILVER
    lines: list[Line] = field(default_factory=list[Line])
    events: AtomicList[str] = field(default_factory=AtomicList[str])
    tags: AtomicDict[str, int] = field(default_factory=AtomicDict[str, int])
    total: Decimal = Decimal(0)
    placed_at: dt.datetime | None = None
    wait: dt.timedelta = dt.timedelta(0)
    reference: uuid.UUID | None = None
    skus: frozenset[str] = frozenset()
    status: str = "pending"


@beat
async def price(ctx: OrderContext) -> None:
    await anyio.lowlevel.checkpoint()  # let other requests interleave
    unit = Decimal("2.50") if ctx.tier is Tier.GOLD else Decimal("3.00")
    ctx.lines = [Line(f"sku-{ctx.order_id}", ctx.quantity, unit)]
    ctx.skus = frozenset({f"sku-{ctx.order_id}", "shipping"})


@beat
async def audit(ctx: OrderContext) -> None:
    await anyio.lowlevel.checkpoint()
    ctx.events.append(f"audited {ctx.order_id}")


@beat
async def tag(ctx: OrderContext) -> None:
    await anyio.lowlevel.checkpoint()
    ctx.tags[ctx.order_id] = ctx.quantity


@beat
async def total(ctx: OrderContext) -> None:
    ctx.total = sum((line.price * line.quantity for line in ctx.lines), Decimal(0))


@beat
async def place(ctx: OrderContext) -> None:
    await anyio.lowlevel.checkpoint()
    ctx.placed_at = EPOCH + dt.timedelta(seconds=ctx.quantity)
    ctx.wait = dt.timedelta(minutes=ctx.quantity)
    ctx.reference = uuid.uuid5(NAMESPACE, ctx.order_id)
    ctx.status = f"placed for {ctx.customer}" if ctx.customer else "placed"


orders = (
    Cadence[OrderContext]("orders")
    .then("price", price)
    .sync("record", [audit, tag])
    .then("total", total)
    .then("place", place)
)


def expected_body(order_id: str, quantity: int, customer: str = "", tier: str = "silver") -> dict:
    """Return the JSON an `orders` run answers for this input."""
    unit = "2.50" if tier == "gold" else "3.00"
    return {
        "order_id": order_id,
        "quantity": quantity,
        "customer": customer,
        "tier": tier,
        "lines": [{"sku": f"sku-{order_id}", "quantity": quantity, "price": unit}],
        "events": [f"audited {order_id}"],
        "tags": {order_id: quantity},
        "total": str(Decimal(unit) * quantity),
        "placed_at": (EPOCH + dt.timedelta(seconds=quantity)).isoformat(),
        "wait": f"PT{quantity}M" if quantity < 60 else None,
        "reference": str(uuid.uuid5(NAMESPACE, order_id)),
        "skus": sorted({f"sku-{order_id}", "shipping"}),
        "status": f"placed for {customer}" if customer else "placed",
    }


# --------------------------------------------------------------------------- failing cadences


@dataclass
class JobContext(Context):
    job: str = "job"
    status: str = "new"


class PaymentDeclinedError(Exception):
    """A domain error a user maps to 402."""


@beat
async def explode(ctx: JobContext) -> None:
    raise RuntimeError(f"connection refused, password={SECRET}")


@beat
async def decline(ctx: JobContext) -> None:
    raise PaymentDeclinedError(f"card declined {SECRET}")


@beat
async def too_slow(ctx: JobContext) -> None:
    raise BeatTimeoutError("too_slow", 2.0)  # what @timeout(2.0) raises past its deadline


@beat
async def left(ctx: JobContext) -> None:
    ctx.status = "left"


@beat
async def right(ctx: JobContext) -> None:
    ctx.status = "right"


@beat
async def fail_a(ctx: JobContext) -> None:
    raise RuntimeError(f"a {SECRET}")


@beat
async def fail_b(ctx: JobContext) -> None:
    raise RuntimeError(f"b {SECRET}")


@beat
async def ok(ctx: JobContext) -> None:
    ctx.status = "done"


failing = Cadence[JobContext]("failing").then("prepare", ok).then("explode", explode)
declining = Cadence[JobContext]("declining").then("decline", decline)
slow = Cadence[JobContext]("slow").then("too_slow", too_slow)
conflicting = Cadence[JobContext]("conflicting").sync("both", [left, right])
group_failing = Cadence[JobContext]("group").sync("pair", [fail_a, fail_b])
payment = Cadence[JobContext]("payment", JobContext()).then("charge", explode)
nested = (
    Cadence[JobContext]("nested")
    .then("prepare", ok)
    .child("payment", payment, lambda parent, child: None)
)


def guarded(breaker: CircuitBreaker) -> Cadence[JobContext]:
    """Return a cadence whose one beat always fails, behind `breaker`."""

    @beat
    @breaker
    async def call_upstream(ctx: JobContext) -> None:
        raise ConnectionError(f"upstream down {SECRET}")

    return Cadence[JobContext]("guarded").then("call_upstream", call_upstream)


def guarded_pair(first: CircuitBreaker, second: CircuitBreaker) -> Cadence[JobContext]:
    """Return a cadence of two parallel beats, each behind its own (open) breaker."""

    @beat
    @first
    async def one(ctx: JobContext) -> None:
        """Never runs: the breaker is open."""

    @beat
    @second
    async def two(ctx: JobContext) -> None:
        """Never runs: the breaker is open."""

    return Cadence[JobContext]("guarded_pair").sync("both", [one, two])
