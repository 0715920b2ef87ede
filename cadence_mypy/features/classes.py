"""Context classes: a `Context` must be a dataclass, an `ImmutableContext` a frozen one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mypy.nodes import CallExpr, Expression, RefExpr

from cadence_mypy import fullnames
from cadence_mypy.errorcodes import CADENCE_DATACLASS

if TYPE_CHECKING:
    from mypy.plugin import ClassDefContext


def _dataclass_decorator(decorators: list[Expression]) -> Expression | None:
    for decorator in decorators:
        target = decorator.callee if isinstance(decorator, CallExpr) else decorator
        if isinstance(target, RefExpr) and target.fullname == fullnames.DATACLASS:
            return decorator
    return None


def context_class_hook(ctx: ClassDefContext) -> None:
    """Report a `Context` subclass that is not a dataclass, or a mutable `ImmutableContext`."""
    info = ctx.cls.info
    if info.fullname in {fullnames.CONTEXT, fullnames.IMMUTABLE_CONTEXT}:
        return
    if not info.mro or not info.has_base(fullnames.CONTEXT):
        return
    decorator = _dataclass_decorator(ctx.cls.decorators)
    if decorator is None:
        ctx.api.fail(
            f'Context class "{info.name}" is not a dataclass; decorate it with @dataclass',
            ctx.cls,
            code=CADENCE_DATACLASS,
        )
        return
    if not info.has_base(fullnames.IMMUTABLE_CONTEXT):
        return
    frozen = False
    if isinstance(decorator, CallExpr):
        for arg, name in zip(decorator.args, decorator.arg_names, strict=True):
            if name == "frozen":
                frozen = ctx.api.parse_bool(arg) is True
    if not frozen:
        ctx.api.fail(
            f'ImmutableContext class "{info.name}" is not frozen; decorate it with '
            "@dataclass(frozen=True)",
            ctx.cls,
            code=CADENCE_DATACLASS,
        )
