"""`@fallback`: on failure, write a default into the context and carry on."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import inspect
import logging
import typing
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast, overload

from anyio.lowlevel import checkpoint_if_cancelled

from cadence import _events as events
from cadence._beat import default_name, is_async_callable
from cadence._context import Context, ImmutableContext, is_frozen
from cadence._errors import CadenceDefinitionError
from cadence.resilience._checks import ExceptionFilter, exception_filter

__all__ = ["BeatFallback", "FallbackDecorator", "HandlerFallback", "ValueFallback", "fallback"]

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=Context)
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
H = TypeVar("H")
T_co = TypeVar("T_co", covariant=True)
H_contra = TypeVar("H_contra", contravariant=True)
BeatResult = TypeVar("BeatResult", bound=Context | None)  # what a beat returns: None or a context

logger = logging.getLogger("cadence")

_MISSING: Any = object()  # Any: a sentinel that fits every parameter type


class FallbackDecorator(Protocol):
    """What `fallback(default, field=...)` returns: the beat keeps its exact type."""

    def __call__(self, fn: F, /) -> F:
        """Guard `fn` and return a function of exactly its type."""
        ...


class BeatFallback(Protocol[C]):
    """What `fallback(handler=..., field=...)` returns: a guard for beats over context `C`.

    The beat keeps its type; its context parameter becomes positional-only (the runner passes
    it so), because that parameter is how the handler's context is matched to the beat's.
    """

    def __call__(self, fn: Callable[Concatenate[C, P], R], /) -> Callable[Concatenate[C, P], R]:
        """Guard `fn`, a beat over `C`."""
        ...


class ValueFallback(Protocol[T_co]):
    """What `fallback(default)` returns, without `field`: the call may return the default.

    On `Callable[P, R]` it gives `Callable[P, R | T]` (an async function's awaited result
    likewise). A mapping default on a beat (a function whose first parameter is a context and
    which returns None or a context) is written into the context: the beat keeps its type.
    """

    # Overloads 1-2 (a mapping on a beat) overlap 3-4 with other results on purpose: a beat's
    # mapping default goes into the context, so the beat's own result stands.
    @overload
    def __call__(  # type: ignore[overload-overlap]
        self: ValueFallback[Mapping[str, object]],
        fn: Callable[Concatenate[C, P], Coroutine[Any, Any, BeatResult]],  # Any: any coroutine
        /,
    ) -> Callable[Concatenate[C, P], Coroutine[Any, Any, BeatResult]]: ...
    @overload
    def __call__(  # type: ignore[overload-overlap]
        self: ValueFallback[Mapping[str, object]], fn: Callable[Concatenate[C, P], BeatResult], /
    ) -> Callable[Concatenate[C, P], BeatResult]: ...
    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Callable[P, Coroutine[Any, Any, R | T_co]]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Callable[P, R | T_co]: ...
    def __call__(self, fn: Callable[..., Any], /) -> Callable[..., Any]:
        """Guard `fn`; its result type widens by the default's."""
        ...


# Contravariant in the handler's context, used only in `self` annotations (how an overload
# tells a handler that takes None from one that takes a context): both checkers expect the
# variance of a protocol's other uses, and there are none.
class HandlerFallback(Protocol[H_contra, T_co]):  # type: ignore[misc]  # pyright: ignore[reportInvalidTypeVarUse]
    """What `fallback(handler=...)` returns, without `field`: the call may return its value.

    On a plain function (the handler takes None for the context) `Callable[P, R]` gives
    `Callable[P, R | T]`; on a function whose first parameter is a context (a split condition),
    the handler must take that context.
    """

    @overload
    def __call__(
        self: HandlerFallback[None, T], fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Callable[P, Coroutine[Any, Any, R | T]]: ...
    @overload
    def __call__(self: HandlerFallback[None, T], fn: Callable[P, R], /) -> Callable[P, R | T]: ...
    @overload
    def __call__(
        self: HandlerFallback[C, T], fn: Callable[Concatenate[C, P], Coroutine[Any, Any, R]], /
    ) -> Callable[Concatenate[C, P], Coroutine[Any, Any, R | T]]: ...
    @overload
    def __call__(
        self: HandlerFallback[C, T], fn: Callable[Concatenate[C, P], R], /
    ) -> Callable[Concatenate[C, P], R | T]: ...
    def __call__(self, fn: Callable[..., Any], /) -> Callable[..., Any]:
        """Guard `fn`; its result type widens by the handler's."""
        ...


@overload
def fallback(
    default: object, *, field: str, on: ExceptionFilter = Exception
) -> FallbackDecorator: ...
@overload
def fallback(
    *, handler: Callable[[C, Exception], object], field: str, on: ExceptionFilter = Exception
) -> BeatFallback[C]: ...
@overload
def fallback(
    default: T, *, field: None = None, on: ExceptionFilter = Exception
) -> ValueFallback[T]: ...
@overload
def fallback(
    *,
    handler: Callable[[H, Exception], Awaitable[T]],
    field: None = None,
    on: ExceptionFilter = Exception,
) -> HandlerFallback[H, T]: ...
@overload
def fallback(
    *, handler: Callable[[H, Exception], T], field: None = None, on: ExceptionFilter = Exception
) -> HandlerFallback[H, T]: ...


def fallback(
    default: object = _MISSING,
    *,
    field: str | None = None,
    handler: Callable[[Any, Exception], object] | None = None,  # Any: see the overloads
    on: ExceptionFilter = Exception,
) -> FallbackDecorator | BeatFallback[Any] | ValueFallback[Any] | HandlerFallback[Any, Any]:
    """Replace a failure of a sync or async function (or beat) by a value.

    On a failure matched by `on`, the value (`default`, or `handler(context, error)`, awaited
    when the handler is async) is written to the context field `field`; a mapping value without
    `field` sets one field per key. A beat that wrote its value returns what it would have
    returned (None, or the new context of an `ImmutableContext`), so it keeps its type.
    Otherwise the call returns the value, so the decorator serves plain functions too: typed
    `Callable[P, R]`, a plain function guarded by a default of type `T` is `Callable[P, R | T]`.
    A mutable `default` is deep-copied at every use, so no run sees another's changes to it.
    Each fallback logs a WARNING on the `cadence` logger. Cancellation is never replaced, and
    nothing is recovered under a cancelled scope: the cancellation wins.

    Args:
        default: The value to use (deep-copied at every use unless it is immutable).
        field: The context field to write it to.
        handler: Computes the value from the context (the first argument, or None) and the
            error; given instead of `default`. An async handler needs an async function.
        on: The failures to replace: exception types, or a predicate; others propagate.

    Raises:
        ValueError: neither or both of `default` and `handler` are given, `field` is empty,
            `default` cannot be deep-copied, or the beat's annotated context has no such field
            (raised when decorating).
        CadenceDefinitionError: an async handler guards a sync function (when decorating).

    """
    if (default is _MISSING) == (handler is None):
        raise ValueError("fallback: give exactly one of default=... or handler=...")
    if field is not None and not (isinstance(cast("object", field), str) and field):
        raise ValueError(f"fallback: field must be a non-empty string, got {field!r}")
    if handler is not None and not callable(handler):
        raise ValueError(f"fallback: handler must be callable, got {handler!r}")
    should_replace = exception_filter("fallback", on)
    fresh = _fresh_default(default) if handler is None else None

    def decorate(fn: F) -> F:
        name = default_name(fn)
        _check_fields(fn, name, default, field)

        def value_of(args: tuple[Any, ...], error: Exception) -> tuple[Context | None, object]:
            """Return the context (or None) and the value that replaces `error`, or re-raise."""
            if not should_replace(error):
                raise error
            context = args[0] if args and isinstance(args[0], Context) else None
            if handler is None:
                return context, (default if fresh is None else fresh())
            return context, handler(context, error)

        def recover(
            context: Context | None, value: object, error: Exception
        ) -> Any:  # Any: the value, None or a new context
            logger.warning(
                "%r failed (%s: %s); falling back to %r", name, type(error).__name__, error, value
            )
            events.record_fallback(name, error)
            if context is None:
                return value
            if field is not None:
                changes = {field: value}
            elif _is_mapping(value):
                changes = _as_changes(value)
            else:
                return value
            return _write(context, changes, name, error)

        if is_async_callable(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:  # Any: F's own signature
                try:
                    return await fn(*args, **kwargs)
                except Exception as error:  # noqa: BLE001 # `on` decides; cancellation passes
                    # A failure under a cancelled scope is not replaced: the cancellation wins,
                    # at this very point on asyncio and trio alike.
                    await checkpoint_if_cancelled()
                    context, value = value_of(args, error)
                    if inspect.isawaitable(value):  # an async handler
                        value = await value
                    return recover(context, value, error)

            events.mark(async_wrapper, "fallback", f"fallback: {field}" if field else "fallback")
            return cast("F", async_wrapper)

        if handler is not None and is_async_callable(handler):
            raise CadenceDefinitionError(
                f"fallback of {name!r}: the handler {default_name(handler)!r} is async but "
                f"{name!r} is sync, so nothing could await it; give a sync handler"
            )

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:  # Any: F's own signature
            try:
                return fn(*args, **kwargs)
            except Exception as error:  # `on` decides; cancellation passes
                context, value = value_of(args, error)
                if inspect.isawaitable(value):
                    if inspect.iscoroutine(value):
                        value.close()  # never awaited: close it so it does not warn later
                    raise CadenceDefinitionError(
                        f"fallback of {name!r}: the handler returned an awaitable, but {name!r} "
                        "is sync, so nothing could await it; give a sync handler"
                    ) from error
                return recover(context, value, error)

        events.mark(sync_wrapper, "fallback", f"fallback: {field}" if field else "fallback")
        return cast("F", sync_wrapper)

    return cast("FallbackDecorator", decorate)


def _fresh_default(default: object) -> Callable[[], object] | None:
    """Return a maker of fresh copies of `default`, or None when it is immutable (no copy needed).

    A mutable default is deep-copied at every use, so one run's changes to it never reach the
    next run. Deep-copying an immutable value returns the value itself, which is how it is told
    apart once, here, rather than on every fallback.

    Raises:
        ValueError: `default` cannot be deep-copied.

    """
    try:
        copied = copy.deepcopy(default)
    except Exception as error:
        raise ValueError(
            f"fallback: the default {default!r} cannot be copied ({type(error).__name__}: "
            f"{error}); each use gets a fresh copy of a default, so build the value in a "
            "handler instead: handler=lambda ctx, error: ..."
        ) from error
    if copied is default:
        return None
    return functools.partial(copy.deepcopy, default)


def _is_mapping(value: object) -> bool:
    return isinstance(value, Mapping)


def _as_changes(value: object) -> dict[str, object]:
    """Return a mapping default as field changes."""
    return {str(k): v for k, v in cast("Mapping[object, object]", value).items()}


def _write(context: Context, changes: Mapping[str, object], name: str, error: Exception) -> object:
    """Write `changes` into `context`; return None, or the new context if it is frozen.

    A beat's fallback returns what the beat would have: nothing for a context it mutates, a new
    context for a frozen one. So the beat keeps its type.
    """
    known = {f.name for f in dataclasses.fields(cast("Any", context))}
    for key in changes:
        if key not in known:
            raise AttributeError(
                f"fallback of {name!r}: {type(context).__qualname__} has no field {key!r}"
                f"{_did_you_mean(key, known)}"
            ) from error
    if isinstance(context, ImmutableContext):
        return context.with_fields(**changes)
    if is_frozen(type(context)):
        return dataclasses.replace(cast("Any", context), **changes)
    for key, new in changes.items():
        setattr(context, key, new)
    return None


def _check_fields(fn: Callable[..., Any], name: str, default: object, field: str | None) -> None:
    """Check the fields against the beat's annotated context class, when it can be resolved."""
    if field is not None:
        wanted = [field]
    elif _is_mapping(default):
        wanted = list(_as_changes(default))
    else:
        return
    context_class = _annotated_context(fn)
    if context_class is None:
        return
    known = {f.name for f in dataclasses.fields(context_class)}
    for key in wanted:
        if key not in known:
            raise ValueError(
                f"fallback of {name!r}: {context_class.__qualname__} has no field {key!r}"
                f"{_did_you_mean(key, known)}"
            )


def _annotated_context(fn: Callable[..., Any]) -> Any:  # Any: a dataclass type, or None
    target = inspect.unwrap(fn)
    try:
        parameters = list(inspect.signature(target).parameters.values())
        hints = typing.get_type_hints(target)
    except (NameError, TypeError, ValueError):  # unresolvable annotations: checked at call time
        return None
    if not parameters:
        return None
    annotation: object = hints.get(parameters[0].name)
    return annotation if _is_context_class(annotation) else None


def _is_context_class(value: object) -> bool:
    return (
        isinstance(value, type) and issubclass(value, Context) and dataclasses.is_dataclass(value)
    )


def _did_you_mean(key: str, known: set[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
