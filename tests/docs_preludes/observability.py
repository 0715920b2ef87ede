# Stand-ins for the names docs/observability.md's fragments use without defining them.
# ruff: noqa: F401  # names for the page's fragments to use
from dataclasses import dataclass

from cadence import Cadence, Context
from cadence.reporters import OpenTelemetryReporter


@dataclass
class Order(Context):
    order_id: str = ""
