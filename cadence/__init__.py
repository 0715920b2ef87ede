"""cadence: typed, explicit control flow for Python service logic.

A `Cadence[C]` is an immutable plan of beats over one dataclass context `C`: `then` runs one
beat, `sync` runs several in parallel on isolated copies and merges them back, `split` branches,
`child` nests another cadence. Everything public is importable from here.
"""

from __future__ import annotations

from cadence._beat import Beat as Beat
from cadence._beat import BeatDecorator as BeatDecorator
from cadence._beat import BeatInfo as BeatInfo
from cadence._beat import BeatSpec as BeatSpec
from cadence._beat import Condition as Condition
from cadence._beat import beat as beat
from cadence._cadence import Cadence as Cadence
from cadence._cadence import ErrorHandler as ErrorHandler
from cadence._context import AtomicDict as AtomicDict
from cadence._context import AtomicList as AtomicList
from cadence._context import Context as Context
from cadence._context import ImmutableContext as ImmutableContext
from cadence._context import Shared as Shared
from cadence._errors import BeatError as BeatError
from cadence._errors import BeatErrorGroup as BeatErrorGroup
from cadence._errors import BeatTimeoutError as BeatTimeoutError
from cadence._errors import CadenceDefinitionError as CadenceDefinitionError
from cadence._errors import CadenceError as CadenceError
from cadence._errors import CircuitOpenError as CircuitOpenError
from cadence._errors import ContextCopyError as ContextCopyError
from cadence._errors import MergeConflictError as MergeConflictError
from cadence._events import CadenceEvent as CadenceEvent
from cadence._events import EventHooks as EventHooks
from cadence._events import EventListener as EventListener
from cadence._hooks import CadenceHooks as CadenceHooks
from cadence._hooks import LoggingHooks as LoggingHooks
from cadence._hooks import Reporter as Reporter
from cadence._hooks import RunTimings as RunTimings
from cadence._hooks import TimingHooks as TimingHooks
from cadence._merge import FieldConflict as FieldConflict
from cadence._merge import MergeStrategy as MergeStrategy
from cadence._merge import fail_on_conflict as fail_on_conflict
from cadence._merge import last_write_wins as last_write_wins
from cadence._merge import smart_merge as smart_merge
from cadence._steps import Child as Child
from cadence._steps import Split as Split
from cadence._steps import Step as Step
from cadence._steps import Sync as Sync
from cadence._steps import Then as Then
from cadence._validate import Finding as Finding
from cadence._validate import ValidationReport as ValidationReport
from cadence._validate import validate as validate
from cadence.diagram import to_dot as to_dot
from cadence.diagram import to_mermaid as to_mermaid
from cadence.resilience import CircuitBreaker as CircuitBreaker
from cadence.resilience import CircuitState as CircuitState
from cadence.resilience import circuit_breaker as circuit_breaker
from cadence.resilience import fallback as fallback
from cadence.resilience import retry as retry
from cadence.resilience import timeout as timeout

__all__ = [
    "AtomicDict",
    "AtomicList",
    "Beat",
    "BeatDecorator",
    "BeatError",
    "BeatErrorGroup",
    "BeatInfo",
    "BeatSpec",
    "BeatTimeoutError",
    "Cadence",
    "CadenceDefinitionError",
    "CadenceError",
    "CadenceEvent",
    "CadenceHooks",
    "Child",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Condition",
    "Context",
    "ContextCopyError",
    "ErrorHandler",
    "EventHooks",
    "EventListener",
    "FieldConflict",
    "Finding",
    "ImmutableContext",
    "LoggingHooks",
    "MergeConflictError",
    "MergeStrategy",
    "Reporter",
    "RunTimings",
    "Shared",
    "Split",
    "Step",
    "Sync",
    "Then",
    "TimingHooks",
    "ValidationReport",
    "beat",
    "circuit_breaker",
    "fail_on_conflict",
    "fallback",
    "last_write_wins",
    "retry",
    "smart_merge",
    "timeout",
    "to_dot",
    "to_mermaid",
    "validate",
]

__version__ = "0.1.0.dev0"
