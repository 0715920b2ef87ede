"""The Quick Start checkout from the README, runnable: stand-in database and payment service."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from cadence import Cadence, Context, beat


@dataclass
class Item:
    sku: str
    price: float


class FakeDatabase:
    """Stands in for a real database: it answers after a short await."""

    async def get_items(self, order_id: str) -> list[Item]:
        await anyio.sleep(0.01)
        return [Item("book", 12.5), Item("pen", 2.25)]


class FakePaymentService:
    """Stands in for a payment provider; it records what it charged."""

    def __init__(self) -> None:
        self.charges: list[tuple[str, float]] = []

    async def charge(self, order_id: str, amount: float) -> None:
        await anyio.sleep(0.01)
        self.charges.append((order_id, amount))


db = FakeDatabase()
payment_service = FakePaymentService()


@dataclass
class OrderContext(Context):
    order_id: str
    items: list[Item] = field(default_factory=list[Item])
    total: float = 0.0
    status: str = "pending"


@beat
async def fetch_items(ctx: OrderContext) -> None:
    # Fetch order items from database
    ctx.items = await db.get_items(ctx.order_id)


@beat
async def calculate_total(ctx: OrderContext) -> None:
    ctx.total = sum(item.price for item in ctx.items)


@beat
async def process_payment(ctx: OrderContext) -> None:
    await payment_service.charge(ctx.order_id, ctx.total)
    ctx.status = "paid"


# Build and run the cadence
cadence = (
    Cadence("checkout", OrderContext(order_id="ORD-123"))
    .then("fetch_items", fetch_items)
    .then("calculate_total", calculate_total)
    .then("process_payment", process_payment)
)


async def main() -> OrderContext:
    result = await cadence.run()
    print(f"Order {result.order_id}: {result.status}")
    print(result)
    return result


if __name__ == "__main__":
    anyio.run(main)
