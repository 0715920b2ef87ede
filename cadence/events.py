"""Typed events of cadence runs: subscribe with `Cadence.with_listener(listener)`.

Every event is a frozen dataclass carrying the cadence's name, the run id and when it happened
(`at`, epoch seconds); beat events carry the beat's path, end events the duration and the
outcome. Match on the class:

```python skip
def listener(event: CadenceEvent) -> None:
    match event:
        case BeatFailed(beat=beat, error=error):
            ...
```
"""

# ruff: noqa: PLC0414 # `import X as X` marks explicit re-exports, as in the package's __init__

from __future__ import annotations

from cadence._events import BeatCancelled as BeatCancelled
from cadence._events import BeatCompleted as BeatCompleted
from cadence._events import BeatEvent as BeatEvent
from cadence._events import BeatFailed as BeatFailed
from cadence._events import BeatFellBack as BeatFellBack
from cadence._events import BeatRetried as BeatRetried
from cadence._events import BeatStarted as BeatStarted
from cadence._events import BeatTimedOut as BeatTimedOut
from cadence._events import BreakerStateChanged as BreakerStateChanged
from cadence._events import CadenceEvent as CadenceEvent
from cadence._events import CheckpointFailed as CheckpointFailed
from cadence._events import DurableEvent as DurableEvent
from cadence._events import Event as Event
from cadence._events import EventHooks as EventHooks
from cadence._events import EventListener as EventListener
from cadence._events import LeaseLost as LeaseLost
from cadence._events import MergeConflict as MergeConflict
from cadence._events import Outcome as Outcome
from cadence._events import RunCancelled as RunCancelled
from cadence._events import RunClaimed as RunClaimed
from cadence._events import RunCompleted as RunCompleted
from cadence._events import RunFailed as RunFailed
from cadence._events import RunResumed as RunResumed
from cadence._events import RunStarted as RunStarted

__all__ = [
    "BeatCancelled",
    "BeatCompleted",
    "BeatEvent",
    "BeatFailed",
    "BeatFellBack",
    "BeatRetried",
    "BeatStarted",
    "BeatTimedOut",
    "BreakerStateChanged",
    "CadenceEvent",
    "CheckpointFailed",
    "DurableEvent",
    "Event",
    "EventHooks",
    "EventListener",
    "LeaseLost",
    "MergeConflict",
    "Outcome",
    "RunCancelled",
    "RunClaimed",
    "RunCompleted",
    "RunFailed",
    "RunResumed",
    "RunStarted",
]
