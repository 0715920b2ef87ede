# Stand-ins for the names docs/resilience/timeout.md's fragments use without defining them.
from dataclasses import dataclass

from cadence import Context, beat


@dataclass
class ReportContext(Context):
    result: str = ""


async def long_running_task() -> str:
    return "done"
