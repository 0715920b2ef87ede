"""What the reporters share: the `report` function the specification passes to `with_reporter`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cadence._context import Context

if TYPE_CHECKING:
    from cadence._cadence import Cadence
    from cadence._events import Observer

__all__ = ["ReportFunction", "missing"]


class ReportFunction:
    """A reporter's `report(beat_name, elapsed, context)`, which also knows its reporter.

    `Cadence.with_reporter(reporter.report)` finds `__cadence_attach__` on it and attaches the
    whole reporter as hooks instead of a plain after-beat callback: spans and timers must open
    before each beat, in the beat's own task, which a function called after the beat cannot do.
    Called directly, it records one finished beat, as a plain reporter would.
    """

    __slots__ = ("_direct", "_reporter")

    def __init__(self, reporter: Observer, direct: Callable[[str, float], None]) -> None:
        self._reporter = reporter
        self._direct = direct

    def __call__(self, beat_name: str, elapsed: float, context: Context) -> None:
        """Record a beat that took `elapsed` seconds (for callers outside `with_reporter`)."""
        self._direct(beat_name, elapsed)

    def __cadence_attach__(self, cadence: Cadence[Any]) -> Observer:  # Any: any context type
        """Prepare the reporter for `cadence` and return it, to attach as hooks."""
        self._reporter.watch(cadence)
        return self._reporter

    def __repr__(self) -> str:
        return f"{self._reporter!r}.report"


def missing(extra: str, package: str, error: ImportError) -> ImportError:
    """Return the `ImportError` for a reporter whose client library is not installed."""
    hint = ImportError(
        f"cadence.reporters needs {package} for this reporter; install it with "
        f"pip install 'cadence-flow[{extra}]'"
    )
    hint.__cause__ = error
    return hint
