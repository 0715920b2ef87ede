"""Context fields named by string: `with_field`, `with_fields`, and `fallback(field=...)`."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

from mypy.messages import format_type
from mypy.nodes import (
    ARG_NAMED,
    ARG_POS,
    CallExpr,
    Context,
    Decorator,
    DictExpr,
    Expression,
    RefExpr,
    StrExpr,
    TypeInfo,
)
from mypy.subtypes import is_subtype
from mypy.types import Instance, Type, get_proper_type

from cadence_mypy import fullnames
from cadence_mypy.errorcodes import CADENCE_FIELD
from cadence_mypy.lib import (
    context_info,
    dataclass_fields,
    did_you_mean,
    first_parameter,
    literal_strings,
)

if TYPE_CHECKING:
    from mypy.plugin import CheckerPluginInterface, MethodContext


def check_field(
    api: CheckerPluginInterface,
    info: TypeInfo,
    name: str,
    *,
    value: Type | None,
    where: Context,
    what: str,
) -> None:
    """Report a field `name` that `info` lacks or cannot set, or whose type rejects `value`."""
    fields = dataclass_fields(info)
    if fields is None:
        return
    field = fields.get(name)
    if field is None:
        api.fail(
            f'{what}: "{info.name}" has no field "{name}"{did_you_mean(name, fields)}',
            where,
            code=CADENCE_FIELD,
        )
        return
    if not field.in_init:
        api.fail(
            f'{what}: field "{info.name}.{name}" is declared with init=False and cannot be set',
            where,
            code=CADENCE_FIELD,
        )
        return
    if value is not None and field.type is not None and not is_subtype(value, field.type):
        options = api.options
        api.fail(
            f'{what}: field "{info.name}.{name}" is {format_type(field.type, options)}, '
            f"not {format_type(value, options)}",
            where,
            code=CADENCE_FIELD,
        )


def _immutable_receiver(ctx: MethodContext) -> TypeInfo | None:
    receiver = get_proper_type(ctx.type)
    if isinstance(receiver, Instance) and receiver.type.has_base(fullnames.IMMUTABLE_CONTEXT):
        return receiver.type
    return None


def with_field_hook(ctx: MethodContext) -> Type:
    """Check `context.with_field(name, value)`: a literal name (or union of them) must fit."""
    info = _immutable_receiver(ctx)
    if info is None or len(ctx.arg_types) < 2 or not ctx.arg_types[0] or not ctx.arg_types[1]:
        return ctx.default_return_type
    names = literal_strings(ctx.arg_types[0][0])
    if names is None:  # a plain str: checked at run time
        return ctx.default_return_type
    value = ctx.arg_types[1][0]
    for name in names:
        check_field(ctx.api, info, name, value=value, where=ctx.args[0][0], what="with_field")
    return ctx.default_return_type


def with_fields_hook(ctx: MethodContext) -> Type:
    """Check `context.with_fields(name=value, ...)`: every keyword must be a settable field."""
    info = _immutable_receiver(ctx)
    call = ctx.context
    if info is None or not isinstance(call, CallExpr):
        return ctx.default_return_type
    for arg, kind, arg_name in zip(call.args, call.arg_kinds, call.arg_names, strict=True):
        if kind == ARG_NAMED and arg_name is not None:
            value = ctx.api.get_expression_type(arg)
            check_field(ctx.api, info, arg_name, value=value, where=arg, what="with_fields")
    return ctx.default_return_type


def fallback_hook(ctx: MethodContext) -> Type:
    """Check `@fallback(field=..., default=...)` against the decorated beat's context."""
    if not ctx.arg_types or not ctx.arg_types[0]:
        return ctx.default_return_type
    context_type = first_parameter(ctx.arg_types[0][0])
    info = context_info(context_type) if context_type is not None else None
    if info is None:
        return ctx.default_return_type
    with _past_overload_matching(ctx.api):
        for call in _fallback_calls(ctx.context):
            _check_fallback_call(ctx.api, info, call)
    return ctx.default_return_type


@contextmanager
def _past_overload_matching(api: CheckerPluginInterface) -> Generator[None, None, None]:
    """Report errors even while mypy tries one overload of a `fallback(...)` result's `__call__`.

    mypy tries each overload with errors filtered and takes the first without errors: a field
    error reported there would reject a matching overload (and mypy does not check the chosen one
    again). The field checks depend only on the `fallback(...)` arguments and the beat's context,
    the same for every overload tried, so they go past the filter; mypy drops the repeats.
    """
    errors = getattr(getattr(api, "msg", None), "errors", None)
    watchers = getattr(errors, "_watchers", None)  # mypy's private stack of error filters
    if not isinstance(watchers, list) or not watchers:
        yield
        return
    watchers = cast("list[object]", watchers)
    saved = watchers.copy()
    watchers.clear()
    try:
        yield
    finally:
        watchers.extend(saved)


def _fallback_calls(node: Context) -> list[CallExpr]:
    """Return the `fallback(...)` calls applied at `node` (a decorator list or a direct call)."""
    if isinstance(node, Decorator):
        candidates: list[Expression] = list(node.decorators)
    elif isinstance(node, CallExpr):
        candidates = [node.callee]
    else:
        return []
    return [
        c
        for c in candidates
        if isinstance(c, CallExpr)
        and isinstance(c.callee, RefExpr)
        and c.callee.fullname == fullnames.FALLBACK
    ]


def _check_fallback_call(api: CheckerPluginInterface, info: TypeInfo, call: CallExpr) -> None:
    default: Expression | None = None
    field: Expression | None = None
    has_handler = False
    for arg, kind, name in zip(call.args, call.arg_kinds, call.arg_names, strict=True):
        if name == "default" or (kind == ARG_POS and name is None):
            default = arg
        elif name == "field":
            field = arg
        elif name == "handler":
            has_handler = True
    if field is not None:
        if not isinstance(field, StrExpr):
            return
        value = None if has_handler or default is None else api.get_expression_type(default)
        check_field(api, info, field.value, value=value, where=field, what="fallback")
    elif isinstance(default, DictExpr):
        for key, item in default.items:
            if isinstance(key, StrExpr):
                item_type = api.get_expression_type(item)
                check_field(api, info, key.value, value=item_type, where=key, what="fallback")
