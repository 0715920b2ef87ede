"""The checkout cadence drawn in docs/diagrams.md; run it to print both diagrams.

`python examples/diagrams.py --write` regenerates docs/img/checkout.dot, .mmd and .svg (the
last with Graphviz's `dot`); tests/test_diagram.py checks that they are up to date.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cadence import Cadence, Context, beat
from cadence.diagram import to_dot, to_mermaid
from cadence.resilience import circuit_breaker, fallback, retry, timeout


@dataclass
class Order(Context):
    order_id: str = ""
    items: list[str] = field(default_factory=list[str])
    stock_ok: bool = False
    price: float = 0.0
    premium: bool = False
    receipt: str = ""


@beat(description="Loads the order lines")
@retry(max_attempts=3, delay=0.2)
@timeout(2)
async def fetch_items(ctx: Order) -> None:
    ctx.items = ["book"]


async def check_stock(ctx: Order) -> None:
    ctx.stock_ok = True


@fallback(default=0.0, field="price")
async def quote_price(ctx: Order) -> None:
    ctx.price = 12.5


def is_premium(ctx: Order) -> bool:
    return ctx.premium


async def apply_discount(ctx: Order) -> None:
    ctx.price *= 0.9


@circuit_breaker(failure_threshold=5, recovery_timeout=30, name="payments")
async def charge(ctx: Order) -> None:
    pass


@dataclass
class Receipt(Context):
    order_id: str = ""
    text: str = ""


async def render(ctx: Receipt) -> None:
    ctx.text = f"receipt {ctx.order_id}"


async def email(ctx: Receipt) -> None:
    pass


def keep_receipt(parent: Order, child: Receipt) -> None:
    parent.receipt = child.text


receipts = Cadence("receipts", Receipt()).then("render", render).then("email", email)

checkout = (
    Cadence("checkout", Order())
    .then("fetch_items", fetch_items)
    .sync("prepare", [check_stock, quote_price])
    .split("premium", is_premium, apply_discount)
    .then("charge", charge)
    .child("receipt", receipts, keep_receipt, context=lambda o: Receipt(order_id=o.order_id))
)

ASSETS = Path(__file__).resolve().parent.parent / "docs" / "img"


def write() -> None:
    """Write the diagrams the docs show."""
    dot = to_dot(checkout)
    (ASSETS / "checkout.dot").write_text(dot, encoding="utf-8")
    (ASSETS / "checkout.mmd").write_text(to_mermaid(checkout), encoding="utf-8")
    binary = shutil.which("dot")
    if binary is None:
        raise SystemExit("Graphviz dot is needed to render docs/img/checkout.svg")
    svg = subprocess.run(  # noqa: S603 # Graphviz, on text we generated
        [binary, "-Tsvg"], input=dot.encode(), capture_output=True, check=True
    )
    (ASSETS / "checkout.svg").write_bytes(svg.stdout)


if __name__ == "__main__":
    if "--write" in sys.argv:
        write()
    else:
        print(to_mermaid(checkout))
        print(to_dot(checkout, direction="LR", details=False))
