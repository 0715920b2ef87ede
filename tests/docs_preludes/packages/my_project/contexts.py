"""The contexts module `cadence new` writes (docs/cli.md)."""

from __future__ import annotations

from dataclasses import dataclass

from cadence import Context


@dataclass
class CheckoutContext(Context):
    """What the checkout cadence works on."""

    order_id: str = ""
    total: float = 0.0
