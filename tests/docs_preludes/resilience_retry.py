# Stand-ins for the names docs/resilience/retry.md's fragments use without defining them.
# ruff: noqa: F401  # names for the page's fragments to use
from dataclasses import dataclass, field

import httpx

from cadence import Context, beat


@dataclass
class ApiContext(Context):
    api_url: str = "https://api.example.com"
    data: object = None
    extra: dict[str, str] = field(default_factory=dict[str, str])


http_client = httpx.AsyncClient()
