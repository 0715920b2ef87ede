"""`@beat` on a function whose first parameter is not a context, or that drops its change."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mypy.errorcodes import ARG_TYPE, TYPE_VAR
from mypy.messages import format_type
from mypy.types import AnyType, CallableType, Type, get_proper_type

from cadence_mypy.errorcodes import CADENCE_BEAT, CADENCE_IMMUTABLE
from cadence_mypy.lib import (
    callable_name,
    context_info,
    first_parameter,
    immutable_info,
    note_unless_silenced,
    returns_none,
)

if TYPE_CHECKING:
    from mypy.plugin import FunctionContext, MethodContext


def beat_hook(ctx: FunctionContext | MethodContext) -> Type:
    """Check the function given to `@beat` (bare) or to `beat(name=...)` (called).

    `beat`'s own overloads make mypy reject a first parameter that is not a `Context`
    (`type-var`, or `arg-type` for a function of no parameter): the plugin adds a note naming
    the function and the parameter's type. A function whose first parameter is not a context
    but whose second is passes as a method (`def f(self, ctx)`) for mypy; unless that first
    parameter is named `self` or `cls`, the plugin reports it. A beat over an
    `ImmutableContext` that returns `None` is an error (`cadence-immutable`).
    """
    if (
        not ctx.arg_types
        or not ctx.arg_types[0]
        or ctx.callee_arg_names[:1] not in (["fn"], [None])
    ):
        return ctx.default_return_type  # the called form's own call: beat(name=...)
    typ = ctx.arg_types[0][0]
    expr = ctx.args[0][0]
    proper = get_proper_type(typ)
    if isinstance(proper, AnyType):
        return ctx.default_return_type
    name = callable_name(expr, typ)
    parameter = first_parameter(typ)
    if parameter is None:
        note_unless_silenced(
            ctx.api,
            f'@beat: "{name}" takes no argument; a beat takes one, the context',
            expr,
            code=CADENCE_BEAT,
            error=ARG_TYPE,
        )
        return ctx.default_return_type
    if isinstance(get_proper_type(parameter), AnyType) or context_info(parameter) is not None:
        _check_immutable(ctx, typ, parameter, name)
        return ctx.default_return_type
    message = (
        f'@beat: the first parameter of "{name}" is '
        f"{format_type(parameter, ctx.api.options)}; a beat takes a Context subclass"
    )
    if _passes_as_a_method(proper):
        ctx.api.fail(message, expr, code=CADENCE_BEAT)
    else:
        note_unless_silenced(ctx.api, message, expr, code=CADENCE_BEAT, error=TYPE_VAR)
    return ctx.default_return_type


def _passes_as_a_method(proper: Type) -> bool:
    """Whether mypy accepts the function through `beat`'s method form `(self, ctx, ...)`."""
    return (
        isinstance(proper, CallableType)
        and len(proper.arg_types) > 1
        and context_info(proper.arg_types[1]) is not None
    )


def _check_immutable(
    ctx: FunctionContext | MethodContext, typ: Type, parameter: Type, name: str
) -> None:
    info = immutable_info(parameter)
    if info is None or not returns_none(typ):
        return
    message = (
        f'@beat: "{name}" takes ImmutableContext "{info.name}" but returns None, which throws '
        "its change away; return the new context (ctx.with_field(...))"
    )
    ctx.api.fail(message, ctx.args[0][0], code=CADENCE_IMMUTABLE)
