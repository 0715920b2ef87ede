"""`Cadence(name)` with neither a template nor a `context_type`: a note giving the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mypy.errorcodes import CALL_OVERLOAD
from mypy.nodes import CallExpr, IndexExpr, NameExpr, StrExpr

from cadence_mypy.errorcodes import CADENCE_CONTEXT
from cadence_mypy.lib import note_unless_silenced

if TYPE_CHECKING:
    from mypy.plugin import FunctionSigContext
    from mypy.types import FunctionLike


def template_hook(ctx: FunctionSigContext) -> FunctionLike:
    """Explain mypy's `call-overload` error on `Cadence("name")` or `Cadence[Ctx]("name")`.

    A signature hook, because mypy calls no function hook for a call no overload matches. It
    runs once per overload of `Cadence.__init__`; the note is added for the first one (the
    template form) only, on the name argument so that it sorts after mypy's error.
    """
    call = ctx.context
    signature = ctx.default_signature
    if (
        not isinstance(call, CallExpr)
        or len(call.args) != 1
        or call.arg_names[0] not in {None, "name"}
        or "context" not in signature.arg_names
    ):
        return signature
    name = call.args[0]
    label = f'"{name.value}"' if isinstance(name, StrExpr) else "name"
    context = "YourContext"
    if isinstance(call.callee, IndexExpr) and isinstance(call.callee.index, NameExpr):
        context = call.callee.index.name
    note_unless_silenced(
        ctx.api,
        f"Cadence({label}) has no context type: pass a template, Cadence({label}, "
        f"{context}()), or declare the class, Cadence({label}, context_type={context})",
        name,
        code=CADENCE_CONTEXT,
        error=CALL_OVERLOAD,
    )
    return signature
