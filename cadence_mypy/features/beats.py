"""`@beat` on a function whose first parameter is not a context."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mypy.errorcodes import ARG_TYPE, TYPE_VAR
from mypy.messages import format_type
from mypy.types import AnyType, Type, get_proper_type

from cadence_mypy.errorcodes import CADENCE_BEAT
from cadence_mypy.lib import callable_name, context_info, note_unless_silenced, signature

if TYPE_CHECKING:
    from mypy.plugin import FunctionContext, MethodContext


def beat_hook(ctx: FunctionContext | MethodContext) -> Type:
    """Explain mypy's error on `@beat` (bare) or `beat(name=...)` (called) with a note.

    `beat`'s overloads make mypy reject a function whose first parameter is not a `Context`
    (`type-var`, or `arg-type` for a function of no parameter): the plugin adds a note naming
    the function and the parameter's type (past `self` or `cls`, for a method). A function whose
    second parameter is a context fits `beat`'s method form, `(self, ctx, ...)`: accepted.

    The hook only ever adds notes: mypy calls it while it tries each overload of `beat`, and an
    error added there would make mypy reject the overload it is trying, changing the type it
    infers. A beat over an `ImmutableContext` that returns `None` is therefore reported where it
    is used (`then`, `sync`, `split`), not here.
    """
    if (
        not ctx.arg_types
        or not ctx.arg_types[0]
        or ctx.callee_arg_names[:1] not in (["fn"], [None])
    ):
        return ctx.default_return_type  # the called form's own call: beat(name=...)
    typ = ctx.arg_types[0][0]
    expr = ctx.args[0][0]
    call = signature(typ)
    if call is None:
        return ctx.default_return_type
    # Only where no overload of `beat` fits: a note added while mypy tries an overload that
    # fits would make it reject that overload (it counts every message of the attempt).
    parameters = call.arg_types
    if any(_context_or_any(p) for p in parameters[:2]):
        return ctx.default_return_type
    name = callable_name(expr, typ)
    if not parameters:
        note_unless_silenced(
            ctx.api,
            f'@beat: "{name}" takes no argument; a beat takes one, the context',
            expr,
            code=CADENCE_BEAT,
            error=ARG_TYPE,
        )
        return ctx.default_return_type
    parameter = (
        parameters[1]
        if call.arg_names[0] in {"self", "cls"} and len(parameters) > 1
        else parameters[0]
    )
    note_unless_silenced(
        ctx.api,
        f'@beat: the first parameter of "{name}" is '
        f"{format_type(parameter, ctx.api.options)}; a beat takes a Context subclass",
        expr,
        code=CADENCE_BEAT,
        error=TYPE_VAR,
    )
    return ctx.default_return_type


def _context_or_any(typ: Type) -> bool:
    return isinstance(get_proper_type(typ), AnyType) or context_info(typ) is not None
