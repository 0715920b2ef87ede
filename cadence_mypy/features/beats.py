"""`@beat` on a function whose first parameter is not a context."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mypy.messages import format_type
from mypy.types import AnyType, Type, get_proper_type

from cadence_mypy.errorcodes import CADENCE_BEAT
from cadence_mypy.lib import callable_name, context_info, first_parameter

if TYPE_CHECKING:
    from mypy.plugin import FunctionContext, MethodContext


def beat_hook(ctx: FunctionContext | MethodContext) -> Type:
    """Check the function given to `@beat` (bare) or to `beat(name=...)` (called)."""
    if (
        not ctx.arg_types
        or not ctx.arg_types[0]
        or ctx.callee_arg_names[:1] not in (["fn"], [None])
    ):
        return ctx.default_return_type  # the called form's own call: beat(name=...)
    typ = ctx.arg_types[0][0]
    parameter = first_parameter(typ)
    if parameter is None:
        if not isinstance(get_proper_type(typ), AnyType):
            ctx.api.fail(
                "@beat: a beat takes one argument, the context", ctx.args[0][0], code=CADENCE_BEAT
            )
        return ctx.default_return_type
    if isinstance(get_proper_type(parameter), AnyType) or context_info(parameter) is not None:
        return ctx.default_return_type
    ctx.api.fail(
        f'@beat: the first parameter of "{callable_name(ctx.args[0][0], typ)}" is '
        f"{format_type(parameter, ctx.api.options)}; a beat takes a Context subclass",
        ctx.args[0][0],
        code=CADENCE_BEAT,
    )
    return ctx.default_return_type
