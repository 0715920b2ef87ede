"""The runner: walks a cadence's steps over one context, on anyio (asyncio or trio).

The per-beat path is the hottest code in the library. A cadence with no hooks and no reporters
takes the plain path: an async `then` beat is one call and one await.
"""

from __future__ import annotations

import copy
import inspect
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import anyio.to_thread

from cadence._context import Context, context_fields, copy_context, is_frozen
from cadence._errors import BeatError, BeatErrorGroup, CadenceError
from cadence._hooks import Entry, Observers, close_calls, open_calls
from cadence._merge import merge_branches
from cadence._steps import Child, Split, Sync, Then

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cadence._beat import BeatSpec
    from cadence._cadence import Cadence
    from cadence._steps import Step

__all__ = ["execute"]

C = TypeVar("C", bound=Context)


async def execute(cadence: Cadence[C], context: C, outer: Observers | None) -> C:
    """Run `cadence` over `context`, observed by its own hooks and `outer` (a parent run's)."""
    own = cadence.observers
    if outer is None:
        observers = own
    else:
        observers = outer.nested("", cadence.hooks) if own is not None else outer
    if observers is None:
        return await _run_steps(cadence, context, None)
    if own is None:
        return await _run_steps(cadence, context, observers)
    name = cadence.name
    told: list[Entry] = []
    start = perf_counter()
    try:
        await open_calls(own.live["before_cadence"], "before_cadence", name, (context,), told)
        start = perf_counter()
        context = await _run_steps(cadence, context, observers)
    except BaseException as exc:
        cancelled = not isinstance(exc, Exception)
        ended = (context, perf_counter() - start, exc)
        owed = own.owed("after_cadence", "before_cadence", told)
        await close_calls(owed, "after_cadence", name, ended, shield=cancelled)
        raise
    finished = (context, perf_counter() - start, None)
    owed = own.owed("after_cadence", "before_cadence", told)
    await close_calls(owed, "after_cadence", name, finished, shield=False)
    return context


async def _run_steps(cadence: Cadence[C], context: C, observers: Observers | None) -> C:
    for step in cadence.steps:
        try:
            if type(step) is Then:
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
            elif type(step) is Sync:
                context = await _run_sync(cadence.name, step, context, observers)
            elif type(step) is Split:
                context = await _run_split(cadence.name, step, context, observers)
            else:
                context = await _run_child(cadence.name, cast("Child", step), context, observers)
        except Exception as exc:  # noqa: BLE001 # every failure goes to _fail; cancellation is a BaseException and passes
            context = await _fail(cadence, step, context, exc)
    return context


async def _fail(cadence: Cadence[C], step: Step, context: C, exc: Exception) -> C:
    """Hand a failed step to the error handler; return the context to go on with, or raise."""
    if type(step) is Then or not isinstance(exc, CadenceError):
        error: CadenceError = BeatError(step.name, cadence.name)
        error.__cause__ = exc
    else:
        error = exc
    handler = cadence.error_handler
    if handler is not None:
        outcome = handler(context, error)
        if inspect.isawaitable(outcome):
            await outcome
        if not cadence.stop_on_error:
            return context
    raise error


def _next_context(context: C, result: object, beat_name: str) -> C:
    """Return the context after a beat that returned `result` (a new context replaces it)."""
    if not isinstance(result, Context):
        return context  # a beat's other return values (e.g. a fallback's default) are not state
    if not isinstance(result, type(context)):
        raise TypeError(
            f"beat {beat_name!r} returned a {type(result).__qualname__}; a beat returns None or "
            f"a new {type(context).__qualname__}"
        )
    return result


async def _call_beat(spec: BeatSpec, context: C) -> C:
    fn = spec.fn
    if spec.is_async:
        result = await fn(context)
    else:
        result = await anyio.to_thread.run_sync(fn, context) if spec.in_thread else fn(context)
        if result is not None and inspect.isawaitable(result):
            result = await result
    return context if result is None else _next_context(context, result, spec.name)


async def _invoke(spec: BeatSpec, context: C, path: str, observers: Observers | None) -> C:
    """Run one beat, telling `observers` (if any) of its start, end and failure."""
    if observers is None:
        return await _call_beat(spec, context)
    told: list[Entry] = []
    start = perf_counter()
    try:
        before = observers.live["before_beat"]
        if before:
            await open_calls(before, "before_beat", path, (context,), told)
            start = perf_counter()
        context = await _call_beat(spec, context)
    except BaseException as exc:
        await observers.after_beat(told, path, context, perf_counter() - start, exc)
        raise
    await observers.after_beat(told, path, context, perf_counter() - start, None)
    return context


async def _invoke_wrapped(
    spec: BeatSpec, context: C, path: str, observers: Observers | None, cadence_name: str
) -> C:
    """Run one beat of a `sync` or `split` step; its failure becomes a `BeatError` named by path."""
    try:
        return await _invoke(spec, context, path, observers)
    except Exception as exc:
        raise BeatError(path, cadence_name) from exc


async def _run_sync(cadence_name: str, step: Sync, context: C, observers: Observers | None) -> C:
    before = dict(context_fields(context))
    copies = [copy_context(context, share_atomics=True) for _ in step.beats]
    starts = [dict(context_fields(c)) for c in copies]
    results: list[Any] = list(copies)  # Any: each slot holds that beat's final context
    errors: list[tuple[int, BeatError]] = []

    async with anyio.create_task_group() as group:

        async def run_one(index: int, spec: BeatSpec, isolated: C) -> None:
            path = f"{step.name}.{spec.name}"
            try:
                if observers is None and spec.is_async:
                    result = await spec.fn(isolated)
                    if result is not None:
                        results[index] = _next_context(isolated, result, path)
                else:
                    results[index] = await _invoke(spec, isolated, path, observers)
            except Exception as exc:  # noqa: BLE001 # each failure is kept, in declaration order
                error = BeatError(path, cadence_name)
                error.__cause__ = exc
                errors.append((index, error))
                group.cancel_scope.cancel()

        for index, (spec, isolated) in enumerate(zip(step.beats, copies, strict=True)):
            group.start_soon(run_one, index, spec, isolated)

    if errors:
        errors.sort(key=lambda pair: pair[0])
        if len(errors) == 1:
            raise errors[0][1]
        raise BeatErrorGroup(step.name, cadence_name, [e for _, e in errors])
    branches = [
        (spec.name, start, context_fields(result))
        for spec, start, result in zip(step.beats, starts, results, strict=True)
    ]
    changes = merge_branches(before, branches, step.merge, cadence_name, step.name)
    return _apply(context, changes)


def _apply(context: C, changes: Mapping[str, object]) -> C:
    """Write merged `changes` into `context` (into a new one when it is frozen)."""
    if not changes:
        return context
    if is_frozen(type(context)):
        context = copy.copy(context)
        for key, value in changes.items():
            object.__setattr__(context, key, value)
        return context
    for key, value in changes.items():
        setattr(context, key, value)
    return context


async def _run_split(cadence_name: str, step: Split, context: C, observers: Observers | None) -> C:
    try:
        decision = step.condition(context)
        if step.condition_is_async or inspect.isawaitable(decision):
            decision = await decision
    except Exception as exc:
        raise BeatError(f"{step.name}.condition", cadence_name) from exc
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


async def _run_child(cadence_name: str, step: Child, context: C, observers: Observers | None) -> C:
    child = step.cadence
    try:
        child_context = child.fresh_context() if step.context is None else step.context(context)
    except Exception as exc:
        raise BeatError(f"{step.name}.context", cadence_name) from exc
    inner = None if observers is None else observers.nested(f"{step.name}.", ())
    try:
        child_context = await execute(child, child_context, inner)
    except CadenceError as exc:
        raise BeatError(step.name, cadence_name) from exc
    try:
        result = step.merge(context, child_context)
        if step.merge_is_async or inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        raise BeatError(f"{step.name}.merge", cadence_name) from exc
    return context if result is None else _next_context(context, result, f"{step.name}.merge")
