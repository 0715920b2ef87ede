"""The errors of durable runs, under `CadenceError`.

```
CadenceError
└── DurableError                a durable run could not be started, resumed or recorded
    ├── PlanChangedError        the stored run was made by another plan (name the difference)
    ├── RunCancelledError       the run was cancelled through the store
    ├── RunDecodeError          a stored row could not be decoded (the run is named)
    ├── RunEncodeError          a context value cannot be stored (the field is named)
    ├── RunFailedError          the run failed in the caller this one waited for
    ├── RunIdTakenError         the run id names a run of another cadence
    └── StoreError              the store failed (unreachable, disk full, ownership lost)
        └── LeaseLostError      this caller no longer owns the run (another may run it)
```

`RunCancelledError`, `RunEncodeError` and `StoreError` stop the run as themselves (they are
`RunStoppedError`s), even when raised by a commit inside a `sync` or `child` step, as does a
`sync` branch's or a `child` step's stored progress that does not decode
(`ProgressDecodeError`): never wrapped as a beat's failure, never handed to `on_error`. A
`RunDecodeError` a beat raises itself (reading another run, say) is that beat's failure.
"""

from __future__ import annotations

import re

from cadence._errors import CadenceError, RunStoppedError

__all__ = [
    "DurableError",
    "LeaseLostError",
    "PlanChangedError",
    "RunCancelledError",
    "RunDecodeError",
    "RunEncodeError",
    "RunFailedError",
    "RunIdTakenError",
    "StoreError",
]


class DurableError(CadenceError):
    """A durable run could not be started, resumed or recorded.

    Attributes:
        run_id: The run concerned.

    """

    def __init__(self, run_id: str, message: str) -> None:
        self.run_id = run_id
        super().__init__(message)

    def __reduce__(self) -> tuple[type[DurableError], tuple[str | None, ...]]:
        return type(self), (self.run_id, str(self))


class PlanChangedError(DurableError):
    """A run stored under one plan was resumed under another; no migration was given."""


class RunCancelledError(DurableError, RunStoppedError):
    """The run was cancelled through the store (`store.cancel(run_id)`)."""


class RunDecodeError(DurableError):
    """A stored row (context, plan or result) could not be decoded."""


class RunEncodeError(DurableError, RunStoppedError):
    """A context value cannot be stored (the field, and where inside it, are named).

    A NaN or an infinity, a datetime in a time zone, a value with no JSON form. No retry could
    store it, so the run is failed (resumable at its last commit once the beat stores a value
    that can be), not handed back to be run again as after a store failure.
    """


class RunFailedError(DurableError):
    """The run failed in the caller this one waited for; it stays `failed` and resumable.

    Attributes:
        run_id: The run concerned.
        step: The step it failed at, as stored.

    """

    def __init__(self, run_id: str, message: str, step: str | None = None) -> None:
        self.step = step
        super().__init__(run_id, message)

    def __reduce__(self) -> tuple[type[RunFailedError], tuple[str | None, ...]]:
        return type(self), (self.run_id, str(self), self.step)


class RunIdTakenError(DurableError):
    """The run id names a run of another cadence: give each cadence's runs their own ids."""


class ProgressDecodeError(RunDecodeError, RunStoppedError):
    """A step's stored progress (a `sync` branch's, a `child`'s) did not decode as it resumed."""


def one_line(text: str) -> str:
    """Return `text` on one line, for a log line or a problem's detail (libpq's span several)."""
    return _LINE_BREAK.sub(" ", text.strip())


_LINE_BREAK = re.compile(r"\s*\n\s*")


class StoreError(DurableError, RunStoppedError):
    """The store failed: unreachable, full, corrupted, or the run's ownership was lost."""

    def __init__(self, run_id: str, message: str) -> None:
        super().__init__(run_id, one_line(message))


class LeaseLostError(StoreError):
    """The caller lost the run it ran (its lease ran out, or another owner took it over)."""


def lost_run_error(run_id: str, found: tuple[object, object] | None) -> DurableError:
    """Return the error for an update the caller no longer owns, given the run's status and owner.

    `found` is the run's `(status, owner)` row, or `None` when the run no longer exists.
    """
    if found is not None and found[0] == "cancelled":
        return RunCancelledError(run_id, f"run {run_id!r} was cancelled")
    holder = "it no longer exists" if found is None else f"it is {found[0]}, owned by {found[1]}"
    return LeaseLostError(run_id, f"run {run_id!r}: this caller lost the run ({holder})")
