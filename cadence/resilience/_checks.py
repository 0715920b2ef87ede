"""Argument checks shared by the resilience decorators: bad values fail when decorating."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias, cast

__all__ = ["ExceptionFilter", "at_least", "exception_filter", "exception_types", "whole_at_least"]

ExceptionFilter: TypeAlias = (
    type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool]
)
"""Which failures a decorator acts on: exception types, or a predicate of the exception."""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def whole_at_least(where: str, name: str, value: object, minimum: int) -> None:
    """Raise `ValueError` unless `value` is an int >= `minimum`."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        raise ValueError(f"{where}: {name} must be an int >= {minimum}, got {value!r}")


def at_least(where: str, name: str, value: object, minimum: float, *, strict: bool = False) -> None:
    """Raise `ValueError` unless `value` is a number >= `minimum` (> with `strict`)."""
    ok = _is_number(value) and (
        cast("float", value) > minimum if strict else cast("float", value) >= minimum
    )
    if not ok:
        raise ValueError(
            f"{where}: {name} must be {'>' if strict else '>='} {minimum}, got {value!r}"
        )


def exception_types(where: str, name: str, value: object) -> tuple[type[BaseException], ...]:
    """Return `value` as a tuple of exception types, or raise `ValueError`."""
    items: tuple[object, ...] = (
        cast("tuple[object, ...]", value) if isinstance(value, tuple) else (value,)
    )
    for kind in items:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ValueError(f"{where}: {name} must be exception types, got {kind!r}")
    return cast("tuple[type[BaseException], ...]", items)


def _is_type_or_tuple(value: object) -> bool:
    return isinstance(value, type | tuple)


def exception_filter(where: str, on: object) -> Callable[[Exception], bool]:
    """Return a predicate for `on` (exception types or a predicate), or raise `ValueError`."""
    if _is_type_or_tuple(on):
        types = exception_types(where, "on", on)
        return lambda error: isinstance(error, types)
    if not callable(on):
        raise ValueError(f"{where}: on must be exception types or a predicate, got {on!r}")
    return cast("Callable[[Exception], bool]", on)
