"""The runner: walks a cadence's steps over one context, on anyio (asyncio or trio).

The per-beat path is the hottest code in the library. A cadence with no hooks and no reporters
takes the plain path: an async `then` beat is one call and one await.
"""

from __future__ import annotations

import contextvars
import copy
import inspect
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import anyio.lowlevel
import anyio.to_thread

from cadence._context import Context, context_info, is_frozen
from cadence._errors import (
    BeatError,
    BeatErrorGroup,
    CadenceError,
    MergeConflictError,
    RunStoppedError,
)
from cadence._events import forget_unnamed, tell_handled_conflict
from cadence._hooks import Call, Observers, open_calls
from cadence._isolation import DELETED, FingerprintCache, open_branches
from cadence._merge import merge_branches
from cadence._steps import Child, Split, Sync, Then

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping

    from cadence._beat import BeatSpec
    from cadence._cadence import Cadence
    from cadence._steps import Step

__all__ = ["execute", "run_step"]

C = TypeVar("C", bound=Context)


async def execute(
    cadence: Cadence[C],
    context: C,
    outer: Observers | None,
    walk: Callable[[Cadence[C], C, Observers | None], Awaitable[C]] | None = None,
) -> C:
    """Run `cadence` over `context`, observed by its own hooks and `outer` (a parent run's).

    `walk` replaces the walk over the steps (a durable run's, which commits after each).
    """
    run_steps = _run_steps if walk is None else walk
    own = cadence.observers
    if outer is None:
        observers = own
    else:
        observers = outer.nested("", cadence.hooks) if own is not None else outer
    if observers is not None and not observers.watches_beats:
        observers = None  # only run hooks: the beats go the unobserved way
    if own is None:
        return await run_steps(cadence, context, observers)
    cadence.watch_plan()
    name = cadence.name
    told: list[Call] = []
    start = perf_counter()
    try:
        if own.before_cadence:
            pending = own.start_cadence(name, context, told)
            if pending is not None:
                await pending
            forget_unnamed()  # what the run's start hooks noticed is no beat's
            start = perf_counter()
        context = await run_steps(cadence, context, observers)
    except BaseException as exc:
        pending = own.end_cadence(told, name, context, perf_counter() - start, exc)
        if pending is not None:
            await pending
        raise
    pending = own.end_cadence(told, name, context, perf_counter() - start, None)
    if pending is not None:
        await pending
    return context


async def _run_steps(cadence: Cadence[C], context: C, observers: Observers | None) -> C:
    for step in cadence.steps:
        if type(step) is not Then:
            context = await run_step(cadence, step, context, observers)
            continue
        # A `then` beat inline: with no observers an async beat is one call and one await.
        try:
            spec = step.beat
            if observers is None and spec.is_async:
                result = await spec.fn(context)
                if result is not None:
                    context = _next_context(context, result, spec.name)
            elif observers is None and not spec.in_thread:  # a sync beat cheap enough
                result = spec.fn(context)
                if result is not None:
                    if inspect.isawaitable(result):
                        result = await result
                    context = _next_context(context, result, spec.name)
            else:
                context = await _invoke(spec, context, step.name, observers)
        except Exception as exc:  # noqa: BLE001 # every failure goes to _fail; cancellation is a BaseException and passes
            context = await _fail(cadence, step, context, exc, observers)
    return context


async def run_step(
    cadence: Cadence[C],
    step: Step,
    context: C,
    observers: Observers | None,
    child_walk: Callable[[Cadence[Any], Any, Observers | None], Awaitable[Any]] | None = None,
) -> C:  # Any: a child's walk is over the child's context type
    """Run one step of `cadence` as the plain walk does, its failure handed to `_fail`.

    `child_walk` walks a `child` step's cadence (a durable run's, which commits in it too).
    """
    try:
        if type(step) is Then:
            return await _invoke(step.beat, context, step.name, observers)
        if type(step) is Sync:
            return await _run_sync(cadence.name, step, context, observers)
        if type(step) is Split:
            return await _run_split(cadence.name, step, context, observers)
        return await _run_child(cadence.name, cast("Child", step), context, observers, child_walk)
    except Exception as exc:  # noqa: BLE001 # as in _run_steps: cancellation passes
        return await _fail(cadence, step, context, exc, observers)


async def _fail(
    cadence: Cadence[C], step: Step, context: C, exc: Exception, observers: Observers | None
) -> C:
    """Hand a failed step to the error handler; return the context to go on with, or raise."""
    if isinstance(exc, RunStoppedError):
        raise exc  # the run's own failure (its store's): no beat's, no handler's to recover
    if type(step) is Then or not isinstance(exc, CadenceError):
        error: CadenceError = BeatError(step.name, cadence.name, cause=exc)
    else:
        error = exc
    handler = cadence.error_handler
    if handler is not None:
        # A recovery never runs under a cancelled scope (as retry and fallback): cancel wins.
        await anyio.lowlevel.checkpoint_if_cancelled()
        try:
            outcome = handler(context, error)
            if inspect.isawaitable(outcome):
                await outcome
        finally:
            if observers is not None:
                forget_unnamed()  # the handler's own retries and fallbacks are no beat's
        if not cadence.stop_on_error:
            if isinstance(error, MergeConflictError):
                await tell_handled_conflict(error)
            return context
    raise error


def _next_context(context: C, result: object, beat_name: str) -> C:
    """Return the context after a beat that returned `result` (a new context replaces it)."""
    if not isinstance(result, Context):
        return context  # a beat's other return values (e.g. a fallback's default) are not state
    if isinstance(result, type(context)):
        return result  # the usual case: the same class (or, from a view, its copy)
    expected = context_info(type(context)).cls  # a parallel branch's view is a subclass
    if not isinstance(result, expected):
        raise CadenceError(
            f"beat {beat_name!r} returned a {type(result).__qualname__}; a beat returns None or "
            f"a new {expected.__qualname__}"
        )
    return cast("C", result)


async def _call_beat(spec: BeatSpec, context: C, path: str) -> C:
    fn = spec.fn
    if spec.is_async:
        result = await fn(context)
    else:
        result = await anyio.to_thread.run_sync(fn, context) if spec.in_thread else fn(context)
        if result is not None and inspect.isawaitable(result):
            result = await result
    return context if result is None else _next_context(context, result, path)


async def _invoke(spec: BeatSpec, context: C, path: str, observers: Observers | None) -> C:
    """Run one beat, telling `observers` (if any) of its start, end and failure."""
    if observers is None:
        return await _call_beat(spec, context, path)
    told: list[Call] = []
    start = perf_counter()
    try:
        if observers.before_beat:
            pending = open_calls(observers.before_beat, path, context, told)
            if pending is not None:
                await pending
            start = perf_counter()
        if spec.is_async:  # as _call_beat, inline: one coroutine less per observed beat
            result = await spec.fn(context)
            if result is not None:
                context = _next_context(context, result, path)
        else:
            context = await _call_beat(spec, context, path)
    except BaseException as exc:
        try:
            pending = observers.end_beat(told, path, context, perf_counter() - start, exc)
            if pending is not None:
                await pending
        finally:
            if observers.shared_ends:
                forget_unnamed()
        raise
    pending = observers.end_beat(told, path, context, perf_counter() - start, None)
    if pending is not None:
        await pending
    if observers.shared_ends:
        forget_unnamed()
    return context


async def _invoke_wrapped(
    spec: BeatSpec, context: C, path: str, observers: Observers | None, cadence_name: str
) -> C:
    """Run one beat of a `sync` or `split` step; its failure becomes a `BeatError` named by path."""
    try:
        return await _invoke(spec, context, path, observers)
    except Exception as exc:
        raise BeatError(path, cadence_name, cause=exc) from exc


async def _run_sync(cadence_name: str, step: Sync, context: C, observers: Observers | None) -> C:
    """Run the beats of a parallel step, each on its own view, then merge their changes.

    The fan-out is thin: inside one task group, each beat starts inline in this task, in its
    own contextvars context; a beat that finishes without suspending costs no task. The first
    beat that suspends (or fails) goes on in this task while the beats after it start as
    tasks, as they always would have. A failure cancels the siblings; nothing outlives the step.
    """
    states = open_branches(context, cadence_name, [f"{step.name}.{s.name}" for s in step.beats])
    results: list[Any] = [view for view, _ in states]  # Any: each slot, that beat's final context
    errors: list[tuple[int, BeatError]] = []
    stopped: list[RunStoppedError] = []  # a branch's commit failed (durable): the run stops

    parallel = None if observers is None else observers.parallel

    async def run_one(index: int, spec: BeatSpec, isolated: C) -> None:
        path = states[index][1].path
        try:
            results[index] = await _invoke(spec, isolated, path, parallel)
        except RunStoppedError as exc:
            stopped.append(exc)
            group.cancel_scope.cancel()
        except Exception as exc:  # noqa: BLE001 # each failure is kept, in declaration order
            errors.append((index, BeatError(path, cadence_name, cause=exc)))
            group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for index, spec in enumerate(step.beats):
            branch = run_one(index, spec, results[index])
            scope = contextvars.copy_context()
            suspended: object = None
            try:
                suspended = scope.run(branch.send, None)  # what it awaits (asyncio: maybe None)
            except StopIteration:
                if not errors and not stopped:
                    continue
                held = False  # it failed: the beats after it start as tasks, to be cancelled
            else:
                held = True
            for later in range(index + 1, len(step.beats)):
                group.start_soon(run_one, later, step.beats[later], results[later])
            if held:
                await _Resume(branch, suspended, scope)
            break

    if stopped:
        raise stopped[0]
    if errors:
        errors.sort(key=lambda pair: pair[0])
        if len(errors) == 1:
            raise errors[0][1]
        raise BeatErrorGroup(step.name, cadence_name, [e for _, e in errors])
    cache = FingerprintCache()
    branches = [
        (spec.name, state.changes(result, cache))
        for spec, (_, state), result in zip(step.beats, states, results, strict=True)
    ]
    first = states[0][1]  # every branch shares the original's fields and class facts
    fields, origin = first.info.fields, first.origin
    try:
        changes = merge_branches(fields, origin, branches, step.merge, cadence_name, step.name)
    finally:
        if observers is not None:
            forget_unnamed()  # a merge strategy is no beat
    return _apply(context, changes)


class _Resume:
    """Await a coroutine that already ran up to its first suspension, in its own context.

    The coroutine was started in this task, so it goes on in this task (cancel scopes it
    entered stay in the task that entered them); each step runs in `scope`, its contextvars.
    """

    __slots__ = ("_coroutine", "_first", "_scope")

    def __init__(
        self, coroutine: Coroutine[Any, Any, None], first: object, scope: contextvars.Context
    ) -> None:  # Any: the coroutine's yield and send types belong to the event loop
        self._coroutine = coroutine
        self._first = first
        self._scope = scope

    def __await__(self) -> Generator[Any, Any, None]:  # Any: the event loop's own traps
        coroutine, scope = self._coroutine, self._scope
        value = self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                scope.run(coroutine.close)
                raise
            except BaseException as exc:  # noqa: BLE001 # thrown in by the loop (a cancellation): pass it on
                try:
                    value = scope.run(coroutine.throw, exc)
                except StopIteration:
                    return
            else:
                try:
                    value = scope.run(coroutine.send, sent)
                except StopIteration:
                    return


def _apply(context: C, changes: Mapping[str, object]) -> C:
    """Write merged `changes` into `context` (into a new one when it is frozen)."""
    if not changes:
        return context
    if is_frozen(type(context)):
        context = copy.copy(context)
        for key, value in changes.items():
            if value is DELETED:
                object.__delattr__(context, key)
            else:
                object.__setattr__(context, key, value)
        return context
    for key, value in changes.items():
        if value is DELETED:
            delattr(context, key)
        else:
            setattr(context, key, value)
    return context


async def _run_split(cadence_name: str, step: Split, context: C, observers: Observers | None) -> C:
    try:
        decision = step.condition(context)
        if step.condition_is_async or inspect.isawaitable(decision):
            decision = await decision
    except Exception as exc:
        raise BeatError(f"{step.name}.condition", cadence_name, cause=exc) from exc
    finally:
        if observers is not None:
            forget_unnamed()  # the condition is no beat
    if not isinstance(decision, bool):
        raise BeatError(
            f"{step.name}.condition",
            cadence_name,
            f"condition of split {step.name!r} in cadence {cadence_name!r} returned "
            f"{type(decision).__qualname__} {decision!r}; it must return a bool",
        )
    for spec in step.if_true if decision else step.if_false:
        context = await _invoke_wrapped(
            spec, context, f"{step.name}.{spec.name}", observers, cadence_name
        )
    return context


async def _run_child(
    cadence_name: str,
    step: Child,
    context: C,
    observers: Observers | None,
    walk: Callable[[Cadence[Any], Any, Observers | None], Awaitable[Any]] | None = None,
) -> C:  # Any: the walk is over the child's context type
    child = step.cadence
    try:
        child_context = child.fresh_context() if step.context is None else step.context(context)
    except Exception as exc:
        raise BeatError(f"{step.name}.context", cadence_name, cause=exc) from exc
    finally:
        if observers is not None:
            forget_unnamed()  # the child's context function is no beat
    inner = None if observers is None else observers.nested(f"{step.name}.", ())
    try:
        child_context = await execute(child, child_context, inner, walk)
    except RunStoppedError:
        raise
    except CadenceError as exc:
        # Named by path, like the hooks name the child's beats: `child_step.beat`.
        path = f"{step.name}.{exc.beat_name}" if isinstance(exc, BeatError) else step.name
        raise BeatError(path, cadence_name, cause=exc) from exc
    try:
        result = step.merge(context, child_context)
        if step.merge_is_async or inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        raise BeatError(f"{step.name}.merge", cadence_name, cause=exc) from exc
    finally:
        if observers is not None:
            forget_unnamed()  # nor its merge function
    return context if result is None else _next_context(context, result, f"{step.name}.merge")
