"""The beats module `cadence new beat` writes into (docs/cli.md)."""

from __future__ import annotations

from cadence import beat, retry, timeout
from my_project.contexts import CheckoutContext


@retry(max_attempts=3)
@timeout(seconds=30.0)
@beat
async def process_payment(ctx: CheckoutContext) -> None:
    """Process payment."""
