"""Steps of a chain: beats, conditions and merges over the wrong context; duplicate names."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mypy.errorcodes import ARG_TYPE, LIST_ITEM, ErrorCode
from mypy.messages import format_type
from mypy.nodes import CallExpr, Expression, LambdaExpr, ListExpr, TupleExpr
from mypy.subtypes import is_subtype
from mypy.types import CallableType, Instance, Type, get_proper_type, has_type_vars

from cadence_mypy import fullnames
from cadence_mypy.errorcodes import CADENCE_CONTEXT, CADENCE_LAMBDA, CADENCE_NAME
from cadence_mypy.lib import (
    cadence_name,
    callable_name,
    chain_calls,
    first_parameter,
    note_unless_silenced,
    step_name,
)

if TYPE_CHECKING:
    from mypy.plugin import MethodContext


def step_hook(method: str) -> Callable[[MethodContext], Type]:
    """Return the hook for `Cadence.<method>` (`then`, `sync`, `split` or `child`)."""

    def hook(ctx: MethodContext) -> Type:
        receiver = get_proper_type(ctx.type)
        call = ctx.context
        if not (
            isinstance(receiver, Instance)
            and receiver.type.has_base(fullnames.CADENCE)
            and receiver.args
            and isinstance(call, CallExpr)
        ):
            return ctx.default_return_type
        chain = chain_calls(call)
        name = cadence_name(chain)
        _check_name(ctx, chain, name)
        checker = _Checker(ctx, receiver.args[0], name)
        if method == "then":
            checker.beats("beat")
        elif method == "sync":
            checker.beats("beats")
        elif method == "split":
            checker.beats("condition", what="condition")
            checker.beats("if_true")
            checker.beats("if_false")
        else:
            checker.merge()
        return ctx.default_return_type

    return hook


def _check_name(ctx: MethodContext, chain: list[CallExpr], cadence: str | None) -> None:
    name = step_name(chain[-1])
    if name is None:
        return
    earlier = {n.value for c in chain[:-1] if (n := step_name(c)) is not None}
    if name.value in earlier:
        in_cadence = f' in cadence "{cadence}"' if cadence else " in this chain"
        ctx.api.fail(
            f'Step name "{name.value}" is used twice{in_cadence}; step names must be unique',
            name,
            code=CADENCE_NAME,
        )


class _Checker:
    """Checks the callables given to one builder call against the cadence's context type."""

    def __init__(self, ctx: MethodContext, context_type: Type, cadence: str | None) -> None:
        self.ctx = ctx
        self.context_type = context_type
        self.runs_over = f'cadence "{cadence}"' if cadence else "the cadence"

    def _arguments(self, formal: str) -> list[tuple[Expression, Type]]:
        if formal not in self.ctx.callee_arg_names:
            return []
        index = self.ctx.callee_arg_names.index(formal)
        return list(zip(self.ctx.args[index], self.ctx.arg_types[index], strict=True))

    def beats(self, formal: str, what: str = "beat") -> None:
        for expr, typ in self._arguments(formal):
            items = expr.items if isinstance(expr, ListExpr | TupleExpr) else None
            if items is None:
                self._beat(expr, typ, what, ARG_TYPE)
            else:
                for item in items:
                    self._beat(item, self.ctx.api.get_expression_type(item), what, LIST_ITEM)

    def _beat(self, expr: Expression, typ: Type, what: str, error: ErrorCode) -> None:
        if isinstance(expr, LambdaExpr):
            self.ctx.api.fail(
                f"A lambda used as a {what} is named <lambda> in hooks, errors and diagrams; "
                "give it a name with def",
                expr,
                code=CADENCE_LAMBDA,
            )
            return
        parameter = first_parameter(typ)
        if (
            parameter is None
            or has_type_vars(parameter)  # a generic beat: mypy solves it, or says why not
            or is_subtype(self.context_type, parameter)
        ):
            return
        options = self.ctx.api.options
        note_unless_silenced(
            self.ctx.api,
            f'{what.capitalize()} "{callable_name(expr)}" takes {format_type(parameter, options)}, '
            f"but {self.runs_over} runs over {format_type(self.context_type, options)}",
            expr,
            code=CADENCE_CONTEXT,
            error=error,
        )

    def merge(self) -> None:
        children = self._arguments("cadence")
        merges = self._arguments("merge")
        if not children or not merges:
            return
        child = get_proper_type(children[0][1])
        if not (
            isinstance(child, Instance) and child.type.has_base(fullnames.CADENCE) and child.args
        ):
            return
        expected = (self.context_type, child.args[0])
        expr, typ = merges[0]
        signature = get_proper_type(typ)
        if not isinstance(signature, CallableType) or has_type_vars(signature):
            return
        options = self.ctx.api.options
        wanted = f"({format_type(expected[0], options)}, {format_type(expected[1], options)})"
        name = callable_name(expr)
        if not signature.min_args <= 2 <= signature.max_possible_positional_args():
            note_unless_silenced(
                self.ctx.api,
                f'Merge "{name}" cannot be called with two arguments; a merge is '
                f"merge(parent, child) {wanted}",
                expr,
                code=CADENCE_CONTEXT,
                error=ARG_TYPE,
            )
            return
        positional = [signature.arg_types[i] for i in range(min(2, len(signature.arg_types)))]
        star = signature.var_arg()
        if len(positional) < 2 and star is not None:
            positional += [star.typ] * (2 - len(positional))
        if all(is_subtype(e, p) for e, p in zip(expected, positional, strict=True)):
            return
        takes = ", ".join(format_type(p, options) for p in positional)
        note_unless_silenced(
            self.ctx.api,
            f'Merge "{name}" takes ({takes}), but this child step gives merge(parent, child) '
            f"{wanted}",
            expr,
            code=CADENCE_CONTEXT,
            error=ARG_TYPE,
        )
