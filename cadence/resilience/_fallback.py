"""`@fallback`: on failure, write a default into the context and carry on."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import logging
import typing
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, cast

from cadence import _events as events
from cadence._beat import default_name, is_async_callable
from cadence._context import Context, ImmutableContext, is_frozen
from cadence.resilience._checks import ExceptionFilter, exception_filter

__all__ = ["FallbackDecorator", "fallback"]

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("cadence")

_MISSING: Any = object()  # Any: a sentinel that fits every parameter type


class FallbackDecorator(Protocol):
    """What `fallback(...)` returns: apply it to a function to guard it."""

    def __call__(self, fn: F, /) -> F:
        """Guard `fn` and return a function of exactly its type."""
        ...


def fallback(
    default: object = _MISSING,
    *,
    field: str | None = None,
    handler: Callable[[Any, Exception], object] | None = None,
    on: ExceptionFilter = Exception,
) -> FallbackDecorator:
    """Replace a failure of a sync or async function (or beat) by a value.

    On a failure matched by `on`, the value (`default`, or `handler(context, error)`) is written
    to the context field `field`; a mapping `default` without `field` sets one field per key.
    The decorated call then returns the value, so the run goes on and the decorator serves plain
    functions too (there, nothing is written). A beat over an `ImmutableContext` returns the new
    context instead. Each fallback logs a WARNING on the `cadence` logger. Cancellation is never
    replaced.

    Args:
        default: The value to use.
        field: The context field to write it to.
        handler: Computes the value from the context (the first argument, or None) and the error;
            given instead of `default`.
        on: The failures to replace: exception types, or a predicate; others propagate.

    Raises:
        ValueError: neither or both of `default` and `handler` are given, `field` is empty, or
            the beat's annotated context has no such field (raised when decorating).

    """
    if (default is _MISSING) == (handler is None):
        raise ValueError("fallback: give exactly one of default=... or handler=...")
    if field is not None and not (isinstance(cast("object", field), str) and field):
        raise ValueError(f"fallback: field must be a non-empty string, got {field!r}")
    if handler is not None and not callable(handler):
        raise ValueError(f"fallback: handler must be callable, got {handler!r}")
    should_replace = exception_filter("fallback", on)

    def decorate(fn: F) -> F:
        name = default_name(fn)
        _check_fields(fn, name, default, field)

        def recover(
            args: tuple[Any, ...], error: Exception
        ) -> Any:  # Any: the value or a new context
            if not should_replace(error):
                raise error
            context = args[0] if args and isinstance(args[0], Context) else None
            value = default if handler is None else handler(context, error)
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
            return _write(context, changes, name, error, value)

        if is_async_callable(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:  # Any: F's own signature
                try:
                    return await fn(*args, **kwargs)
                except Exception as error:  # noqa: BLE001 # `on` decides; cancellation passes
                    return recover(args, error)

            events.mark(async_wrapper, "fallback", f"fallback: {field}" if field else "fallback")
            return cast("F", async_wrapper)

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:  # Any: F's own signature
            try:
                return fn(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 # as above
                return recover(args, error)

        events.mark(sync_wrapper, "fallback", f"fallback: {field}" if field else "fallback")
        return cast("F", sync_wrapper)

    return decorate


def _is_mapping(value: object) -> bool:
    return isinstance(value, Mapping)


def _as_changes(value: object) -> dict[str, object]:
    """Return a mapping default as field changes."""
    return {str(k): v for k, v in cast("Mapping[object, object]", value).items()}


def _write(
    context: Context, changes: Mapping[str, object], name: str, error: Exception, value: object
) -> object:
    """Write `changes` into `context`; return `value`, or the new context if it is frozen."""
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
    return value


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
