"""The plugin's error codes; each can be disabled with `disable_error_code`."""

from __future__ import annotations

from typing import Final

from mypy.errorcodes import ErrorCode

__all__ = [
    "CADENCE_BEAT",
    "CADENCE_CONFIG",
    "CADENCE_CONTEXT",
    "CADENCE_DATACLASS",
    "CADENCE_FIELD",
    "CADENCE_IMMUTABLE",
    "CADENCE_LAMBDA",
    "CADENCE_NAME",
]

_CATEGORY: Final = "cadence"

CADENCE_FIELD: Final = ErrorCode(
    "cadence-field", "A context field that does not exist, or a value of the wrong type", _CATEGORY
)
CADENCE_CONFIG: Final = ErrorCode(
    "cadence-config", "A resilience decorator argument out of its range", _CATEGORY
)
CADENCE_CONTEXT: Final = ErrorCode(
    "cadence-context", "A beat, condition or merge over the wrong context", _CATEGORY
)
CADENCE_NAME: Final = ErrorCode("cadence-name", "Two steps of one name in a chain", _CATEGORY)
CADENCE_DATACLASS: Final = ErrorCode(
    "cadence-dataclass", "A context class that is not a (frozen) dataclass", _CATEGORY
)
CADENCE_BEAT: Final = ErrorCode(
    "cadence-beat",
    "The note on mypy's error for @beat on a function whose first parameter is not a context",
    _CATEGORY,
)
CADENCE_IMMUTABLE: Final = ErrorCode(
    "cadence-immutable",
    "A beat over an ImmutableContext that returns None (its with_field result thrown away)",
    _CATEGORY,
)
# Opinionated: off unless enabled with `enable_error_code = cadence-lambda`.
CADENCE_LAMBDA: Final = ErrorCode(
    "cadence-lambda",
    "A lambda used as a beat (it is named <lambda> in hooks, errors and diagrams)",
    _CATEGORY,
    default_enabled=False,
)
