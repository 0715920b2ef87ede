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
from typing import Protocol, TypeAlias, TypeVar

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


async def _call(hooks: object, method: str, args: tuple[object, ...]) -> None:
    function = getattr(hooks, method, None)
    if function is None:
        return
    try:
        result = function(*args)
        if result is not None and inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("hook %s.%s raised; the run goes on", type(hooks).__qualname__, method)


Entry: TypeAlias = tuple[str, object]
"""A hooks object, with the prefix the beat names it hears of get (`""` for its own cadence)."""


async def open_calls(
    entries: Sequence[Entry], method: str, name: str, rest: tuple[object, ...], told: list[Entry]
) -> None:
    """Call a `before_*` method on each entry in order, adding to `told` each one started.

    A cancellation stops the loop: the entries whose call started (the one cancelled while it
    was awaiting included) are in `told`, and each gets its `after_*`.
    """
    for entry in entries:
        prefix, hooks = entry
        told.append(entry)
        await _call(hooks, method, (prefix + name, *rest))


async def close_calls(
    entries: Sequence[Entry], method: str, name: str, rest: tuple[object, ...], *, shield: bool
) -> None:
    """Call an `after_*` method on each entry; a cancellation never makes one miss its call.

    The calls go in the reverse order of the `before_*` calls, as nested context managers
    close, so hooks that set context (a tracer's current span) unwind it in order. With
    `shield`, every call is shielded from cancellation (the run is being cancelled); otherwise
    a cancellation arriving during one call lets the others run shielded, then propagates.
    """
    if not entries:
        return
    entries = entries[::-1]
    if shield:
        with CancelScope(shield=True):
            for prefix, hooks in entries:
                await _call(hooks, method, (prefix + name, *rest))
        return
    for index, (prefix, hooks) in enumerate(entries):
        try:
            await _call(hooks, method, (prefix + name, *rest))
        except BaseException:
            with CancelScope(shield=True):
                for later_prefix, later in entries[index + 1 :]:
                    await _call(later, method, (later_prefix + name, *rest))
            raise


class Observers:
    """The hooks observing one run: each with the path prefix its beat names get."""

    __slots__ = ("entries", "live")

    def __init__(self, entries: Sequence[Entry]) -> None:
        self.entries = tuple(entries)
        # Which hooks have each method of their own, resolved once rather than on every beat.
        self.live = {
            method: tuple(e for e in self.entries if _live(e[1], method)) for method in HOOK_METHODS
        }

    def nested(self, prefix: str, own: Sequence[object]) -> Observers | None:
        """Return the observers of a child run: these, under `prefix`, plus the child's own.

        A hooks object attached to both the parent and the child hears of each child beat
        once, as the child's own (so a `TimingHooks` files it under the child's run).
        """
        entries = [
            (outer + prefix, hooks)
            for outer, hooks in self.entries
            if not any(hooks is mine for mine in own)
        ]
        entries.extend(("", hooks) for hooks in own)
        return Observers(entries) if entries else None

    def owed(self, method: str, before: str, told: Sequence[Entry]) -> tuple[Entry, ...]:
        """Return the entries owed a `method` call: those whose `before` call was not cut short.

        An entry with a `before` method of its own is owed its `after` only if it was told
        (a cancellation may stop the `before` calls part way).
        """
        live = self.live[method]
        started = self.live[before]
        if len(told) == len(started):
            return live
        missed = [e for e in started if not any(e is t for t in told)]
        return tuple(e for e in live if not any(e is m for m in missed))

    async def after_beat(
        self,
        told: Sequence[Entry],
        path: str,
        context: object,
        duration: float,
        error: BaseException | None,
    ) -> None:
        """Tell the observers owed it that a beat ended, and of its failure if it failed."""
        cancelled = error is not None and not isinstance(error, Exception)
        ended = self.owed("after_beat", "before_beat", told)
        await close_calls(ended, "after_beat", path, (context, duration, error), shield=cancelled)
        if isinstance(error, Exception):
            failed = self.owed("on_error", "before_beat", told)
            await close_calls(failed, "on_error", path, (context, error), shield=False)
