# Stand-ins for the names docs/durable.md's fragments use without defining them.
# ruff: noqa: F401  # names for the page's fragments to use
from dataclasses import dataclass, field
from decimal import Decimal

from cadence import Cadence, Context, Shared
from cadence.durable import SQLiteStore, idempotency_key


class Payment:
    """A payment provider's answer."""

    id: str = "ch_1"


class PaymentClient:
    """A payment provider's client, which dedupes requests by idempotency key."""

    async def create(self, *, amount: Decimal, idempotency_key: str) -> Payment:  # noqa: F811 # the provider's own parameter name
        return Payment()


@dataclass
class Checkout(Context):
    order_id: str = ""
    total: Decimal = Decimal(0)
    charge_id: str | None = None
    payments: Shared[PaymentClient] = field(default_factory=PaymentClient)


checkout = Cadence("checkout", context_type=Checkout)
ctx = Checkout("order-123")
store = SQLiteStore("runs.db")
