# Stand-ins for the names docs/resilience/circuit_breaker.md's fragments use without defining them.
# ruff: noqa: F401  # names for the page's fragments to use
from dataclasses import dataclass

from cadence import Context, beat


@dataclass
class FeedContext(Context):
    data: bytes = b""


class FragileService:
    async def fetch(self) -> bytes:
        return b"data"


fragile_service = FragileService()
