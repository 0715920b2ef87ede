"""A checkout service built with cadence, type-checked with the cadence_mypy plugin.

Type-checked only (`mypy --config-file typecheck_tests/mypy-plugin.ini typecheck_tests/plugin`),
never collected as tests. The service at module level is correct and the plugin must stay quiet
about it; `assert_type` pins that the plugin changes no inferred type. Each mistake the plugin
reports sits in a function that is never called, silenced by a `# type: ignore[<code>]` on the
line the message is reported on; warn_unused_ignores makes a check that stops firing fail the run.
Where mypy itself reports an error and the plugin adds a `cadence-context` note, the ignore lists
both codes: the note has a code of its own, so `# type: ignore[arg-type]` alone leaves it shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import assert_type

from cadence import (
    Cadence,
    Context,
    beat,
    circuit_breaker,
    fallback,
    last_write_wins,
    retry,
    timeout,
)

# ----------------------------------------------------------------- contexts


@dataclass
class Order(Context):
    order_id: str = ""
    items: list[str] = field(default_factory=list[str])
    total: float = 0.0
    status: str = "pending"
    premium: bool = False
    receipt: str | None = None
    attempts: int = field(default=0, init=False)


@dataclass
class PremiumOrder(Order):
    tier: int = 1


@dataclass
class Payment(Context):
    amount: float = 0.0
    charged: bool = False


# ----------------------------------------------------------------- beats


@beat
async def fetch_items(ctx: Order) -> None:
    ctx.items = ["book", "pen"]


@beat(blocking=False)
def calculate_total(ctx: Order) -> None:
    ctx.total = 10.0 * len(ctx.items)


@retry(max_attempts=3, delay=0.5, backoff=2.0)
@timeout(seconds=5.0)
@beat
async def reserve_stock(ctx: Order) -> None:
    ctx.status = "reserved"


@fallback(field="receipt", default=None)
@beat(name="receipt")
async def render_receipt(ctx: Order) -> None:
    ctx.receipt = f"receipt for {ctx.order_id}"


@fallback(default={"status": "unknown", "premium": False})
@circuit_breaker(failure_threshold=5, recovery_timeout=30.0)
async def load_status(ctx: Order) -> None:
    ctx.status = "known"


@fallback(field="total", handler=lambda _ctx, _error: 0.0)
def estimate_total(ctx: Order) -> None:
    ctx.total = 1.0


@fallback(field="anything", default="no context, so nothing to check")
def format_price(amount: float) -> str:
    return f"{amount:.2f}"


def is_premium(ctx: Order) -> bool:
    return ctx.premium


async def express_shipping(ctx: Order) -> None:
    ctx.status = "express"


def standard_shipping(ctx: Order) -> None:
    ctx.status = "standard"


def log_order(ctx: Context) -> None:
    """A beat over the base `Context` fits every cadence."""


def upgrade(ctx: PremiumOrder) -> None:
    ctx.tier += 1


@beat
async def charge(ctx: Payment) -> None:
    ctx.charged = True


def is_paid(ctx: Payment) -> bool:
    return ctx.charged


def merge_payment(parent: Order, child: Payment) -> None:
    if child.charged:
        parent.status = "paid"


def merge_swapped(child: Payment, parent: Order) -> None:
    parent.status = "paid" if child.charged else parent.status


def merge_with_audit(parent: Order, child: Payment, audit: list[str]) -> None:
    audit.append(parent.order_id)


def payment_for(parent: Order) -> Payment:
    return Payment(amount=parent.total)


# ----------------------------------------------------------------- the service

payment = Cadence("payment", Payment()).then("charge", charge)

checkout = (
    Cadence("checkout", Order(order_id="ORD-1"))
    .then("fetch_items", fetch_items)
    .sync("prepare", [calculate_total, reserve_stock, load_status], merge=last_write_wins)
    .then("estimate", estimate_total)
    .split("ship", condition=is_premium, if_true=express_shipping, if_false=[standard_shipping])
    .child("pay", payment, merge_payment, context=payment_for)
    .then("receipt", render_receipt)
    .then("log", log_order)
)

premium_checkout = (
    Cadence("premium", PremiumOrder()).then("upgrade", upgrade).then("log", log_order)
)

assert_type(payment, Cadence[Payment])
assert_type(checkout, Cadence[Order])
assert_type(premium_checkout, Cadence[PremiumOrder])
assert_type(format_price(1.0), str)


async def place_order(order_id: str) -> Order:
    order = await checkout.run(Order(order_id=order_id))
    assert_type(order, Order)
    return order


# ----------------------------------------------------------------- mistakes the plugin reports


def wrong_contexts() -> Cadence[Order]:
    """Beats, conditions and merges over the wrong context; each note is on its argument's line."""
    return (
        Cadence("checkout", Order())
        .then("charge", charge)  # type: ignore[arg-type]
        .sync(
            "prepare",
            [
                calculate_total,
                charge,  # type: ignore[list-item]
            ],
        )
        .split(
            "route",
            condition=is_paid,  # type: ignore[arg-type]
            if_true=charge,  # type: ignore[arg-type]
            if_false=[standard_shipping, charge],  # type: ignore[list-item]
        )
        .child("pay", payment, merge_swapped)  # type: ignore[arg-type]
        .child("audit", payment, merge_with_audit)  # type: ignore[arg-type]
        .then("upgrade", upgrade)  # type: ignore[arg-type]
    )


def duplicate_names() -> Cadence[Order]:
    return (
        Cadence("checkout", Order())
        .then("fetch_items", fetch_items)
        .sync("total", [calculate_total])
        .then("fetch_items", fetch_items)  # type: ignore[cadence-name]
        .split("total", condition=is_premium, if_true=express_shipping)  # type: ignore[cadence-name]
    )


def wrong_fallbacks() -> None:
    @fallback(field="totl", default=0.0)  # type: ignore[cadence-field]
    async def fetch_total(ctx: Order) -> None: ...

    @fallback(field="total", default="free")  # type: ignore[cadence-field]
    @beat
    async def price(ctx: Order) -> None: ...

    @fallback(field="attempts", default=0)  # type: ignore[cadence-field]
    def count(ctx: Order) -> None: ...

    @fallback(
        default={
            "status": "unknown",
            "premium": "no",  # type: ignore[cadence-field]
            "recipt": None,  # type: ignore[cadence-field]
        }
    )
    def status(ctx: Order) -> None: ...


def out_of_range_settings() -> None:
    @retry(max_attempts=0, delay=0.5)  # type: ignore[cadence-config]
    async def never_tried(ctx: Order) -> None: ...

    @retry(3, -1.0, 0.5)  # type: ignore[cadence-config]
    async def waits_backwards(ctx: Order) -> None: ...

    @timeout(seconds=0)  # type: ignore[cadence-config]
    async def always_late(ctx: Order) -> None: ...

    @circuit_breaker(failure_threshold=0, recovery_timeout=-5)  # type: ignore[cadence-config]
    async def never_closes(ctx: Order) -> None: ...
