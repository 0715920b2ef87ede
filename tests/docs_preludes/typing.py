# Stand-ins for the names docs/typing.md's fragments use without defining them.
# ruff: noqa: F401  # names for the page's fragments to use
from dataclasses import dataclass

from cadence import Cadence, Context, ImmutableContext, beat


@dataclass
class Order(Context):
    total: float = 0.0


@dataclass
class Payment(Context):
    charged: bool = False


@dataclass(frozen=True)
class Settings(ImmutableContext):
    region: str = "eu"


async def charge(ctx: Payment) -> None:
    ctx.charged = True


checkout = Cadence("checkout", Order())
