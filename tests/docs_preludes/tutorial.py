# Stand-ins for docs/tutorial.md's fragments: the definitions of the tutorial's final program.
# ruff: noqa: F401, ASYNC115  # names for the page's fragments to use; the page's own code
from dataclasses import dataclass, field

import anyio

from cadence import BeatError, Cadence, CadenceError, CadenceHooks, Context, TimingHooks, beat

# --- stand-in services -------------------------------------------------------------------


@dataclass
class Item:
    sku: str
    price: float


class PaymentDeclined(Exception):
    """The payment provider said no."""


class FakeDatabase:
    async def get_items(self, order_id: str) -> list[Item]:
        await anyio.sleep(0)  # a real database would await a query here
        return [Item("book", 12.5), Item("pen", 2.25)]

    async def get_tier(self, order_id: str) -> str:
        await anyio.sleep(0)
        return "gold" if order_id == "ORD-123" else "standard"


class FakePayments:
    def __init__(self) -> None:
        self.charges: list[tuple[str, float]] = []

    async def charge(self, order_id: str, amount: float) -> None:
        await anyio.sleep(0)
        if order_id == "ORD-999":
            raise PaymentDeclined(f"card declined for {order_id}")
        self.charges.append((order_id, amount))


db = FakeDatabase()
payment_service = FakePayments()

# --- the order context and its beats -----------------------------------------------------


@dataclass
class OrderContext(Context):
    order_id: str
    items: list[Item] = field(default_factory=list[Item])
    tier: str = "standard"
    weight_kg: float = 0.0
    total: float = 0.0
    status: str = "pending"
    tracking: str | None = None
    errors: list[str] = field(default_factory=list[str])


@beat
async def fetch_items(ctx: OrderContext) -> None:
    ctx.items = await db.get_items(ctx.order_id)


@beat
async def fetch_tier(ctx: OrderContext) -> None:
    ctx.tier = await db.get_tier(ctx.order_id)


def weigh_parcel(ctx: OrderContext) -> None:
    # A plain def: cadence runs it in a worker thread, so a slow call here never
    # blocks the event loop.
    ctx.weight_kg = 0.3 * len(ctx.items)


@beat(blocking=False)
def calculate_total(ctx: OrderContext) -> None:
    # Cheap and sync: blocking=False runs it on the event loop, no thread hop.
    ctx.total = round(sum(item.price for item in ctx.items), 2)


def is_gold(ctx: OrderContext) -> bool:
    return ctx.tier == "gold"


@beat(blocking=False)
def apply_discount(ctx: OrderContext) -> None:
    ctx.total = round(ctx.total * 0.9, 2)


@beat(blocking=False)
def add_shipping_fee(ctx: OrderContext) -> None:
    ctx.total = round(ctx.total + 4.99, 2)


@beat
async def process_payment(ctx: OrderContext) -> None:
    await payment_service.charge(ctx.order_id, ctx.total)
    ctx.status = "paid"


# --- error handling and hooks ------------------------------------------------------------


def record_failure(ctx: OrderContext, error: CadenceError) -> None:
    ctx.status = "failed"
    ctx.errors.append(str(error))


class PrintHooks(CadenceHooks[OrderContext]):
    async def before_beat(self, beat_name: str, context: OrderContext) -> None:
        print(f"  -> {beat_name}")

    async def on_error(self, beat_name: str, context: OrderContext, error: Exception) -> None:
        print(f"  !! {beat_name}: {error!r}")


timing = TimingHooks()

checkout = (
    Cadence("checkout", OrderContext(order_id="ORD-123"))
    .with_hooks([PrintHooks(), timing])
    .sync("gather", [fetch_items, fetch_tier])
    .sync("prepare", [calculate_total, weigh_parcel])
    .split("pricing", condition=is_gold, if_true=apply_discount, if_false=add_shipping_fee)
    .then("process_payment", process_payment)
    .on_error(record_failure)
)
