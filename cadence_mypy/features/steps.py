"""Builder calls of a chain: callables over the wrong context, of the wrong shape; names.

Every note here follows mypy's own `arg-type`/`list-item` error on the same argument and names
the callable and both types; the one error (`cadence-immutable`) is a beat over an
`ImmutableContext` returning `None`, which mypy accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from mypy.errorcodes import ARG_TYPE, LIST_ITEM, ErrorCode
from mypy.messages import format_type
from mypy.nodes import CallExpr, Expression, LambdaExpr, ListExpr, TupleExpr
from mypy.subtypes import find_member, is_subtype
from mypy.types import CallableType, Instance, Type, UnionType, get_proper_type, has_type_vars

from cadence_mypy import fullnames
from cadence_mypy.errorcodes import (
    CADENCE_CONTEXT,
    CADENCE_IMMUTABLE,
    CADENCE_LAMBDA,
    CADENCE_NAME,
)
from cadence_mypy.lib import (
    cadence_name,
    callable_name,
    chain_calls,
    first_parameter,
    immutable_info,
    note_unless_silenced,
    result_type,
    returns_none,
    signature,
    step_name,
    takes_one_argument,
)

# The hook methods of `CadenceHooks`, each `(name, context, ...)` once bound.
HOOK_METHODS = ("before_cadence", "after_cadence", "before_beat", "after_beat", "on_error")

if TYPE_CHECKING:
    from mypy.plugin import MethodContext


def step_hook(method: str) -> Callable[[MethodContext], Type]:
    """Return the hook for `Cadence.<method>` (a step builder, `on_error` or a hooks builder)."""

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
        checker = _Checker(ctx, receiver.args[0], name, find_member(method, receiver, receiver))
        if method == "then":
            checker.beats("beat")
        elif method == "sync":
            checker.beats("beats")
        elif method == "split":
            checker.beats("condition", what="condition")
            checker.beats("if_true")
            checker.beats("if_false")
        elif method == "child":
            checker.merge()
        elif method == "on_error":
            checker.handler()
        elif method == "with_hooks":
            checker.hooks()
        else:
            checker.reporter()
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

    def __init__(
        self, ctx: MethodContext, context_type: Type, cadence: str | None, method: Type | None
    ) -> None:
        self.ctx = ctx
        bound = get_proper_type(method) if method is not None else None
        self.method = bound if isinstance(bound, CallableType) else None
        self.context_type = context_type
        self.runs_over = f'cadence "{cadence}"' if cadence else "the cadence"

    def _format(self, typ: Type) -> str:
        return format_type(typ, self.ctx.api.options)

    def _note(self, message: str, expr: Expression, error: ErrorCode) -> None:
        note_unless_silenced(self.ctx.api, message, expr, code=CADENCE_CONTEXT, error=error)

    def _arguments(self, formal: str) -> list[tuple[Expression, Type]]:
        if formal not in self.ctx.callee_arg_names:
            return []
        index = self.ctx.callee_arg_names.index(formal)
        return list(zip(self.ctx.args[index], self.ctx.arg_types[index], strict=True))

    def _callables(self, formal: str) -> Iterator[tuple[Expression, Type, CallableType]]:
        """Yield the arguments for `formal` worth checking: callables, not generic, no lambdas."""
        for expr, typ in self._arguments(formal):
            call = signature(typ)
            if call is not None and not has_type_vars(call) and not isinstance(expr, LambdaExpr):
                yield expr, typ, call

    def _note_takes(
        self, what: str, expr: Expression, parameter: Type, error: ErrorCode = ARG_TYPE
    ) -> None:
        """Note that `what` (`Beat "name"`, say) takes `parameter`, not the cadence's context."""
        self._note(
            f"{what} takes {self._format(parameter)}, "
            f"but {self.runs_over} runs over {self._format(self.context_type)}",
            expr,
            error,
        )

    def _expected_result(self, formal: str) -> Type | None:
        """Return what the callable expected by parameter `formal` must return."""
        if self.method is None or formal not in self.method.arg_names:
            return None
        expected = get_proper_type(self.method.arg_types[self.method.arg_names.index(formal)])
        items = expected.items if isinstance(expected, UnionType) else [expected]
        for item in items:
            proper = get_proper_type(item)
            if isinstance(proper, Instance) and len(proper.args) == 1:  # Sequence[beat]
                proper = get_proper_type(proper.args[0])
            if isinstance(proper, CallableType):
                return proper.ret_type
        return None

    def beats(self, formal: str, what: str = "beat") -> None:
        expected = self._expected_result(formal)
        for expr, typ in self._arguments(formal):
            items = expr.items if isinstance(expr, ListExpr | TupleExpr) else None
            if items is None:
                self._beat(expr, typ, what, ARG_TYPE, expected)
            else:
                for item in items:
                    item_type = self.ctx.api.get_expression_type(item)
                    self._beat(item, item_type, what, LIST_ITEM, expected)

    def _beat(
        self, expr: Expression, typ: Type, what: str, error: ErrorCode, expected: Type | None
    ) -> None:
        if isinstance(expr, LambdaExpr):
            self.ctx.api.fail(
                f"A lambda used as a {what} is named <lambda> in hooks, errors and diagrams; "
                "give it a name with def",
                expr,
                code=CADENCE_LAMBDA,
            )
            return
        name = callable_name(expr)
        if takes_one_argument(typ) is False:
            self._note(
                f'{what.capitalize()} "{name}" cannot be called with one argument; a {what} '
                f"is {what}(context), over {self._format(self.context_type)}",
                expr,
                error,
            )
            return
        parameter = first_parameter(typ)
        if parameter is None or has_type_vars(parameter):
            return  # a generic beat: mypy solves it, or says why not
        if not is_subtype(self.context_type, parameter):
            self._note_takes(f'{what.capitalize()} "{name}"', expr, parameter, error)
            return
        if what == "beat" and immutable_info(self.context_type) is not None and returns_none(typ):
            self.ctx.api.fail(
                f'Beat "{name}" returns None, but {self.runs_over} runs over ImmutableContext '
                f"{self._format(self.context_type)}: the change is thrown away; return the new "
                "context (ctx.with_field(...))",
                expr,
                code=CADENCE_IMMUTABLE,
            )
            return
        self._result(expr, typ, what, error=error, expected=expected, name=name)

    def _result(
        self,
        expr: Expression,
        typ: Type,
        what: str,
        *,
        error: ErrorCode,
        expected: Type | None,
        name: str,
    ) -> None:
        """Note a beat that returns a value, or a condition that does not return `bool`."""
        result = result_type(typ)
        call = signature(typ)
        if result is None or call is None or expected is None or has_type_vars(call):
            return
        if is_subtype(call.ret_type, expected):
            return
        returned, is_async = result
        awaited = " when awaited" if is_async else ""
        if what == "condition":
            wants = 'a condition returns "bool"'
        else:
            wants = (
                "a beat returns None (it changes the context in place) or a new "
                f"{self._format(self.context_type)}"
            )
        self._note(
            f'{what.capitalize()} "{name}" returns {self._format(returned)}{awaited}; {wants}',
            expr,
            error,
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
        self._factory(child.args[0])
        expected = (self.context_type, child.args[0])
        expr, typ = merges[0]
        merge_type = get_proper_type(typ)
        if not isinstance(merge_type, CallableType) or has_type_vars(merge_type):
            return
        wanted = f"({self._format(expected[0])}, {self._format(expected[1])})"
        name = callable_name(expr)
        if not merge_type.min_args <= 2 <= merge_type.max_possible_positional_args():
            self._note(
                f'Merge "{name}" cannot be called with two arguments; a merge is '
                f"merge(parent, child) {wanted}",
                expr,
                ARG_TYPE,
            )
            return
        positional = [merge_type.arg_types[i] for i in range(min(2, len(merge_type.arg_types)))]
        star = merge_type.var_arg()
        if len(positional) < 2 and star is not None:
            positional += [star.typ] * (2 - len(positional))
        if all(is_subtype(e, p) for e, p in zip(expected, positional, strict=True)):
            return
        takes = ", ".join(self._format(p) for p in positional)
        self._note(
            f'Merge "{name}" takes ({takes}), but this child step gives merge(parent, child) '
            f"{wanted}",
            expr,
            ARG_TYPE,
        )

    def _factory(self, child_context: Type) -> None:
        """Note a `context=` factory that does not build the child's context from the parent."""
        for expr, typ, call in self._callables("context"):
            name = callable_name(expr)
            if takes_one_argument(typ) is False:
                self._note(
                    f'Context factory "{name}" cannot be called with one argument; it is '
                    f"context(parent) over {self._format(self.context_type)}",
                    expr,
                    ARG_TYPE,
                )
                continue
            parameter = first_parameter(typ)
            if parameter is not None and not is_subtype(self.context_type, parameter):
                self._note_takes(f'Context factory "{name}"', expr, parameter)
            elif not is_subtype(call.ret_type, child_context):
                self._note(
                    f'Context factory "{name}" returns {self._format(call.ret_type)}, but the '
                    f"child cadence runs over {self._format(child_context)}",
                    expr,
                    ARG_TYPE,
                )

    def handler(self) -> None:
        """Note an `on_error` handler for another context, or not of two arguments."""
        for expr, typ, call in self._callables("handler"):
            name = callable_name(expr)
            if not call.min_args <= 2 <= call.max_possible_positional_args():
                self._note(
                    f'Error handler "{name}" cannot be called with two arguments; a handler is '
                    f"handler(context, error) ({self._format(self.context_type)}, "
                    '"CadenceError")',
                    expr,
                    ARG_TYPE,
                )
                continue
            parameter = first_parameter(typ)
            if parameter is not None and not is_subtype(self.context_type, parameter):
                self._note_takes(f'Error handler "{name}"', expr, parameter)

    def hooks(self) -> None:
        """Note hooks (one object or a list) whose methods take another context."""
        for expr, typ in self._arguments("hooks"):
            items = expr.items if isinstance(expr, ListExpr | TupleExpr) else None
            if items is None:
                self._hooks_object(expr, typ, ARG_TYPE)
            else:
                for item in items:
                    self._hooks_object(item, self.ctx.api.get_expression_type(item), LIST_ITEM)

    def _hooks_object(self, expr: Expression, typ: Type, error: ErrorCode) -> None:
        instance = get_proper_type(typ)
        if not isinstance(instance, Instance):
            return
        own = [m for m in HOOK_METHODS if m in instance.type.names]  # its own methods first
        for method in own + [m for m in HOOK_METHODS if m not in own]:
            member = find_member(method, instance, instance)
            bound = get_proper_type(member) if member is not None else None
            if not isinstance(bound, CallableType) or len(bound.arg_types) < 2:
                continue
            parameter = bound.arg_types[1]  # (name, context, ...)
            if has_type_vars(parameter) or is_subtype(self.context_type, parameter):
                continue
            self._note(
                f'Hooks "{instance.type.name}" take {self._format(parameter)} ({method}), but '
                f"{self.runs_over} runs over {self._format(self.context_type)}",
                expr,
                error,
            )
            return

    def reporter(self) -> None:
        """Note a reporter `reporter(beat_name, elapsed, context)` for another context."""
        for expr, _, call in self._callables("reporter"):
            if len(call.arg_types) < 3 or not call.min_args <= 3:
                continue
            parameter = call.arg_types[2]
            if not is_subtype(self.context_type, parameter):
                self._note_takes(f'Reporter "{callable_name(expr)}"', expr, parameter)
