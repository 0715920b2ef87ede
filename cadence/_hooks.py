"""Hooks and reporters: observers of a cadence run.

Hooks see the run start and end, every beat start and end, and every beat failure. Beats inside
`sync`, `split` and `child` steps are reported one by one, named by their path
(`step.beat`, `child_step.beat`). A hook that raises is logged on the `cadence` logger and never
fails the run. A cadence with no hooks and no reporters does no observing work at all.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, TypeVar, cast

from anyio import CancelScope

from cadence._context import Context

__all__ = ["CadenceHooks", "LoggingHooks", "Reporter", "RunTimings", "TimingHooks"]

logger = logging.getLogger("cadence")

C = TypeVar("C", bound=Context)
C_contra = TypeVar("C_contra", bound=Context, contravariant=True)

Reporter: TypeAlias = Callable[[str, float, C], Awaitable[None] | None]
"""`report(beat_name, elapsed_seconds, context)`, called after every beat, sync or async."""


class CadenceHooks(Protocol[C_contra]):
    """Observe cadence runs: subclass it and override what you need (every method is a no-op).

    Any object with these five methods satisfies the protocol; at run time an object with only
    some of them works too (the missing ones are skipped). Each method may be sync or async.
    """

    def before_cadence(self, cadence_name: str, context: C_contra) -> Awaitable[None] | None:
        """Run before the cadence's first step."""
        return None

    def after_cadence(
        self,
        cadence_name: str,
        context: C_contra,
        duration: float,
        error: BaseException | None = None,
    ) -> Awaitable[None] | None:
        """Run after the cadence ends; `error` is what ended it, if anything did."""
        return None

    def before_beat(self, beat_name: str, context: C_contra) -> Awaitable[None] | None:
        """Run before a beat, in the beat's own task."""
        return None

    def after_beat(
        self,
        beat_name: str,
        context: C_contra,
        duration: float,
        error: BaseException | None = None,
    ) -> Awaitable[None] | None:
        """Run after a beat, successful or not; `duration` is in seconds."""
        return None

    def on_error(
        self, beat_name: str, context: C_contra, error: Exception
    ) -> Awaitable[None] | None:
        """Run after a beat raised `error` (never for cancellation)."""
        return None


HOOK_METHODS = ("before_cadence", "after_cadence", "before_beat", "after_beat", "on_error")


class LoggingHooks(CadenceHooks[Context]):
    """Log every cadence and beat start, end and failure on the `cadence` logger."""

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        """Log to `logger` (default: the `cadence` logger) at `level`; failures log at ERROR."""
        self.logger = logger or logging.getLogger("cadence")
        self.level = level

    def before_cadence(self, cadence_name: str, context: Context) -> None:
        """Log the start of a run."""
        self.logger.log(self.level, "cadence %r started", cadence_name)

    def after_cadence(
        self,
        cadence_name: str,
        context: Context,
        duration: float,
        error: BaseException | None = None,
    ) -> None:
        """Log the end of a run and how long it took."""
        if error is None:
            self.logger.log(
                self.level, "cadence %r finished in %.3f ms", cadence_name, duration * 1e3
            )
        else:
            self.logger.log(
                self.level,
                "cadence %r failed after %.3f ms: %s",
                cadence_name,
                duration * 1e3,
                type(error).__name__,
            )

    def before_beat(self, beat_name: str, context: Context) -> None:
        """Log the start of a beat."""
        self.logger.log(self.level, "beat %r started", beat_name)

    def after_beat(
        self,
        beat_name: str,
        context: Context,
        duration: float,
        error: BaseException | None = None,
    ) -> None:
        """Log the end of a beat and how long it took."""
        outcome = "finished" if error is None else f"ended by {type(error).__name__}"
        self.logger.log(self.level, "beat %r %s in %.3f ms", beat_name, outcome, duration * 1e3)

    def on_error(self, beat_name: str, context: Context, error: Exception) -> None:
        """Log a beat's failure with its traceback."""
        self.logger.error("beat %r failed: %s", beat_name, error, exc_info=error)


@dataclass
class RunTimings:
    """The timings of one run, as `TimingHooks` records them.

    Attributes:
        cadence_name: The cadence that ran.
        beats: Seconds per beat, by beat name (path for nested beats), in completion order.
        total: Seconds for the whole run (`None` while it is running).
        error: What ended the run, if anything did.

    """

    cadence_name: str
    beats: dict[str, float] = field(default_factory=dict[str, float])
    total: float | None = None
    error: BaseException | None = None


class TimingHooks(CadenceHooks[Context]):
    """Record how long each beat and each run takes, run by run.

    Runs are told apart even when one cadence runs concurrently: each run's beats go to that
    run's `RunTimings`. Completed runs are kept in `runs`, newest last, up to `keep` of them.
    """

    def __init__(self, keep: int = 100) -> None:
        """Keep the timings of the last `keep` completed runs."""
        if keep < 1:
            raise ValueError(f"TimingHooks: keep must be >= 1, got {keep}")
        self.runs: deque[RunTimings] = deque(maxlen=keep)
        self._current: contextvars.ContextVar[tuple[RunTimings, ...]] = contextvars.ContextVar(
            f"cadence_timing_hooks_{id(self)}", default=()
        )

    @property
    def last(self) -> RunTimings | None:
        """The most recently completed run, if any."""
        return self.runs[-1] if self.runs else None

    def before_cadence(self, cadence_name: str, context: Context) -> None:
        """Open the timings of a run."""
        self._current.set((*self._current.get(), RunTimings(cadence_name)))

    def after_cadence(
        self,
        cadence_name: str,
        context: Context,
        duration: float,
        error: BaseException | None = None,
    ) -> None:
        """Close the timings of a run and keep them."""
        stack = self._current.get()
        if not stack:
            return
        timings = stack[-1]
        timings.total = duration
        timings.error = error
        self._current.set(stack[:-1])
        self.runs.append(timings)

    def after_beat(
        self,
        beat_name: str,
        context: Context,
        duration: float,
        error: BaseException | None = None,
    ) -> None:
        """Record a beat's duration in the current run."""
        stack = self._current.get()
        if stack:
            stack[-1].beats[beat_name] = duration


class ReporterHooks(CadenceHooks[C]):
    """Adapt a reporter function to hooks: it hears of every beat's end."""

    def __init__(self, report: Reporter[C]) -> None:
        self.report = report

    def after_beat(
        self,
        beat_name: str,
        context: C,
        duration: float,
        error: BaseException | None = None,
    ) -> Awaitable[None] | None:
        """Report the beat's name, elapsed seconds and context."""
        return self.report(beat_name, duration, context)

    def __repr__(self) -> str:
        return f"reporter {self.report!r}"


_NO_OPS = {method: getattr(CadenceHooks, method) for method in HOOK_METHODS}


def _live(hooks: object, method: str) -> bool:
    """Return whether `hooks` has `method` of its own (not missing, not the inherited no-op)."""
    on_class = getattr(type(hooks), method, None)
    if on_class is None:
        return getattr(hooks, method, None) is not None  # set on the instance, or missing
    return on_class is not _NO_OPS[method]


PARALLEL_STARTS_ONLY = "__cadence_parallel_starts_only__"
"""A hooks object with this attribute true is told `before_beat` of parallel beats only.

An observer that needs a beat's start only to tell parallel beats apart (a metrics reporter:
a sequential beat is the one its run's context is in) saves a hook call per sequential beat.
"""


def _parallel_starts_only(call: Call) -> bool:
    return getattr(call[0], PARALLEL_STARTS_ONLY, False) is True


Entry: TypeAlias = tuple[str, object]
"""A hooks object, with the prefix the beat names it hears of get (`""` for its own cadence)."""

Call: TypeAlias = tuple[object, Callable[..., object], str, bool, str]
"""One live hook method, resolved once: (hooks, bound method, prefix, is async, method name)."""


def _call_of(entry: Entry, method: str) -> Call:
    prefix, hooks = entry
    function: Callable[..., object] = getattr(hooks, method)
    return (hooks, function, prefix, inspect.iscoroutinefunction(function), method)


def _raised(call: Call, error: Exception) -> None:
    """Log the failure of `call`; the run goes on."""
    hooks, method = type(call[0]).__qualname__, call[4]
    logger.error("hook %s.%s raised; the run goes on", hooks, method, exc_info=error)


async def _finish(call: Call, pending: object, name: str, rest: tuple[object, ...]) -> None:
    """Make `call` (unless `pending` is its result already) and await what it returned."""
    try:
        if pending is None:
            pending = call[1](call[2] + name, *rest)
            if pending is None or not inspect.isawaitable(pending):
                return
        await cast("Awaitable[object]", pending)
    except Exception as failure:  # noqa: BLE001 # a hook's failure is logged, never the run's
        _raised(call, failure)


def open_calls(
    calls: Sequence[Call], name: str, context: object, told: list[Call]
) -> Awaitable[None] | None:
    """Call a `before_*` method on each entry in order, adding to `told` each one started.

    Sync methods are called inline; the first async one (or awaitable result) hands the rest
    to a coroutine, returned for the caller to await (`None` when all is done). A cancellation
    stops the calls: those started (the one cancelled while it was awaiting included) are in
    `told`, and each gets its `after_*`.
    """
    for call in calls:
        told.append(call)
        _, function, prefix, is_async, _ = call
        if is_async:
            return _open_rest(calls, _index(calls, call), None, name, (context,), told)
        try:
            result = function(prefix + name, context)
        except Exception as failure:  # noqa: BLE001 # a hook's failure is logged, never the run's
            _raised(call, failure)
            continue
        if result is not None and inspect.isawaitable(result):
            return _open_rest(calls, _index(calls, call), result, name, (context,), told)
    return None


def _index(calls: Sequence[Call], call: Call) -> int:
    # Found again only when a hook goes async (rare): an enumerate on every call costs more.
    return next(index for index, each in enumerate(calls) if each is call)


async def _open_rest(  # noqa: PLR0917 # the state of open_calls, handed on
    calls: Sequence[Call],
    index: int,
    pending: object,
    name: str,
    rest: tuple[object, ...],
    told: list[Call],
) -> None:
    await _finish(calls[index], pending, name, rest)
    later = open_calls(calls[index + 1 :], name, rest[0], told)
    if later is not None:
        await later


def close_calls(
    calls: Sequence[Call], name: str, rest: tuple[object, ...], *, shield: bool
) -> Awaitable[None] | None:
    """Call an `after_*` method on each entry; a cancellation never makes one miss its call.

    `calls` come in the reverse order of the `before_*` calls, as nested context managers
    close, so hooks that set context (a tracer's current span) unwind it in order. Sync methods
    are called inline (no cancellation can reach them); from the first async one on, the rest
    go to a coroutine, returned for the caller to await. With `shield`, every awaited call is
    shielded from cancellation (the run is being cancelled); otherwise a cancellation arriving
    during one call lets the others run shielded, then propagates.
    """
    for call in calls:
        _, function, prefix, is_async, _ = call
        if is_async:
            return _close_rest(calls, _index(calls, call), None, name, rest, shield=shield)
        try:
            result = function(prefix + name, *rest)
        except Exception as failure:  # noqa: BLE001 # a hook's failure is logged, never the run's
            _raised(call, failure)
            continue
        if result is not None and inspect.isawaitable(result):
            return _close_rest(calls, _index(calls, call), result, name, rest, shield=shield)
    return None


def close_ends(  # close_calls for the after_* arguments, unpacked: cheaper on the hot path
    calls: Sequence[Call],
    name: str,
    context: object,
    duration: float,
    error: BaseException | None,
    *,
    shield: bool,
) -> Awaitable[None] | None:
    """Call `after_beat` or `after_cadence` on each entry, as `close_calls` does."""
    for call in calls:
        _, function, prefix, is_async, _ = call
        if is_async:
            rest = (context, duration, error)
            return _close_rest(calls, _index(calls, call), None, name, rest, shield=shield)
        try:
            result = function(prefix + name, context, duration, error)
        except Exception as failure:  # noqa: BLE001 # a hook's failure is logged, never the run's
            _raised(call, failure)
            continue
        if result is not None and inspect.isawaitable(result):
            rest = (context, duration, error)
            return _close_rest(calls, _index(calls, call), result, name, rest, shield=shield)
    return None


async def _close_rest(  # the state of close_calls, handed on
    calls: Sequence[Call],
    index: int,
    pending: object,
    name: str,
    rest: tuple[object, ...],
    *,
    shield: bool,
) -> None:
    if shield:
        with CancelScope(shield=True):
            await _finish(calls[index], pending, name, rest)
            later = close_calls(calls[index + 1 :], name, rest, shield=True)
            if later is not None:
                await later
        return
    try:
        await _finish(calls[index], pending, name, rest)
    except BaseException:
        with CancelScope(shield=True):
            later = close_calls(calls[index + 1 :], name, rest, shield=True)
            if later is not None:
                await later
        raise
    later = close_calls(calls[index + 1 :], name, rest, shield=False)
    if later is not None:
        await later


async def _then(
    pending: Awaitable[None], calls: Sequence[Call], name: str, rest: tuple[object, ...]
) -> None:
    await pending
    later = close_calls(calls, name, rest, shield=False)
    if later is not None:
        await later


def _owed(calls: tuple[Call, ...], told: int, started: tuple[Call, ...]) -> tuple[Call, ...]:
    """Return the `calls` owed: those of hooks whose `before` call (if any) was made.

    The `before` calls go in order, so the first `told` of `started` were made.
    """
    if told == len(started):
        return calls
    missed = started[told:]
    return tuple(c for c in calls if not any(c[0] is m[0] for m in missed))


class Observers:
    """The hooks observing one run: each with the path prefix its beat names get.

    Each live hook method is resolved once, here: its bound method and whether it is async,
    in call order (`before_*`) or reverse call order (`after_*`, `on_error`). `parallel` is
    the same observers for the beats of a `sync` step: `before_beat` there also goes to the
    hooks told of parallel starts only (`PARALLEL_STARTS_ONLY`).
    """

    __slots__ = (
        "_children",
        "after_beat",
        "after_cadence",
        "before_beat",
        "before_cadence",
        "entries",
        "on_error",
        "parallel",
        "shared_ends",
        "watches_beats",
    )

    def __init__(self, entries: Sequence[Entry], *, parallel: bool = False) -> None:
        self.entries = tuple(entries)

        def calls(method: str, *, reverse: bool = False) -> tuple[Call, ...]:
            found = tuple(_call_of(e, method) for e in self.entries if _live(e[1], method))
            return found[::-1] if reverse else found

        self.before_cadence = calls("before_cadence")
        self.after_cadence = calls("after_cadence", reverse=True)
        starts = calls("before_beat")
        self.before_beat = (
            starts if parallel else tuple(c for c in starts if c[2] or not _parallel_starts_only(c))
        )  # an outer cadence's hooks (with a prefix) are told a child's beats: not their run's
        self.parallel: Observers = (
            self if len(self.before_beat) == len(starts) else Observers(self.entries, parallel=True)
        )
        self.after_beat = calls("after_beat", reverse=True)
        self.on_error = calls("on_error", reverse=True)
        # Whether a hook told of parallel starts only shares a beat's end with other hooks,
        # whose code (a listener's retried client) runs after it: the runner forgets what
        # they noticed (`forget_unnamed`), which no beat did.
        quiet = {id(c[0]) for c in starts if _parallel_starts_only(c) and (parallel or not c[2])}
        self.shared_ends = bool(quiet) and any(
            id(c[0]) not in quiet for c in (*self.after_beat, *self.on_error)
        )
        # Whether any hook hears of beats: if none does, the beats take the unobserved path.
        self.watches_beats = bool(self.before_beat or self.after_beat or self.on_error)
        # Each child run's observers, kept by prefix and the child's own hooks (held, so the
        # id is never reused while kept).
        self._children: dict[tuple[str, int], tuple[Sequence[object], Observers | None]] = {}

    def nested(self, prefix: str, own: Sequence[object]) -> Observers | None:
        """Return the observers of a child run: these, under `prefix`, plus the child's own.

        A hooks object attached to both the parent and the child hears of each child beat
        once, as the child's own (so a `TimingHooks` files it under the child's run). The
        result is kept, per prefix, for the next run of the same child.
        """
        key = (prefix, id(own))
        kept = self._children.get(key)
        if kept is not None and kept[0] is own:
            return kept[1]
        entries = [
            (outer + prefix, hooks)
            for outer, hooks in self.entries
            if not any(hooks is mine for mine in own)
        ]
        entries.extend(("", hooks) for hooks in own)
        nested = Observers(entries) if entries else None
        if len(self._children) < _KEEP_CHILDREN:
            self._children[key] = (own, nested)
        return nested

    def start_cadence(self, name: str, context: object, told: list[Call]) -> Awaitable[None] | None:
        """Tell the observers a run starts; return what is left to await, if anything."""
        return open_calls(self.before_cadence, name, context, told)

    def end_cadence(
        self,
        told: list[Call],
        name: str,
        context: object,
        duration: float,
        error: BaseException | None,
    ) -> Awaitable[None] | None:
        """Tell the observers owed it that a run ended; return what is left to await."""
        owed = _owed(self.after_cadence, len(told), self.before_cadence)
        cancelled = error is not None and not isinstance(error, Exception)
        return close_ends(owed, name, context, duration, error, shield=cancelled)

    def end_beat(
        self,
        told: Sequence[Call],
        path: str,
        context: object,
        duration: float,
        error: BaseException | None,
    ) -> Awaitable[None] | None:
        """Tell the observers owed it that a beat ended, and of its failure if it failed.

        Return what is left to await (`None` when every hook was sync and is done).
        """
        ended = self.after_beat
        if len(told) != len(self.before_beat):
            ended = _owed(ended, len(told), self.before_beat)
        if error is None:
            return close_ends(ended, path, context, duration, None, shield=False) if ended else None
        if not isinstance(error, Exception):
            return close_ends(ended, path, context, duration, error, shield=True)
        pending = close_ends(ended, path, context, duration, error, shield=False)
        failed = _owed(self.on_error, len(told), self.before_beat)
        if not failed:
            return pending
        if pending is None:
            return close_calls(failed, path, (context, error), shield=False)
        return _then(pending, failed, path, (context, error))


_KEEP_CHILDREN = 64
