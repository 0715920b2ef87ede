"""The errors of durable runs, under `CadenceError`.

```
CadenceError
└── DurableError                a durable run could not be started, resumed or recorded
    ├── PlanChangedError        the stored run was made by another plan (name the difference)
    ├── RunCancelledError       the run was cancelled through the store
    ├── RunDecodeError          a stored row could not be decoded (the run is named)
    └── StoreError              the store failed (unreachable, disk full, ownership lost)
        └── LeaseLostError      this caller no longer owns the run (another may run it)
```
"""

from __future__ import annotations

from cadence._errors import CadenceError

__all__ = [
    "DurableError",
    "LeaseLostError",
    "PlanChangedError",
    "RunCancelledError",
    "RunDecodeError",
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

    def __reduce__(self) -> tuple[type[DurableError], tuple[str, str]]:
        return type(self), (self.run_id, str(self))


class PlanChangedError(DurableError):
    """A run stored under one plan was resumed under another; no migration was given."""


class RunCancelledError(DurableError):
    """The run was cancelled through the store (`store.cancel(run_id)`)."""


class RunDecodeError(DurableError):
    """A stored row (context, plan or result) could not be decoded."""


class StoreError(DurableError):
    """The store failed: unreachable, full, corrupted, or the run's ownership was lost."""


class LeaseLostError(StoreError):
    """The caller lost the run it ran (its lease ran out, or another owner took it over)."""
