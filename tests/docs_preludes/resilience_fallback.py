# Stand-ins for the names docs/resilience/fallback.md's fragments use without defining them.
# ruff: noqa: F401  # names for the page's fragments to use
from dataclasses import dataclass

from cadence import Context, beat


@dataclass
class Order(Context):
    id: str = ""
    status: str = ""


class StatusService:
    async def get(self, order_id: str) -> str:
        return "shipped"


status_service = StatusService()
