"""Typed events: what happens during a run, as frozen records a listener receives.

`Cadence.with_listener(listener)` attaches an `EventHooks`: an adapter from the hooks protocol to
these events. Each run gets a run id, held in a context variable with the beats in progress, so
the resilience decorators (which know nothing of cadences) can say "this beat is being retried"
and the event names the right run and beat, in parallel branches and worker threads too.

The reporters in `cadence.reporters` are built on the same adapter (`Observer`): they read the
run and beat records it keeps instead of allocating an event object per beat, which keeps their
per-beat cost close to the instrumentation library's own (see `benchmarks/observability.py`).
Everything an event says, a reporter sees the same way: one outcome rule, one run id.

Nothing here runs on a beat's path unless an observer is attached: the resilience decorators'
calls (`record_retry`, `record_fallback`, `record_timeout`) read one context variable and return
when no beat is observed.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, cast

from cadence._beat import is_async_callable
from cadence._context import Context
from cadence._errors import (
    BeatError,
    BeatTimeoutError,
    CircuitOpenError,
    MergeConflictError,
    root_cause,
)
from cadence._hooks import PARALLEL_STARTS_ONLY, CadenceHooks

if TYPE_CHECKING:
    from cadence._cadence import Cadence
    from cadence.resilience._breaker import CircuitBreaker, CircuitState


logger = logging.getLogger("cadence")

Outcome: TypeAlias = Literal[
    "success", "failure", "timeout", "circuit_open", "fallback", "cancelled"
]
"""How a beat or a run ended: a closed set, safe as a metric label."""

OUTCOMES: Final[tuple[Outcome, ...]] = (
    "success",
    "failure",
    "timeout",
    "circuit_open",
    "fallback",
    "cancelled",
)


# --------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """What every event carries.

    Attributes:
        cadence: The name of the cadence the event belongs to.
        run_id: The run's id (unique per run and process); `None` only for a breaker change
            outside any observed beat.
        at: When it happened, in seconds since the epoch (`time.time()`).

    """

    cadence: str
    run_id: str | None
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    """A run began (its first step is next).

    Attributes:
        parent_run_id: The run this one is a child of (a `child` step), if observed.

    """

    parent_run_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunCompleted(Event):
    """A run finished without error.

    Attributes:
        started_at: When it started (epoch seconds).
        duration: Seconds it took (a monotonic clock).
        outcome: Always `"success"`.

    """

    started_at: float
    duration: float
    outcome: Outcome = "success"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFailed(Event):
    """A run ended by an error.

    Attributes:
        started_at: When it started (epoch seconds).
        duration: Seconds it took.
        error: What ended it (usually a `BeatError` chained to the beat's exception).
        outcome: `"timeout"` or `"circuit_open"` when that is what the failed beat raised,
            else `"failure"`.

    """

    started_at: float
    duration: float
    error: Exception
    outcome: Outcome = "failure"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunCancelled(Event):
    """A run was cancelled from outside.

    Attributes:
        started_at: When it started (epoch seconds).
        duration: Seconds it ran.
        outcome: Always `"cancelled"`.

    """

    started_at: float
    duration: float
    outcome: Outcome = "cancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class BeatEvent(Event):
    """What every beat event carries.

    Attributes:
        beat: The beat's path (`step`, or `step.beat` inside `sync`, `split` and `child`).

    """

    beat: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BeatStarted(BeatEvent):
    """A beat is about to run, in its own task."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BeatCompleted(BeatEvent):
    """A beat returned.

    Attributes:
        started_at: When it started (epoch seconds).
        duration: Seconds it took.
        outcome: `"fallback"` when a `@fallback` replaced a failure, else `"success"`.

    """

    started_at: float
    duration: float
    outcome: Outcome = "success"


@dataclass(frozen=True, slots=True, kw_only=True)
class BeatFailed(BeatEvent):
    """A beat raised.

    Attributes:
        started_at: When it started (epoch seconds).
        duration: Seconds it took.
        error: What it raised.
        outcome: `"timeout"`, `"circuit_open"` or `"failure"`.

    """

    started_at: float
    duration: float
    error: Exception
    outcome: Outcome = "failure"


@dataclass(frozen=True, slots=True, kw_only=True)
class BeatCancelled(BeatEvent):
    """A beat was cancelled (a failed sibling, a timeout of the caller, a shutdown).

    Attributes:
        started_at: When it started (epoch seconds).
        duration: Seconds it ran.
        outcome: Always `"cancelled"`.

    """

    started_at: float
    duration: float
    outcome: Outcome = "cancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class BeatRetried(BeatEvent):
    """A `@retry` inside the beat is about to call again.

    Attributes:
        function: The retried function's name (the beat, or a helper it calls).
        attempt: The attempt that failed (1 for the first call).
        max_attempts: The attempts allowed in all.
        wait: Seconds until the next attempt.
        error: The failed attempt's exception.

    """

    function: str
    attempt: int
    max_attempts: int
    wait: float
    error: Exception


@dataclass(frozen=True, slots=True, kw_only=True)
class BeatFellBack(BeatEvent):
    """A `@fallback` inside the beat replaced a failure by its value.

    Attributes:
        function: The guarded function's name.
        error: The failure it replaced.

    """

    function: str
    error: Exception


@dataclass(frozen=True, slots=True, kw_only=True)
class BeatTimedOut(BeatEvent):
    """A `@timeout` inside the beat gave up.

    Attributes:
        function: The timed function's name.
        seconds: Its time limit.

    """

    function: str
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerStateChanged(Event):
    """A circuit breaker used by the cadence's beats changed state.

    Attributes:
        breaker: The breaker's name.
        old_state: The state it left.
        new_state: The state it entered.
        beat: The observed beat whose call changed it, if the change happened in one.

    """

    breaker: str
    old_state: CircuitState
    new_state: CircuitState
    beat: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeConflict(Event):
    """A `sync` step's beats changed one field to different values.

    Attributes:
        step: The `sync` step.
        field: The contested field.
        beats: The beats that wrote it, in declaration order.

    """

    step: str
    field: str
    beats: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DurableEvent(Event):
    """What every event of a durable run carries (`cadence.durable`).

    Its `run_id` is the durable run's own id (`run(ctx, run_id=...)`), which is also the id the
    run's other events carry: a resumed run is one run to its listeners, in every process.

    Attributes:
        owner: The owner token of the attempt (host, process and a nonce).
        position: How many top-level steps had completed (committed) at the time.
        step: The next step to run (`None` once all are done).

    """

    owner: str
    position: int
    step: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunClaimed(DurableEvent):
    """A caller (a `run(..., store=...)` or a worker) took a durable run to run it.

    Attributes:
        attempt: The run's attempt (1 for a new run, or a queued one run for the first time;
            one more for each resume).
        new: Whether this is the run's first attempt (else `RunResumed` follows).

    """

    attempt: int
    new: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResumed(DurableEvent):
    """A durable run that had stopped (crashed, failed, handed back) goes on where it stopped.

    Sent after `RunClaimed`, before the run's `RunStarted`; `position` steps are skipped.

    Attributes:
        attempt: The run's attempt (2 or more).
        in_child: Whether it goes on inside its step: a `child` step (from the child's own
            commit) or a `sync` step some of whose branches had finished.

    """

    attempt: int
    in_child: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseLost(DurableEvent):
    """A caller lost a durable run it ran: its lease ran out and another owner may hold it.

    The run stops here (it is not failed: the new owner goes on with it).

    Attributes:
        error: The store's `LeaseLostError`, from the write or the heartbeat that found the
            run lost (always set by cadence; optional only for events built by hand).

    """

    error: Exception | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointFailed(DurableEvent):
    """Committing a durable run's progress failed (the store unreachable, a full disk).

    The run stops with the error (a `StoreError`); the stored run is its last whole commit.

    Attributes:
        error: What the store raised.

    """

    error: Exception


CadenceEvent: TypeAlias = (
    RunStarted
    | RunCompleted
    | RunFailed
    | RunCancelled
    | BeatStarted
    | BeatCompleted
    | BeatFailed
    | BeatCancelled
    | BeatRetried
    | BeatFellBack
    | BeatTimedOut
    | BreakerStateChanged
    | MergeConflict
    | RunClaimed
    | RunResumed
    | LeaseLost
    | CheckpointFailed
)
"""Any event a listener receives (match on its class)."""

EventListener: TypeAlias = Callable[[CadenceEvent], Awaitable[None] | None]
"""`listener(event)`, sync or async."""


# --------------------------------------------------------------------------------------- records


class Run:
    """One observed run, as an observer sees it.

    `beat` is the run's beat in progress in the run's own context (see `Observer.before_beat`);
    `spare` the one frame it holds for each of its beats in turn, filled in again each time.
    """

    __slots__ = (
        "beat",
        "cadence",
        "context",
        "owner",
        "parent_id",
        "run_id",
        "spare",
        "start",
        "started_at",
        "state",
    )

    def __init__(
        self, owner: Observer, cadence: str, context: object, parent_id: str | None
    ) -> None:
        self.owner = owner
        self.cadence = cadence
        self.context = context
        self.run_id = new_run_id()
        self.parent_id = parent_id
        self.started_at = time.time()
        self.start = time.perf_counter()
        self.state: object = None  # the observer's own (a span, say)
        self.beat: Frame | None = None
        self.spare = Frame(owner, self, "")  # a held frame is let go of, never closed


class Frame:
    """One observed beat in progress.

    `pending` holds the resilience notices of the beat, in order; it is an empty tuple until
    the first comes (most beats have none: no list is made for them).
    """

    __slots__ = (
        "closed",
        "fell_back",
        "owner",
        "path",
        "pending",
        "run",
        "state",
        "token",
    )

    pending: Sequence[Notice]
    fell_back: bool
    closed: bool
    state: object
    token: Token[tuple[Run | Frame, ...]] | None

    def __init__(self, owner: Observer, run: Run, path: str) -> None:
        self.owner = owner
        self.run = run
        self.path = path
        self.pending = ()
        self.fell_back = self.closed = False
        self.state = None
        self.token = None


@dataclass(frozen=True, slots=True)
class Notice:
    """A resilience decorator's report, held until the beat's end is told (see `Observer`)."""

    kind: Literal["retry", "fallback", "timeout", "breaker"]
    at: float
    function: str
    attempt: int = 0
    max_attempts: int = 0
    wait: float = 0.0
    seconds: float = 0.0
    error: Exception | None = None
    breaker: str = ""
    old_state: CircuitState | None = None
    new_state: CircuitState | None = None


# The observed runs of this context, innermost last, with the parallel beats pushed above them.
observed: ContextVar[tuple[Run | Frame, ...]] = ContextVar("cadence_observed", default=())
_ids = itertools.count(1)
_prefix = f"{os.getpid():x}"
_prefix_pid = os.getpid()


# A durable run's id, for the first observed run that starts under it (see `durable_run`).
_durable_id: ContextVar[str | None] = ContextVar("cadence_durable_run_id", default=None)


def new_run_id() -> str:
    """Return a run id unique in this process (and across forked workers): `pid-counter`.

    Under `durable_run(run_id)`, the first run observed gets the durable run's id instead,
    so a resumed run has one id in every process.
    """
    durable = _durable_id.get()
    if durable is not None:
        _durable_id.set(None)  # the run's children get their own ids
        return durable
    global _prefix, _prefix_pid  # re-read after a fork, once
    pid = os.getpid()
    if pid != _prefix_pid:
        _prefix, _prefix_pid = f"{pid:x}", pid
    return f"{_prefix}-{next(_ids):x}"


def current_run() -> Run | None:
    """Return the innermost observed run in this context, if any (any observer's record)."""
    for entry in reversed(observed.get()):
        if isinstance(entry, Run):
            return entry
    return None


def beat_outcome(error: BaseException | None, fell_back: bool = False) -> Outcome:
    """Return the outcome of a beat that ended with `error`."""
    if error is None:
        return "fallback" if fell_back else "success"
    if not isinstance(error, Exception):
        return "cancelled"
    if isinstance(error, BeatTimeoutError):
        return "timeout"
    if isinstance(error, CircuitOpenError):
        return "circuit_open"
    return "failure"


def run_outcome(error: BaseException | None) -> Outcome:
    """Return the outcome of a run: a failed beat's own kind of failure shows through."""
    if error is None:
        return "success"
    if not isinstance(error, Exception):
        return "cancelled"
    outcome = beat_outcome(root_cause(error))
    return "failure" if outcome == "cancelled" else outcome


def _merge_conflict(error: BaseException) -> MergeConflictError | None:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, MergeConflictError):
            return cause
        cause = cause.__cause__ if isinstance(cause, BeatError) else None
    return None


def _run_records(stack: tuple[Run | Frame, ...], index: int) -> list[Run]:
    """Return the records of one run from `stack[index]` down: one per observer, one run id.

    Observers of one run stack their records together; a second record of one observer, or a
    record of another run id, is an outer cadence's (a cadence run inside a beat).
    """
    records: list[Run] = []
    while index >= 0:
        entry = stack[index]
        if not isinstance(entry, Run) or any(r.owner is entry.owner for r in records):
            break
        if records and entry.run_id != records[0].run_id:
            break
        records.append(entry)
        index -= 1
    return records


async def tell_handled_conflict(error: BaseException) -> None:
    """Tell the observers of the run in progress of a merge conflict its error handler took.

    A conflict that ends the run is told at the run's end (`Observer.after_cadence`); one that
    `on_error(..., stop=False)` handles does not end it, so the runner tells it here.
    """
    conflict = _merge_conflict(error)
    if conflict is None:
        return
    stack = observed.get()
    for entry in _run_records(stack, len(stack) - 1):  # the run in progress: on top
        try:
            pending = entry.owner.merge_conflict(entry, conflict)
            if pending is not None:
                await pending
        except Exception:
            logger.exception("observer %r raised on %s", entry.owner, conflict)


# ----------------------------------------------------------------- the resilience layer's calls

_notice_lock = threading.Lock()


def _open_frames(*, opening: bool = False) -> list[Frame]:
    """Return the frames of the beat in progress here (every observer's), innermost first.

    The frames pushed on this context's stack first, then the beats held by the run's records
    below them (`_run_records`). With
    `opening`, a run whose observer is not told of sequential starts, and holds no beat, is
    in a beat it has not heard of yet: its spare frame is opened for it, its path to come.
    """
    stack = observed.get()
    frames: list[Frame] = []
    index = len(stack) - 1
    while index >= 0 and type(stack[index]) is Frame:
        frames.append(cast("Frame", stack[index]))
        index -= 1
    for run in _run_records(stack, index):
        if all(f.owner is not run.owner for f in frames):
            beat = run.beat
            if beat is None and opening and getattr(run.owner, PARALLEL_STARTS_ONLY) is True:
                beat = _open_unnamed(run)
            if beat is not None:
                frames.append(beat)
    return frames


def _open_unnamed(run: Run) -> Frame:
    """Hold the run's spare frame for a beat not named yet (see `Observer.after_beat`)."""
    with _notice_lock:  # a beat's threads may notice at once
        frame = run.beat
        if frame is None:
            frame = run.beat = run.spare
            frame.path = ""  # named when the beat ends
        return frame


def forget_unnamed() -> None:
    """Drop what was noticed outside any beat (an error handler, a split's condition, ...).

    The runner calls it after running code of its own between beats: a frame a notice opened
    there (`_open_unnamed`) would otherwise be named by the next beat's end.
    """
    stack = observed.get()
    for entry in _run_records(stack, len(stack) - 1):
        frame = entry.beat
        if frame is not None and not frame.path:
            with _notice_lock:
                entry.beat = None
                frame.pending = ()
                frame.fell_back = False


# The timed sync calls (`@timeout`) this thread runs inside: a notice from one its caller gave
# up on belongs to no beat (the beat has ended; its run may be in another beat by now).
abandoned: ContextVar[tuple[dict[str, bool], ...]] = ContextVar("cadence_abandoned", default=())


def _notify(notice: Notice) -> None:
    if any(state["abandoned"] for state in abandoned.get()):
        return
    for frame in _open_frames(opening=True):
        if not frame.closed:
            if notice.kind == "fallback":
                frame.fell_back = True
            add_notice(frame, notice)


def add_notice(frame: Frame, notice: Notice) -> None:
    """Add `notice` to the frame's pending notices (from any thread)."""
    with _notice_lock:  # notices are rare; a beat's threads may notice at once
        pending = frame.pending
        if isinstance(pending, list):
            pending.append(notice)
        else:
            frame.pending = [*pending, notice]


def record_retry(
    function: str, attempt: int, max_attempts: int, wait: float, error: Exception
) -> None:
    """Tell the observed beat in progress (if any) that `function` is about to be retried."""
    if observed.get():
        _notify(Notice("retry", time.time(), function, attempt, max_attempts, wait, error=error))


def record_fallback(function: str, error: Exception) -> None:
    """Tell the observed beat in progress (if any) that `function`'s failure was replaced."""
    if observed.get():
        _notify(Notice("fallback", time.time(), function, error=error))


def record_timeout(function: str, seconds: float) -> None:
    """Tell the observed beat in progress (if any) that `function` timed out."""
    if observed.get():
        _notify(Notice("timeout", time.time(), function, seconds=seconds))


# ----------------------------------------------------------------- decorator marks, for diagrams

MARKS_ATTRIBUTE: Final = "__cadence_decorations__"


@dataclass(frozen=True, slots=True)
class Decoration:
    """What a resilience decorator records on its wrapper, for diagrams and `validate`.

    Attributes:
        kind: `"retry"`, `"timeout"`, `"fallback"` or `"circuit_breaker"`.
        label: A short human label (`retry x3`, `timeout 5s`).

    """

    kind: str
    label: str


def mark(wrapper: object, kind: str, label: str) -> None:
    """Record on `wrapper` that it is a `kind` decorator (`functools.wraps` copies it outwards)."""
    inherited: tuple[Decoration, ...] = getattr(wrapper, MARKS_ATTRIBUTE, ())
    try:
        setattr(wrapper, MARKS_ATTRIBUTE, (*inherited, Decoration(kind, label)))
    except (AttributeError, TypeError):  # pragma: no cover # wrappers are plain functions
        return


def decorations(fn: object) -> tuple[Decoration, ...]:
    """Return the resilience decorations of `fn`, outermost first (as written above a def)."""
    marks: tuple[Decoration, ...] = getattr(fn, MARKS_ATTRIBUTE, ())
    return tuple(reversed(marks))


# ----------------------------------------------------------------- circuit breakers


_watch_lock = threading.Lock()
# Per breaker, the observers watching it with the cadence names they watch it for. Weak both
# ways: a cadence built per request must not keep its observers (or a breaker) alive.
_watchers: weakref.WeakKeyDictionary[CircuitBreaker, weakref.WeakKeyDictionary[Observer, set[str]]]
_watchers = weakref.WeakKeyDictionary()


_every_breaker: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()
# Observers of every breaker in the process (a Prometheus reporter's state gauge).
_breaker_observers: weakref.WeakSet[Observer] = weakref.WeakSet()


def breaker_created(breaker: CircuitBreaker) -> None:
    """Listen to a new circuit breaker (called by `CircuitBreaker.__init__`)."""
    with _watch_lock:
        _every_breaker.add(breaker)
        observers = list(_breaker_observers)
    breaker.add_listener(_breaker_changed)
    for observer in observers:
        observer.breaker_seen(breaker)


def observe_every_breaker(observer: Observer) -> None:
    """Tell `observer` of every breaker's changes, and of each breaker made from now on."""
    with _watch_lock:
        _breaker_observers.add(observer)
        breakers = sorted(_every_breaker, key=lambda b: b.name)
    for breaker in breakers:
        observer.breaker_seen(breaker)


def _breaker_changed(breaker: CircuitBreaker, old: CircuitState, new: CircuitState) -> None:
    """Tell the observers concerned: those in whose beat it happened, watching it, or all."""
    with _watch_lock:
        watching = _watchers.get(breaker)
        targets: dict[Observer, list[str]] = (
            {} if watching is None else {o: sorted(n) for o, n in watching.items()}
        )
        every = list(_breaker_observers)
    frames = _open_frames()
    at = time.time()
    calls: list[tuple[Observer, str, Frame | None]] = []
    for open_frame in frames:  # innermost first: an observer's own record of the beat wins
        if not open_frame.closed and all(o is not open_frame.owner for o, _, _ in calls):
            calls.append((open_frame.owner, open_frame.run.cadence, open_frame))
    calls.reverse()  # then told in the order hooks are called
    for observer, names in targets.items():
        if all(o is not observer for o, _, _ in calls):
            calls.extend((observer, name, None) for name in names)
    for observer in every:
        if all(o is not observer for o, _, _ in calls):
            calls.append((observer, "", None))
    for observer, name, frame in calls:
        try:
            observer.breaker_changed(breaker.name, old, new, name, frame, at)
        except Exception:
            logger.exception("observer %r raised on a circuit breaker change", observer)


def breakers_of(cadence: Cadence[Any]) -> list[CircuitBreaker]:
    """Return the circuit breakers guarding the cadence's beats (children included), in order."""
    from cadence._plan import walk  # noqa: PLC0415 # the plan walk imports the steps

    found: list[CircuitBreaker] = []
    for node in walk(cadence).beats():
        for breaker in node.breakers:
            if not any(b is breaker for b in found):
                found.append(breaker)
    return found


# ----------------------------------------------------------------- the observer


class Observer(CadenceHooks[Context]):
    """The hooks-to-records adapter that events and reporters are built on.

    Subclasses implement what they need of `run_started`, `run_ended`, `beat_started`,
    `beat_ended` (whose frame holds the resilience notices of the beat), `breaker_changed`,
    `breaker_seen` and `merge_conflict`; the hook-facing ones may return an awaitable. A
    subclass that raises is logged and does not fail the run (the hooks machinery isolates it).
    """

    # Whether the subclass handles beat starts. One that does not is told of the starts of
    # parallel beats only (`PARALLEL_STARTS_ONLY`): a sequential beat is the one its run is in.
    _tells_starts: bool = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._tells_starts = cls.beat_started is not Observer.beat_started
        setattr(cls, PARALLEL_STARTS_ONLY, not cls._tells_starts)

    # ---- binding to a plan

    def watch(self, cadence: Cadence[Any]) -> None:
        """Prepare for `cadence` as built so far: its series, its circuit breakers.

        `with_reporter` and `with_listener` call it with the cadence they return; call it
        again with the finished cadence to cover steps added after the reporter.
        """
        breakers = breakers_of(cadence)
        self.prepare(cadence, breakers)
        with _watch_lock:
            for breaker in breakers:
                watching = _watchers.get(breaker)
                if watching is None:
                    watching = _watchers[breaker] = weakref.WeakKeyDictionary()
                watching.setdefault(self, set()).add(cadence.name)

    def prepare(self, cadence: Cadence[Any], breakers: Iterable[CircuitBreaker]) -> None:
        """Get ready for `cadence` (a reporter creates its series here); default: nothing."""

    def breaker_seen(self, breaker: CircuitBreaker) -> None:
        """Meet a circuit breaker (see `observe_every_breaker`); default: nothing."""

    # ---- what subclasses implement

    def run_started(self, run: Run) -> Awaitable[None] | None:
        """Handle the start of a run."""
        return None

    def run_ended(
        self, run: Run, duration: float, error: BaseException | None, outcome: Outcome
    ) -> Awaitable[None] | None:
        """Handle the end of a run."""
        return None

    def beat_started(self, frame: Frame) -> Awaitable[None] | None:
        """Handle the start of a beat, in the beat's own task."""
        return None

    def beat_ended(
        self, frame: Frame, duration: float, error: BaseException | None, outcome: Outcome
    ) -> Awaitable[None] | None:
        """Handle the end of a beat; `frame.pending` holds the resilience notices first."""
        return None

    def breaker_changed(  # noqa: PLR0917 # one call per change, all of it
        self,
        breaker: str,
        old: CircuitState,
        new: CircuitState,
        cadence: str,
        frame: Frame | None,
        at: float,
    ) -> None:
        """Handle a circuit breaker's state change (called in the thread that changed it)."""

    def merge_conflict(self, run: Run, error: MergeConflictError) -> Awaitable[None] | None:
        """Handle a merge conflict that ended a run."""
        return None

    def durable_event(self, event: DurableEvent) -> Awaitable[None] | None:
        """Handle an event of a durable run (a claim, a resume, a lost lease, a failed commit)."""
        return None

    # ---- the hooks protocol

    def before_cadence(self, cadence_name: str, context: Context) -> Awaitable[None] | None:
        """Open a run record and tell `run_started`."""
        stack = observed.get()
        parent = next((e for e in reversed(stack) if isinstance(e, Run)), None)
        run = Run(self, cadence_name, context, None if parent is None else parent.run_id)
        # Observers of one run share its id: the same cadence on the same context, just begun.
        if parent is not None and parent.context is context and parent.cadence == cadence_name:
            run.run_id, run.parent_id = parent.run_id, parent.parent_id
        observed.set((*stack, run))
        return self.run_started(run)

    def after_cadence(
        self,
        cadence_name: str,
        context: Context,
        duration: float,
        error: BaseException | None = None,
    ) -> Awaitable[None] | None:
        """Close the run record and tell `run_ended`."""
        stack = observed.get()
        for index in range(len(stack) - 1, -1, -1):
            entry = stack[index]
            if isinstance(entry, Run) and entry.owner is self and entry.cadence == cadence_name:
                # Other observers' records of this run stay; stale beats died with the run.
                above = tuple(
                    e for e in stack[index + 1 :] if isinstance(e, Run) and e.owner is not self
                )
                observed.set(stack[:index] + above)
                run = entry
                break
        else:
            return None
        outcome = run_outcome(error)
        conflict = None if error is None else _merge_conflict(error)
        if conflict is None:
            return self.run_ended(run, duration, error, outcome)
        first = self.merge_conflict(run, conflict)
        then = self.run_ended(run, duration, error, outcome)
        if first is None and then is None:
            return None
        return _both(first, then)

    def before_beat(self, beat_name: str, context: Context) -> Awaitable[None] | None:
        """Open a beat record (visible to the resilience decorators) and tell `beat_started`.

        The usual beat is held by its run's record (`Run.beat`), which the contexts of the
        run's task and of the beat's threads share: no context variable is set, which would
        cost more than the rest of the record (a set also voids every variable's read cache),
        and the frame the run held last is filled in again (a new object per beat would cost
        as much again, in allocation and the collector's passes over young objects). A beat
        that starts while its run holds another (parallel beats of a `sync` step) is pushed on
        its own context's stack, in a frame of its own.

        Subclasses must not keep a frame past `beat_ended` (read what they need from it).
        """
        stack = observed.get()
        if stack:
            top = stack[-1]
            # The usual case: this observer's record of the run on top (the last one pushed,
            # or below other observers' records of the run) holds no beat yet.
            run = top if type(top) is Run and top.owner is self else self._run_on_top(stack)
            if run is not None and run.beat is None:
                frame = run.beat = run.spare
                frame.path = beat_name
                if self._tells_starts:
                    frame.state = None
                    return self.beat_started(frame)
                return None
        # The nearest run this observer watches: a parent's, for a child cadence without hooks
        # of its own (its beats come named `child_step.beat`).
        index = next((i for i in range(len(stack) - 1, -1, -1) if self._runs(stack[i])), None)
        if index is None:
            run = Run(self, "", context, None)  # its start was not told (a hook before raised)
            run.run_id = ""
        else:
            run = cast("Run", stack[index])
        frame = Frame(self, run, beat_name)
        frame.token = observed.set((*stack, frame))
        return self.beat_started(frame) if self._tells_starts else None

    def _runs(self, entry: Run | Frame) -> bool:
        return type(entry) is Run and entry.owner is self

    def after_beat(
        self,
        beat_name: str,
        context: Context,
        duration: float,
        error: BaseException | None = None,
    ) -> Awaitable[None] | None:
        """Close the beat record and tell `beat_ended`."""
        stack = observed.get()
        top = stack[-1] if stack else None
        run = top if type(top) is Run and top.owner is self else self._run_on_top(stack)
        if run is not None:  # the usual case: the run holds the beat, or is in it
            frame = run.beat
            if frame is None:
                # A sequential beat not told of its start, that nothing noticed (else: not ours).
                frame = None if self._tells_starts else run.spare
            elif frame.path == beat_name or not frame.path:
                run.beat = None  # held since its start, or opened by a notice (`_open_frames`)
            else:
                frame = None
            if frame is not None:
                frame.path = beat_name
                if frame.pending or frame.fell_back:
                    return self._end_held(frame, duration, error)
                outcome = "success" if error is None else beat_outcome(error)
                return self.beat_ended(frame, duration, error, outcome)
        found = self._pushed(stack, beat_name)
        if found is not None:
            found.closed = True  # its context's copies may still hold it
            return self.beat_ended(found, duration, error, beat_outcome(error, found.fell_back))
        found = self._held(stack, beat_name)
        return None if found is None else self._end_held(found, duration, error)

    def _run_on_top(self, stack: tuple[Run | Frame, ...]) -> Run | None:
        """Return this observer's run among the runs on top of the stack (one run's records).

        `_run_records` from the top, stopping at this observer's record: no list is made (it
        runs twice a beat for every observer whose record is not the last one pushed).
        """
        index = len(stack) - 1
        top = stack[index]
        if not isinstance(top, Run):
            return None
        seen: tuple[int, ...] = ()  # the observers passed, by identity (as `_run_records`)
        while index >= 0:
            entry = stack[index]
            if not isinstance(entry, Run) or entry.run_id != top.run_id:
                return None
            owner = entry.owner
            if owner is self:
                return entry
            if id(owner) in seen:  # an outer cadence's records begin
                return None
            seen = (*seen, id(owner))
            index -= 1
        return None

    def _end_held(
        self, frame: Frame, duration: float, error: BaseException | None
    ) -> Awaitable[None] | None:
        """Tell `beat_ended` of a held beat (with notices), then clear them for the next beat."""
        try:
            return self.beat_ended(frame, duration, error, beat_outcome(error, frame.fell_back))
        finally:
            frame.pending = ()
            frame.fell_back = False

    def _pushed(self, stack: tuple[Run | Frame, ...], path: str) -> Frame | None:
        """Take this beat's frame off this context's stack, if it was pushed there."""
        for index in range(len(stack) - 1, -1, -1):
            entry = stack[index]
            if type(entry) is Frame and entry.owner is self and entry.path == path:
                if index == len(stack) - 1 and entry.token is not None:
                    try:
                        observed.reset(entry.token)  # the stack it pushed: one step
                    except (ValueError, RuntimeError):  # another context's token, or used
                        observed.set(stack[:-1])
                else:
                    for later in stack[index + 1 :]:
                        if type(later) is Frame:
                            later.token = None  # it would restore a stack with this in it
                    observed.set(stack[:index] + stack[index + 1 :])
                return entry
        return None

    def _held(self, stack: tuple[Run | Frame, ...], path: str) -> Frame | None:
        """Take this beat's frame from the run holding it, if one of this observer's does."""
        for entry in reversed(stack):
            if type(entry) is Run and entry.owner is self:
                frame = entry.beat
                if frame is not None and frame.path == path:
                    entry.beat = None
                    return frame
        return None


setattr(Observer, PARALLEL_STARTS_ONLY, True)  # as its subclasses that leave starts alone


async def _both(first: Awaitable[None] | None, then: Awaitable[None] | None) -> None:
    if first is not None:
        await first
    if then is not None:
        await then


# ----------------------------------------------------------------- events for a listener


class EventHooks(Observer):
    """Hooks that turn a run into `CadenceEvent`s and hand each to `listener(event)`.

    Attach it with `Cadence.with_listener(listener)` (which also watches the plan's circuit
    breakers), or with `with_hooks(EventHooks(listener))` plus `hooks.watch(cadence)`. A listener
    that raises is logged on the `cadence` logger; the run goes on and later events still come.
    """

    def __init__(self, listener: EventListener) -> None:
        """Hand every event to `listener`, sync or async."""
        if not callable(listener):
            raise TypeError(f"EventHooks: the listener must be callable, got {listener!r}")
        self.listener = listener
        self._is_async = is_async_callable(listener)

    def __repr__(self) -> str:
        return f"EventHooks({self.listener!r})"

    def _send(self, events: list[CadenceEvent]) -> Awaitable[None] | None:
        if self._is_async:
            return self._send_async(events)
        for event in events:
            try:
                result = self.listener(event)
            except Exception:
                logger.exception("event listener %r raised on %s", self.listener, event)
                continue
            if result is not None and inspect.isawaitable(result):
                # A listener that looked sync returned an awaitable: await it and the rest.
                self._is_async = True
                return self._send_async(events, first=(event, result))
        return None

    async def _send_async(
        self,
        events: list[CadenceEvent],
        first: tuple[CadenceEvent, Awaitable[None]] | None = None,
    ) -> None:
        if first is not None:
            try:
                await first[1]
            except Exception:
                logger.exception("event listener %r raised on %s", self.listener, first[0])
            events = events[events.index(first[0]) + 1 :]
        for event in events:
            try:
                result = self.listener(event)
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("event listener %r raised on %s", self.listener, event)

    def run_started(self, run: Run) -> Awaitable[None] | None:
        """Send `RunStarted`."""
        at = run.started_at
        return self._send(
            [RunStarted(cadence=run.cadence, run_id=run.run_id, at=at, parent_run_id=run.parent_id)]
        )

    def run_ended(
        self, run: Run, duration: float, error: BaseException | None, outcome: Outcome
    ) -> Awaitable[None] | None:
        """Send `RunCompleted`, `RunFailed` or `RunCancelled`."""
        name, run_id, at, started = run.cadence, run.run_id, time.time(), run.started_at
        event: CadenceEvent
        if error is None:
            event = RunCompleted(
                cadence=name, run_id=run_id, at=at, started_at=started, duration=duration
            )
        elif isinstance(error, Exception):
            event = RunFailed(
                cadence=name,
                run_id=run_id,
                at=at,
                started_at=started,
                duration=duration,
                error=error,
                outcome=outcome,
            )
        else:
            event = RunCancelled(
                cadence=name, run_id=run_id, at=at, started_at=started, duration=duration
            )
        return self._send([event])

    def beat_started(self, frame: Frame) -> Awaitable[None] | None:
        """Send `BeatStarted`."""
        run = frame.run
        frame.state = at = time.time()
        return self._send(
            [BeatStarted(cadence=run.cadence, run_id=run.run_id, at=at, beat=frame.path)]
        )

    def beat_ended(
        self, frame: Frame, duration: float, error: BaseException | None, outcome: Outcome
    ) -> Awaitable[None] | None:
        """Send the beat's resilience events, then how it ended."""
        run = frame.run
        cadence, run_id, path = run.cadence, run.run_id, frame.path
        events: list[CadenceEvent] = [notice_event(n, cadence, run_id, path) for n in frame.pending]
        at = time.time()
        started = frame.state if isinstance(frame.state, float) else at - duration
        if error is None:
            events.append(
                BeatCompleted(
                    cadence=cadence,
                    run_id=run_id,
                    at=at,
                    beat=path,
                    started_at=started,
                    duration=duration,
                    outcome=outcome,
                )
            )
        elif isinstance(error, Exception):
            events.append(
                BeatFailed(
                    cadence=cadence,
                    run_id=run_id,
                    at=at,
                    beat=path,
                    started_at=started,
                    duration=duration,
                    error=error,
                    outcome=outcome,
                )
            )
        else:
            events.append(
                BeatCancelled(
                    cadence=cadence,
                    run_id=run_id,
                    at=at,
                    beat=path,
                    started_at=started,
                    duration=duration,
                )
            )
        return self._send(events)

    def breaker_changed(  # noqa: PLR0917 # as in Observer
        self,
        breaker: str,
        old: CircuitState,
        new: CircuitState,
        cadence: str,
        frame: Frame | None,
        at: float,
    ) -> None:
        """Send `BreakerStateChanged`: at once to a sync listener; with the beat to an async one."""
        if self._is_async:
            if frame is not None:  # delivered with the beat's end, in its task
                add_notice(
                    frame, Notice("breaker", at, "", breaker=breaker, old_state=old, new_state=new)
                )
            return
        event = BreakerStateChanged(
            cadence=cadence,
            run_id=None if frame is None else frame.run.run_id,
            at=at,
            breaker=breaker,
            old_state=old,
            new_state=new,
            beat=None if frame is None else frame.path,
        )
        pending = self._send([event])
        if inspect.iscoroutine(pending):  # the listener turned out async: nowhere to await it
            pending.close()

    def merge_conflict(self, run: Run, error: MergeConflictError) -> Awaitable[None] | None:
        """Send `MergeConflict`."""
        event = MergeConflict(
            cadence=run.cadence,
            run_id=run.run_id,
            at=time.time(),
            step=error.step_name,
            field=error.field,
            beats=error.beats,
        )
        return self._send([event])

    def durable_event(self, event: DurableEvent) -> Awaitable[None] | None:
        """Send the durable run's event as it is."""
        return self._send([cast("CadenceEvent", event)])  # each DurableEvent kind is one


# ----------------------------------------------------------------- durable runs

DurableKind: TypeAlias = Literal["claimed", "resumed", "lease_lost", "checkpoint_failed"]
"""What a durable event says, as a metric label: a closed set."""

DURABLE_KINDS: Final[tuple[DurableKind, ...]] = (
    "claimed",
    "resumed",
    "lease_lost",
    "checkpoint_failed",
)


def durable_kind(event: DurableEvent) -> DurableKind:
    """Return the label of a durable event."""
    if isinstance(event, RunClaimed):
        return "claimed"
    if isinstance(event, RunResumed):
        return "resumed"
    return "lease_lost" if isinstance(event, LeaseLost) else "checkpoint_failed"


def durable_run(cadence: Cadence[Any], run_id: str) -> Token[str | None] | None:
    """Give the next observed run of `cadence` the durable run's id; return a reset token.

    Nothing is set (`None`) when no observer watches the cadence.
    """
    if not any(isinstance(h, Observer) for h in cadence.hooks):
        return None
    return _durable_id.set(run_id)


def end_durable_run(token: Token[str | None] | None) -> None:
    """Undo `durable_run`."""
    if token is not None:
        _durable_id.reset(token)


async def emit_durable(cadence: Cadence[Any], event: DurableEvent) -> None:
    """Tell the observers of `cadence` (its listeners, its reporters) of a durable event."""
    for hooks in cadence.hooks:
        if isinstance(hooks, Observer):
            try:
                pending = hooks.durable_event(event)
                if pending is not None:
                    await pending
            except Exception:
                logger.exception("observer %r raised on %s", hooks, event)


def notice_event(notice: Notice, cadence: str, run_id: str, path: str) -> CadenceEvent:
    """Return the event a resilience notice stands for."""
    if notice.kind == "retry":
        assert notice.error is not None  # noqa: S101 # a retry always has its failure
        return BeatRetried(
            cadence=cadence,
            run_id=run_id,
            at=notice.at,
            beat=path,
            function=notice.function,
            attempt=notice.attempt,
            max_attempts=notice.max_attempts,
            wait=notice.wait,
            error=notice.error,
        )
    if notice.kind == "fallback":
        assert notice.error is not None  # noqa: S101 # a fallback always has its failure
        return BeatFellBack(
            cadence=cadence,
            run_id=run_id,
            at=notice.at,
            beat=path,
            function=notice.function,
            error=notice.error,
        )
    if notice.kind == "timeout":
        return BeatTimedOut(
            cadence=cadence,
            run_id=run_id,
            at=notice.at,
            beat=path,
            function=notice.function,
            seconds=notice.seconds,
        )
    assert notice.old_state is not None  # noqa: S101 # a breaker notice has both states
    assert notice.new_state is not None  # noqa: S101 # as above
    return BreakerStateChanged(
        cadence=cadence,
        run_id=run_id,
        at=notice.at,
        breaker=notice.breaker,
        old_state=notice.old_state,
        new_state=notice.new_state,
        beat=path,
    )
