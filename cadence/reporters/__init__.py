"""Reporters: Prometheus metrics and OpenTelemetry traces and metrics for cadence runs.

Each is imported on first use, so `import cadence` loads neither client library; importing a
reporter without its library raises `ImportError` naming the extra to install. Use one as the
specification shows, `.with_reporter(reporter.report)`, or as hooks, `.with_hooks(reporter)`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cadence.reporters._opentelemetry import OpenTelemetryReporter as OpenTelemetryReporter
    from cadence.reporters._prometheus import PrometheusReporter as PrometheusReporter

__all__ = ["OpenTelemetryReporter", "PrometheusReporter"]

_MODULES = {
    "OpenTelemetryReporter": "cadence.reporters._opentelemetry",
    "PrometheusReporter": "cadence.reporters._prometheus",
}


def __getattr__(name: str) -> object:
    """Import a reporter's module (and its client library) when the reporter is first used."""
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'cadence.reporters' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULES])
