"""Small helpers over mypy's nodes and types, shared by the plugin's features."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mypy.nodes import (
    CallExpr,
    Expression,
    FloatExpr,
    IntExpr,
    LambdaExpr,
    MemberExpr,
    NameExpr,
    RefExpr,
    StrExpr,
    TypeInfo,
    UnaryExpr,
)
from mypy.subtypes import find_member
from mypy.types import (
    CallableType,
    Instance,
    LiteralType,
    NoneType,
    Type,
    UnionType,
    get_proper_type,
)

from cadence_mypy import fullnames

if TYPE_CHECKING:
    from mypy.errorcodes import ErrorCode
    from mypy.nodes import Context
    from mypy.plugin import CheckerPluginInterface


@dataclass(frozen=True)
class Field:
    """A dataclass field as the plugin sees it."""

    name: str
    type: Type | None
    in_init: bool


def dataclass_fields(info: TypeInfo) -> dict[str, Field] | None:
    """Return the fields of a dataclass (None if mypy does not know it as one)."""
    metadata = info.metadata.get("dataclass")
    if not metadata:
        return None
    fields: dict[str, Field] = {}
    for attribute in metadata.get("attributes", []):
        name = attribute["name"]
        node = info.get(name)
        fields[name] = Field(name, node.type if node is not None else None, attribute["is_in_init"])
    return fields


def did_you_mean(name: str, candidates: list[str] | set[str] | dict[str, Field]) -> str:
    """Return `; did you mean "x"?` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f'; did you mean "{close[0]}"?' if close else ""


def literal_strings(typ: Type) -> list[str] | None:
    """Return the strings a `Literal` type (or a union of them) holds, else None."""
    proper = get_proper_type(typ)
    if isinstance(proper, LiteralType) and isinstance(proper.value, str):
        return [proper.value]
    if isinstance(proper, Instance) and proper.last_known_value is not None:
        return literal_strings(proper.last_known_value)
    if isinstance(proper, UnionType):
        values: list[str] = []
        for item in proper.items:
            found = literal_strings(item)
            if found is None:
                return None
            values.extend(found)
        return values
    return None


def number(expr: Expression) -> float | None:
    """Return the value of a numeric literal expression (`3`, `-1.5`), else None."""
    if isinstance(expr, IntExpr | FloatExpr):
        return expr.value
    if isinstance(expr, UnaryExpr) and expr.op in {"-", "+"}:
        inner = number(expr.expr)
        if inner is not None:
            return -inner if expr.op == "-" else inner
    return None


def context_info(typ: Type) -> TypeInfo | None:
    """Return the class of a context type (an instance of a `Context` subclass), else None."""
    proper = get_proper_type(typ)
    if isinstance(proper, Instance) and proper.type.has_base(fullnames.CONTEXT):
        return proper.type
    return None


def first_parameter(typ: Type) -> Type | None:
    """Return the type of a callable's first positional parameter, if it has one.

    A function whose first parameter is `self` or `cls` (a method seen through its class, as a
    decorator sees it) is looked at from its second parameter.
    """
    proper = get_proper_type(typ)
    if isinstance(proper, Instance):  # a callable object: look at its __call__
        call = proper.type.get_method("__call__")
        if call is None or call.type is None:
            return None
        signature = get_proper_type(call.type)
        if not isinstance(signature, CallableType) or len(signature.arg_types) < 2:
            return None
        return signature.arg_types[1]
    if isinstance(proper, CallableType) and proper.arg_types:
        if proper.arg_names[0] in {"self", "cls"} and len(proper.arg_types) > 1:
            return proper.arg_types[1]
        return proper.arg_types[0]
    return None


def note_unless_silenced(
    api: CheckerPluginInterface, message: str, where: Context, *, code: ErrorCode, error: ErrorCode
) -> None:
    """Add a note explaining mypy's `error` at `where`, unless that error is ignored or disabled.

    The note follows the error: a `# type: ignore[<error>]` on its line, or the error's code
    disabled, silences the note too.
    """
    options = api.options
    if error.code in {c.code for c in options.disabled_error_codes}:
        return
    errors = getattr(getattr(api, "msg", None), "errors", None)  # mypy's Errors, when reachable
    ignored = getattr(errors, "ignored_lines", {}).get(getattr(errors, "file", None), {})
    codes = ignored.get(where.line)
    if codes is not None and (not codes or error.code in codes):
        return
    api.msg.note(message, where, code=code)


def callable_name(expr: Expression, typ: Type | None = None) -> str:
    """Return a readable name for the callable an argument expression (of type `typ`) gives."""
    if isinstance(expr, NameExpr | MemberExpr):
        return expr.name
    if isinstance(expr, CallExpr):
        return callable_name(expr.callee) + "(...)"
    if isinstance(expr, LambdaExpr):
        return "<lambda>"
    proper = get_proper_type(typ) if typ is not None else None
    if isinstance(proper, CallableType) and proper.name:
        return proper.name.partition(" of ")[0]  # mypy names methods "f of Class"
    return "this beat"


def chain_calls(call: CallExpr) -> list[CallExpr]:
    """Return the builder calls of a chain `Cadence(...).then(...).sync(...)`, innermost first.

    The list ends with `call` itself; it starts with the `Cadence(...)` constructor call when
    the chain begins with one.
    """
    calls: list[CallExpr] = []
    node: Expression = call
    while isinstance(node, CallExpr):
        calls.append(node)
        callee = node.callee
        if isinstance(callee, MemberExpr):
            node = callee.expr
        else:
            break
    calls.reverse()
    return calls


def step_name(call: CallExpr) -> StrExpr | None:
    """Return the literal name of a step-building call (`.then("name", ...)`), if any."""
    callee = call.callee
    if not (isinstance(callee, MemberExpr) and callee.name in fullnames.STEP_METHODS):
        return None
    for arg, arg_name in zip(call.args, call.arg_names, strict=True):
        if arg_name in {None, "name"}:
            return arg if isinstance(arg, StrExpr) else None
    return None


def cadence_name(chain: list[CallExpr]) -> str | None:
    """Return the literal name given to `Cadence(...)` at the start of a chain, if any."""
    first = chain[0]
    callee = first.callee
    if isinstance(callee, RefExpr) and callee.fullname == fullnames.CADENCE and first.args:
        name = first.args[0]
        if isinstance(name, StrExpr):
            return name.value
    return None


def immutable_info(typ: Type) -> TypeInfo | None:
    """Return the class of an `ImmutableContext` type, else None."""
    proper = get_proper_type(typ)
    if isinstance(proper, Instance) and proper.type.has_base(fullnames.IMMUTABLE_CONTEXT):
        return proper.type
    return None


def signature(typ: Type) -> CallableType | None:
    """Return the call signature of a callable type (a callable object's bound `__call__`)."""
    proper = get_proper_type(typ)
    if isinstance(proper, CallableType):
        return proper
    if isinstance(proper, Instance):
        call = find_member("__call__", proper, proper, is_operator=True)
        bound = get_proper_type(call) if call is not None else None
        return bound if isinstance(bound, CallableType) else None
    return None


def result_type(typ: Type) -> tuple[Type, bool] | None:
    """Return what a callable returns, awaited if it is a coroutine function, and whether it is.

    None when the type is not a plain callable (an overload, `Any`, ...).
    """
    call = signature(typ)
    if call is None:
        return None
    returned = get_proper_type(call.ret_type)
    if (
        isinstance(returned, Instance)
        and returned.type.fullname == "typing.Coroutine"
        and len(returned.args) == 3
    ):
        return returned.args[2], True
    return call.ret_type, False


def returns_none(typ: Type) -> bool:
    """Whether a callable (sync or async) returns exactly `None`."""
    result = result_type(typ)
    return result is not None and isinstance(get_proper_type(result[0]), NoneType)


def takes_one_argument(typ: Type) -> bool | None:
    """Whether a callable can be called with one positional argument (None when unknown)."""
    call = signature(typ)
    if call is None:
        return None
    offset = 1 if call.arg_names[:1] in (["self"], ["cls"]) else 0
    return call.min_args - offset <= 1 <= call.max_possible_positional_args() - offset
