# Stand-ins for the names docs/resilience/timeout.md's fragments use without defining them.
# ruff: noqa: F401  # names for the page's fragments to use
from dataclasses import dataclass

from cadence import Context, beat


@dataclass
class ReportContext(Context):
    result: str = ""


async def long_running_task() -> str:
    return "done"
