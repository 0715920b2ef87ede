"""Beats: the small sync or async functions a cadence runs over its context."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, TypeVar, cast, overload

from cadence._context import Context
from cadence._errors import CadenceDefinitionError

__all__ = ["Beat", "BeatDecorator", "BeatInfo", "Condition", "beat"]

C = TypeVar("C", bound=Context)
_F = TypeVar("_F", bound=Callable[..., object])
_G = TypeVar("_G", bound=Callable[..., object])

Beat: TypeAlias = Callable[[C], Awaitable[C | None] | C | None]
"""A beat over context `C`: it mutates the context, or returns a new one (immutable contexts)."""

Condition: TypeAlias = Callable[[C], Awaitable[bool] | bool]
"""A `split` condition over context `C`, sync or async."""

_INFO_ATTRIBUTE = "__cadence_beat__"


@dataclass(frozen=True, slots=True)
class BeatInfo:
    """What `@beat` records on a function (read by the runner and by diagrams).

    Attributes:
        name: The beat's name; `None` means the function's `__name__`.
        blocking: For a sync beat, whether it may block (then it runs in a worker thread).
        description: A one-line description for diagrams and docs.

    """

    name: str | None = None
    blocking: bool = True
    description: str | None = None


class BeatDecorator(Protocol):
    """What `beat(name=...)` returns: apply it to a function to mark it as a beat."""

    def __call__(self, fn: _F, /) -> _F:
        """Mark `fn` and return it unchanged."""
        ...


@overload
def beat(fn: _F, /) -> _F: ...
@overload
def beat(
    *, name: str | None = None, blocking: bool = True, description: str | None = None
) -> BeatDecorator: ...
def beat(
    fn: _F | None = None,
    /,
    *,
    name: str | None = None,
    blocking: bool = True,
    description: str | None = None,
) -> _F | BeatDecorator:
    """Mark a function as a beat, bare (`@beat`) or called (`@beat(name=...)`).

    The function is returned unchanged (same object, same type); `@beat` only records
    metadata. A sync beat runs in a worker thread so it never blocks the event loop; declare
    `blocking=False` for a sync beat cheap enough to run on the loop itself.

    Args:
        fn: The function, in the bare form.
        name: The beat's name (default: the function's `__name__`).
        blocking: Whether a sync beat may block; ignored for async beats.
        description: A one-line description shown in diagrams.

    Raises:
        CadenceDefinitionError: `fn` is not callable or `name` is empty.

    """
    if name is not None and not (isinstance(cast("object", name), str) and name.strip()):
        raise CadenceDefinitionError(f"@beat: name must be a non-empty string, got {name!r}")
    info = BeatInfo(name=name, blocking=blocking, description=description)

    def mark(function: _G) -> _G:
        if not callable(function):
            raise CadenceDefinitionError(
                f"@beat: expected a function, got {type(function).__qualname__} {function!r}"
            )
        try:
            setattr(function, _INFO_ATTRIBUTE, info)
        except (AttributeError, TypeError):
            raise CadenceDefinitionError(
                f"@beat: cannot mark {function!r}; wrap it in a def or a functools.partial"
            ) from None
        return function

    return mark if fn is None else mark(fn)


def beat_info(fn: object) -> BeatInfo | None:
    """Return what `@beat` recorded on `fn`, or `None` for a plain function."""
    info = getattr(fn, _INFO_ATTRIBUTE, None)
    return info if isinstance(info, BeatInfo) else None


def default_name(fn: object) -> str:
    """Return the name a beat is known by: its `@beat` name, else its function's name."""
    info = beat_info(fn)
    if info is not None and info.name is not None:
        return info.name
    target = fn.func if isinstance(fn, functools.partial) else fn
    return str(getattr(target, "__name__", None) or type(target).__name__)


def is_async_callable(fn: object) -> bool:
    """Return whether calling `fn` returns a coroutine (functions, partials, async `__call__`)."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 # the class's own __call__ is meant
    return not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


@dataclass(frozen=True, slots=True)
class BeatSpec:
    """A beat resolved for running: its name, the callable, and how to call it."""

    name: str
    fn: Callable[[Any], Any]  # Any: called with the run's context; returns what the beat returns
    is_async: bool
    in_thread: bool


def resolve_beat(fn: object, name: str | None, where: str) -> BeatSpec:
    """Resolve `fn` into a `BeatSpec`, naming it `name` or its default name.

    Raises:
        CadenceDefinitionError: `fn` is not callable (`where` names the cadence and step).

    """
    if not callable(fn):
        raise CadenceDefinitionError(
            f"{where}: a beat must be callable, got {type(fn).__qualname__} {fn!r}"
        )
    is_async = is_async_callable(fn)
    info = beat_info(fn)
    in_thread = not is_async and (info is None or info.blocking)
    return BeatSpec(
        name=name or default_name(fn),
        fn=cast("Callable[[Any], Any]", fn),
        is_async=is_async,
        in_thread=in_thread,
    )
