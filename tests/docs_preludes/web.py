# Stand-ins for the names docs/web.md's fragments use without defining them.
# ruff: noqa: F401  # names for the page's fragments to use
from dataclasses import dataclass

from cadence import Cadence, Context
from cadence.durable import SQLiteStore
from cadence.integrations import Problem
from cadence.integrations.fastapi import CadenceRouter


@dataclass
class OrderContext(Context):
    order_id: str = ""


@dataclass
class PaymentContext(Context):
    order_id: str = ""


class CardDeclinedError(Exception):
    """The card was declined."""


class RateLimitedError(Exception):
    """The provider asks to slow down."""


checkout_cadence = Cadence("checkout", context_type=OrderContext)
payment = Cadence("payment", context_type=PaymentContext)
router = CadenceRouter()
