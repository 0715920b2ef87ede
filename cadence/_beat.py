"""Beats: the small sync or async functions a cadence runs over its context."""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeAlias, TypeVar, cast, overload

from cadence._context import Context
from cadence._errors import CadenceDefinitionError

__all__ = ["Beat", "BeatDecorator", "BeatInfo", "Condition", "beat"]

C = TypeVar("C", bound=Context)
ContextT = TypeVar("ContextT", bound=Context)
_S = TypeVar("_S")
_P = ParamSpec("_P")
_R = TypeVar("_R")

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


# The overloads below type `@beat`. The first parameter of a beat must be a `Context`: it is
# captured by a type variable bound to `Context` (`Concatenate[C, P]`), which both mypy and
# pyright check at the decorator. The cost: in the decorated type the context parameter is
# positional-only (`beat_fn(ctx=...)` is rejected); every other parameter, the result, and
# sync/async are kept exactly. A method (`def fetch(self, ctx: Order)`) matches the second form.
# A beat over an `ImmutableContext` that returns `None` is left to the cadence_mypy plugin: a
# deprecated overload for it (pyright strict reports deprecations) would become the overload
# mypy explains every mismatch with, and mislead (`expected "Callable[[int], None]"`).


class BeatDecorator(Protocol):
    """What `beat(name=...)` returns: apply it to a function to mark it as a beat."""

    @overload
    def __call__(  # type: ignore[overload-overlap] # each form returns its argument's type
        self, fn: Callable[Concatenate[ContextT, _P], _R], /
    ) -> Callable[Concatenate[ContextT, _P], _R]: ...
    @overload
    def __call__(
        self, fn: Callable[Concatenate[_S, ContextT, _P], _R], /
    ) -> Callable[Concatenate[_S, ContextT, _P], _R]: ...
    def __call__(self, fn: Callable[..., object], /) -> Callable[..., object]:
        """Return a marked copy of `fn`, a function whose first parameter is a `Context`."""
        ...


@overload
def beat(  # type: ignore[overload-overlap] # each form returns its argument's type
    fn: Callable[Concatenate[ContextT, _P], _R], /
) -> Callable[Concatenate[ContextT, _P], _R]: ...
@overload
def beat(
    fn: Callable[Concatenate[_S, ContextT, _P], _R], /
) -> Callable[Concatenate[_S, ContextT, _P], _R]: ...
@overload
def beat(
    *, name: str | None = None, blocking: bool = True, description: str | None = None
) -> BeatDecorator: ...
def beat(
    fn: Callable[..., object] | None = None,
    /,
    *,
    name: str | None = None,
    blocking: bool = True,
    description: str | None = None,
) -> Callable[..., object] | BeatDecorator:
    """Mark a function as a beat, bare (`@beat`) or called (`@beat(name=...)`).

    `@beat` returns a marked copy of the function and leaves the function itself unchanged, so
    `beat(name="a")(f)` and `beat(name="b")(f)` are two distinct beats and `f` stays a plain
    function. The copy has the function's type, except that its context parameter is
    positional-only. A sync beat runs in a worker thread so it never blocks the event loop;
    declare `blocking=False` for a sync beat cheap enough to run on the loop itself.

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

    def mark(function: Callable[..., object]) -> Callable[..., object]:
        if not callable(function):
            raise CadenceDefinitionError(
                f"@beat: expected a function, got {type(function).__qualname__} {function!r}"
            )
        marked = _marked_copy(function, info)
        setattr(marked, _INFO_ATTRIBUTE, info)
        return marked

    return cast("BeatDecorator", mark) if fn is None else mark(fn)


def _marked_copy(function: Callable[..., object], info: BeatInfo) -> Callable[..., object]:
    """Return a copy of `function` that `@beat` may mark, leaving `function` unchanged.

    A plain function is copied (same code, globals, defaults, closure and attributes); a
    `functools.partial` is rebuilt; any other callable (a bound method, a callable object) is
    called through a small function of the same kind, sync or async, named like it.
    """
    if isinstance(function, types.FunctionType):
        copy = types.FunctionType(
            function.__code__,
            function.__globals__,
            function.__name__,
            function.__defaults__,
            function.__closure__,
        )
        copy.__kwdefaults__ = dict(function.__kwdefaults__) if function.__kwdefaults__ else None
        copy.__dict__.update(function.__dict__)
        copy.__qualname__ = function.__qualname__
        copy.__doc__ = function.__doc__
        copy.__module__ = function.__module__
        copy.__annotations__ = dict(function.__annotations__)
        type_params = getattr(function, "__type_params__", None)  # Python 3.12+
        if type_params:
            setattr(copy, "__type_params__", type_params)  # noqa: B010 # absent before 3.12
        return copy
    if isinstance(function, functools.partial):
        rebuilt = functools.partial(
            cast("Callable[..., object]", function.func), *function.args, **function.keywords
        )
        rebuilt.__dict__.update(function.__dict__)
        return rebuilt
    target = function
    if is_async_callable(function):

        async def call_async(*args: Any, **kwargs: Any) -> Any:  # Any: forwards to `target`
            return await cast("Callable[..., Awaitable[object]]", target)(*args, **kwargs)

        wrapper: Callable[..., object] = call_async
    else:

        def call(*args: Any, **kwargs: Any) -> Any:  # Any: forwards to `target`
            return target(*args, **kwargs)

        wrapper = call
    functools.update_wrapper(wrapper, function)  # copies __name__, __doc__, __dict__ if present
    if info.name is None:
        wrapper.__name__ = default_name(function)
    return wrapper


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
