"""Literal arguments of the resilience decorators, checked against their ranges."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from cadence_mypy import fullnames
from cadence_mypy.errorcodes import CADENCE_CONFIG
from cadence_mypy.lib import number

if TYPE_CHECKING:
    from mypy.plugin import FunctionContext
    from mypy.types import Type

# decorator -> argument -> (lower bound, whether the bound itself is excluded)
RULES: Final[dict[str, dict[str, tuple[float, bool]]]] = {
    fullnames.RETRY: {"max_attempts": (1, False), "delay": (0, False), "backoff": (1, False)},
    fullnames.TIMEOUT: {"seconds": (0, True)},
    fullnames.CIRCUIT_BREAKER: {"failure_threshold": (1, False), "recovery_timeout": (0, True)},
}


def config_hook(fullname: str) -> Callable[[FunctionContext], Type]:
    """Return the hook checking the literal arguments of the decorator `fullname`."""
    rules = RULES[fullname]
    decorator = fullname.rpartition(".")[2]

    def hook(ctx: FunctionContext) -> Type:
        for argument, (bound, strict) in rules.items():
            if argument not in ctx.callee_arg_names:
                continue
            for expr in ctx.args[ctx.callee_arg_names.index(argument)]:
                value = number(expr)
                if value is None or (value > bound if strict else value >= bound):
                    continue
                relation = ">" if strict else ">="
                ctx.api.fail(
                    f"{decorator}: {argument} must be {relation} {bound:g}, got {value:g}",
                    expr,
                    code=CADENCE_CONFIG,
                )
        return ctx.default_return_type

    return hook
