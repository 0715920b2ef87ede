"""`Cadence[C]`: an immutable, typed plan of beats over one context type."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Generic, Literal, TypeAlias, TypeVar, cast, get_args, overload

import anyio

from cadence._beat import Beat, BeatSpec, Condition, is_async_callable, resolve_beat
from cadence._context import Context, check_context_class
from cadence._errors import CadenceDefinitionError, CadenceError
from cadence._events import EventHooks, EventListener, Observer
from cadence._hooks import HOOK_METHODS, CadenceHooks, Observers, Reporter, ReporterHooks
from cadence._isolation import copy_template
from cadence._merge import MergeStrategy, fail_on_conflict
from cadence._run import execute
from cadence._steps import Child, Split, Step, Sync, Then

if TYPE_CHECKING:
    from typing import Self

    from cadence.durable import Migration, Store

__all__ = ["Cadence", "ErrorHandler"]

C = TypeVar("C", bound=Context)
ChildC = TypeVar("ChildC", bound=Context)

ErrorHandler: TypeAlias = Callable[[C, CadenceError], Awaitable[None] | None]
"""`handler(context, error)`, sync or async, given every failure of a step."""


class Cadence(Generic[C]):
    """An immutable plan of beats over context type `C`.

    Builder methods return a new cadence and leave this one unchanged, so one definition can be
    shared by concurrent runs and extended in several ways.

    Give the context as a template instance, `Cadence("checkout", Order())`, or declare only
    its class, `Cadence("checkout", context_type=Order)`; then every run is given its context.
    A bare `Cadence("checkout")` is rejected by the type checkers (it would leave `C` unknown).

    Args:
        name: The cadence's name, used in errors, hooks and diagrams.
        context: The template context; `run()` without an argument runs on a fresh deep copy.
        context_type: The context class, for a cadence without a template.

    Raises:
        CadenceDefinitionError: the name is empty, the context (or context class) is not a
            dataclass `Context`, or both a template and a class are given.

    """

    __slots__ = (
        "__orig_class__",  # set by `Cadence[Ctx](...)` at run time: the declared context class
        "_context",
        "_context_type",
        "_error_handler",
        "_hooks",
        "_name",
        "_observers",
        "_plan_watched",
        "_step_names",
        "_steps",
        "_stop_on_error",
    )

    _name: str
    _context: C | None
    _context_type: type[C] | None
    _steps: tuple[Step, ...]
    _step_names: frozenset[str]
    _hooks: tuple[object, ...]
    _observers: Observers | None
    _error_handler: ErrorHandler[C] | None
    _stop_on_error: bool
    _plan_watched: bool

    @overload
    def __init__(self, name: str, context: C) -> None: ...
    @overload
    def __init__(self, name: str, *, context_type: type[C]) -> None: ...
    def __init__(
        self, name: str, context: C | None = None, *, context_type: type[C] | None = None
    ) -> None:
        if not isinstance(cast("object", name), str) or not name.strip():
            raise CadenceDefinitionError(
                f"Cadence: the name must be a non-empty string, got {name!r}"
            )
        if context is not None and context_type is not None:
            raise CadenceDefinitionError(
                f"cadence {name!r}: give a template context or a context_type, not both"
            )
        if context is not None:
            check_context_class(type(context), f"cadence {name!r}")
            context_type = type(context)
        elif context_type is not None:
            declared = cast("object", context_type)
            if not (isinstance(declared, type) and issubclass(declared, Context)):
                raise CadenceDefinitionError(
                    f"cadence {name!r}: context_type must be a Context subclass, got "
                    f"{context_type!r}"
                )
            check_context_class(context_type, f"cadence {name!r}")
        self._name = name
        self._context = context
        self._context_type = context_type
        self._steps = ()
        self._step_names = frozenset()
        self._hooks = ()
        self._observers = None
        self._error_handler = None
        self._stop_on_error = True
        self._plan_watched = False

    # ----------------------------------------------------------------- reading the plan

    @property
    def name(self) -> str:
        """The cadence's name."""
        return self._name

    @property
    def context(self) -> C | None:
        """The template context (never run on directly), or `None`."""
        return self._context

    @property
    def context_type(self) -> type[C] | None:
        """The context class: the template's, the declared `context_type`, or `None`.

        `Cadence[Order]("name")` (rejected by the type checkers, accepted at run time) records
        `Order` too; only an untyped bare `Cadence("name")` has none.
        """
        if self._context_type is not None:
            return self._context_type
        declared = getattr(self, "__orig_class__", None)
        args = get_args(declared)
        if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], Context):
            return cast("type[C]", args[0])
        return None

    @property
    def steps(self) -> tuple[Step, ...]:
        """The steps, in order."""
        return self._steps

    @property
    def hooks(self) -> tuple[object, ...]:
        """The hooks attached to this cadence, reporters included, in attachment order."""
        return self._hooks

    @property
    def observers(self) -> Observers | None:
        """The hooks as the runner walks them (`None` when there are none)."""
        return self._observers

    @property
    def error_handler(self) -> ErrorHandler[C] | None:
        """The handler given to `on_error`, if any."""
        return self._error_handler

    @property
    def stop_on_error(self) -> bool:
        """Whether a failed step stops the run after the error handler has seen it."""
        return self._stop_on_error

    def __repr__(self) -> str:
        steps = ", ".join(f"{type(s).__name__.lower()} {s.name!r}" for s in self._steps)
        return f"Cadence({self._name!r}, steps=[{steps}])"

    # ----------------------------------------------------------------- building

    def then(self, name: str, beat: Beat[C]) -> Self:
        """Return a cadence that also runs `beat` after the steps so far.

        Raises:
            CadenceDefinitionError: the name is empty or taken, or `beat` is not callable.

        """
        where = self._check_name(name, "then")
        return self._add(Then(name, resolve_beat(beat, name, where)))

    def sync(
        self,
        name: str,
        beats: Sequence[Beat[C]],
        *,
        merge: MergeStrategy = fail_on_conflict,
    ) -> Self:
        """Return a cadence that also runs `beats` in parallel, each on its own copy.

        After all finish, the fields they changed are merged back; fields changed to different
        values go to `merge` (default: `fail_on_conflict`). If a beat fails, the others are
        cancelled and nothing is merged.

        Raises:
            CadenceDefinitionError: the name is empty or taken, `beats` is empty or holds a
                non-callable or two beats of one name, or `merge` is not callable.

        """
        where = self._check_name(name, "sync")
        specs = self._resolve_group(beats, where, "beats")
        if not specs:
            raise CadenceDefinitionError(f"{where}: beats must not be empty")
        if not callable(merge):
            raise CadenceDefinitionError(
                f"{where}: merge must be a merge strategy (a function of a FieldConflict), "
                f"got {type(merge).__qualname__} {merge!r}"
            )
        return self._add(Sync(name, specs, merge))

    def split(
        self,
        name: str,
        condition: Condition[C],
        if_true: Beat[C] | Sequence[Beat[C]],
        if_false: Beat[C] | Sequence[Beat[C]] | None = None,
    ) -> Self:
        """Return a cadence that also runs `if_true` or `if_false`, as `condition` decides.

        Each branch is one beat or a list run in order; `if_false` may be left out.

        Raises:
            CadenceDefinitionError: the name is empty or taken, the condition is not callable,
                or a branch is empty or holds a non-callable or two beats of one name.

        """
        where = self._check_name(name, "split")
        if not callable(condition):
            raise CadenceDefinitionError(
                f"{where}: condition must be callable, got {type(condition).__qualname__} "
                f"{condition!r}"
            )
        true_specs = self._resolve_group(if_true, where, "if_true")
        if not true_specs:
            raise CadenceDefinitionError(f"{where}: if_true must not be empty")
        false_specs = () if if_false is None else self._resolve_group(if_false, where, "if_false")
        return self._add(
            Split(name, condition, is_async_callable(condition), true_specs, false_specs)
        )

    def child(
        self,
        name: str,
        cadence: Cadence[ChildC],
        merge: Callable[[C, ChildC], Awaitable[C | None] | C | None],
        *,
        context: Callable[[C], ChildC] | None = None,
    ) -> Self:
        """Return a cadence that also runs `cadence` as a nested step, then `merge(parent, child)`.

        The child runs on `context(parent)` if given, else on a fresh copy of its own template.
        Its beats are reported to this cadence's hooks as `name.beat`.

        Raises:
            CadenceDefinitionError: the name is empty or taken, `cadence` is not a `Cadence`,
                `merge` or `context` is not callable, or the child has no context to run on.

        """
        where = self._check_name(name, "child")
        if not isinstance(cast("object", cadence), Cadence):
            raise CadenceDefinitionError(
                f"{where}: expected a Cadence to run as a child, got "
                f"{type(cadence).__qualname__} {cadence!r}"
            )
        if not callable(merge):
            raise CadenceDefinitionError(
                f"{where}: merge must be a function merge(parent, child), got "
                f"{type(merge).__qualname__} {merge!r}"
            )
        if context is not None and not callable(context):
            raise CadenceDefinitionError(
                f"{where}: context must be a function of the parent context, got "
                f"{type(context).__qualname__} {context!r}"
            )
        if context is None and cadence.context is None:
            raise CadenceDefinitionError(
                f"{where}: child cadence {cadence.name!r} has no template context; give it one "
                "or pass context=lambda parent: ... to build it from the parent"
            )
        return self._add(Child(name, cadence, merge, is_async_callable(merge), context))

    def on_error(self, handler: ErrorHandler[C], stop: bool = True) -> Self:
        """Return a cadence whose failed steps go to `handler(context, error)`.

        The handler applies to every step, wherever `on_error` stands in the chain; a later
        call replaces it. With `stop=True` the error propagates after the handler; with
        `stop=False` the run goes on with the next step. Cancellation never reaches it.

        Raises:
            CadenceDefinitionError: `handler` is not callable.

        """
        if not callable(handler):
            raise CadenceDefinitionError(
                f"cadence {self._name!r}, on_error: the handler must be callable, got "
                f"{type(handler).__qualname__} {handler!r}"
            )
        new = self._copy()
        new._error_handler = handler
        new._stop_on_error = bool(stop)
        return new

    def with_hooks(self, hooks: CadenceHooks[C] | Sequence[CadenceHooks[C]]) -> Self:
        """Return a cadence observed by `hooks` (one object or a list), after any it already has.

        Raises:
            CadenceDefinitionError: an object has none of the hook methods.

        """
        added = list(hooks) if isinstance(hooks, Sequence) else [hooks]
        for h in added:
            if not any(callable(getattr(h, m, None)) for m in HOOK_METHODS):
                raise CadenceDefinitionError(
                    f"cadence {self._name!r}, with_hooks: {h!r} has none of the hook methods "
                    f"({', '.join(HOOK_METHODS)})"
                )
        return self._with_all_hooks((*self._hooks, *added))

    def with_reporter(self, reporter: Reporter[C]) -> Self:
        """Return a cadence that calls `reporter(beat_name, elapsed, context)` after every beat.

        Raises:
            CadenceDefinitionError: `reporter` is not callable.

        """
        if not callable(reporter):
            raise CadenceDefinitionError(
                f"cadence {self._name!r}, with_reporter: the reporter must be callable, got "
                f"{type(reporter).__qualname__} {reporter!r}"
            )
        # A reporter bound to an object that observes whole runs (cadence.reporters) offers
        # full hooks: its spans and timers must open before each beat (docs/design.md).
        attach = getattr(reporter, "__cadence_attach__", None)
        hooks = attach(self) if callable(attach) else ReporterHooks(reporter)
        return self._with_all_hooks((*self._hooks, hooks))

    def with_listener(self, listener: EventListener) -> Self:
        """Return a cadence that hands every event of its runs to `listener(event)`.

        The listener (sync or async) receives frozen `CadenceEvent` records: runs and beats
        starting and ending, retries, fallbacks, timeouts, breaker changes, merge conflicts.
        One that raises is logged on the `cadence` logger and the run goes on.

        Raises:
            CadenceDefinitionError: `listener` is not callable.

        """
        if not callable(listener):
            raise CadenceDefinitionError(
                f"cadence {self._name!r}, with_listener: the listener must be callable, got "
                f"{type(listener).__qualname__} {listener!r}"
            )
        hooks = EventHooks(listener)
        new = self._with_all_hooks((*self._hooks, hooks))
        hooks.watch(new)
        return new

    # ----------------------------------------------------------------- running

    async def run(
        self,
        context: C | None = None,
        *,
        run_id: str | None = None,
        store: Store | None = None,
        migration: Migration | None = None,
    ) -> C:
        """Run the cadence and return the final context.

        With `context`, the run mutates it in place (and returns it, or the new context an
        immutable-context beat returned). Without, it runs on a fresh deep copy of the template.
        With `run_id` and `store`, the run is durable (see `cadence.durable`): it commits after
        every step, resumes where a crashed run stopped, and returns a completed run's result.

        Raises:
            BeatError: a beat failed (its exception is the `__cause__`).
            BeatErrorGroup: several parallel beats failed.
            MergeConflictError: parallel beats changed one field to different values.
            CadenceDefinitionError: there is no context to run on.

        """
        if context is None:
            context = self.fresh_context()
        elif not isinstance(cast("object", context), Context):
            raise CadenceDefinitionError(
                f"cadence {self._name!r}: run() needs a Context, got "
                f"{type(context).__qualname__} {context!r}"
            )
        if store is not None or run_id is not None:
            from cadence.durable._runner import run_durable  # noqa: PLC0415 # loaded on first durable run

            return await run_durable(self, context, run_id, store, migration)
        return await execute(self, context, None)

    def run_sync(
        self,
        context: C | None = None,
        *,
        backend: Literal["asyncio", "trio"] = "asyncio",
        run_id: str | None = None,
        store: Store | None = None,
        migration: Migration | None = None,
    ) -> C:
        """Run the cadence from synchronous code, on a new event loop of `backend`.

        It takes the same `context` as `run` and raises the same errors; `backend="trio"`
        needs trio installed.

        Raises:
            BeatError: a beat failed (its exception is the `__cause__`).
            BeatErrorGroup: several parallel beats failed.
            MergeConflictError: parallel beats changed one field to different values.
            CadenceDefinitionError: there is no context to run on.

        """
        if _in_event_loop():
            raise CadenceError(
                f"cadence {self._name!r}: run_sync() was called inside a running event loop; "
                "use `await cadence.run(...)` there (run_sync is for synchronous code)"
            )
        run = functools.partial(self.run, run_id=run_id, store=store, migration=migration)
        return anyio.run(run, context, backend=backend)

    def fresh_context(self) -> C:
        """Return a fresh deep copy of the template context (shared fields handed over as is).

        Raises:
            CadenceDefinitionError: the cadence has no template.
            ContextCopyError: a field that is not marked `Shared[...]` cannot be copied.

        """
        if self._context is None:
            raise CadenceDefinitionError(
                f"cadence {self._name!r} has no template context; pass one to run(...) or to "
                "Cadence(name, context)"
            )
        return copy_template(self._context, self._name)

    # ----------------------------------------------------------------- internals

    def _copy(self) -> Self:
        new = object.__new__(type(self))
        for slot in Cadence.__slots__:
            if slot == "__orig_class__":
                continue  # read through `context_type`, which the copy gets below
            object.__setattr__(new, slot, object.__getattribute__(self, slot))
        new._plan_watched = False  # a new plan: its reporters prepare for it at its first run
        object.__setattr__(new, "_context_type", self.context_type)
        return new

    def watch_plan(self) -> None:
        """Let plan-watching hooks (the reporters) prepare for the whole plan, once.

        A reporter attached before the steps (as `with_reporter` usually is) sees the finished
        plan here, at the first run, and creates the zero series of every beat.
        """
        if self._plan_watched:
            return
        self._plan_watched = True
        for hooks in self._hooks:
            if isinstance(hooks, Observer):
                hooks.watch(self)

    def _with_all_hooks(self, hooks: tuple[object, ...]) -> Self:
        new = self._copy()
        new._hooks = hooks
        new._observers = Observers([("", h) for h in hooks]) if hooks else None
        return new

    def _add(self, step: Step) -> Self:
        new = self._copy()
        new._steps = (*self._steps, step)
        new._step_names = self._step_names | {step.name}
        return new

    def _check_name(self, name: object, method: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise CadenceDefinitionError(
                f"cadence {self._name!r}, {method}: the step name must be a non-empty string, "
                f"got {name!r}"
            )
        where = f"cadence {self._name!r}, step {name!r} ({method})"
        if name in self._step_names:
            raise CadenceDefinitionError(f"{where}: a step named {name!r} already exists")
        return where

    @staticmethod
    def _resolve_group(beats: object, where: str, argument: str) -> tuple[BeatSpec, ...]:
        # Taken before the checks below narrow `beats` to types with unknown parts.
        single = callable(beats)
        members: Sequence[object] = (beats,) if single else cast("Sequence[object]", beats)
        if isinstance(beats, str | bytes) or not (single or isinstance(beats, Sequence)):
            raise CadenceDefinitionError(
                f"{where}: {argument} must be a beat or a list of beats, got "
                f"{type(beats).__qualname__} {beats!r}"
            )
        specs = tuple(
            resolve_beat(b, None, f"{where}, {argument}[{i}]") for i, b in enumerate(members)
        )
        seen: dict[str, int] = {}
        for i, spec in enumerate(specs):
            if spec.name in seen:
                raise CadenceDefinitionError(
                    f"{where}: {argument}[{seen[spec.name]}] and {argument}[{i}] are both named "
                    f"{spec.name!r}; name them apart with @beat(name=...)"
                )
            seen[spec.name] = i
        return specs


def _in_event_loop() -> bool:
    """Return whether this thread is running an asyncio or trio event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return True
    trio = sys.modules.get("trio")
    return trio is not None and bool(trio.lowlevel.in_trio_run())
