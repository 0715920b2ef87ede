"""The plugin class: routes mypy's hooks to the feature that checks each construct."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mypy.plugin import (
    ClassDefContext,
    FunctionContext,
    FunctionSigContext,
    MethodContext,
    Plugin,
    ReportConfigContext,
)

from cadence_mypy import fullnames
from cadence_mypy.features.beats import beat_hook
from cadence_mypy.features.classes import context_class_hook
from cadence_mypy.features.config import RULES, config_hook
from cadence_mypy.features.fields import fallback_hook, with_field_hook, with_fields_hook
from cadence_mypy.features.steps import step_hook
from cadence_mypy.features.template import template_hook

if TYPE_CHECKING:
    from mypy.types import FunctionLike, Type

__all__ = ["CadencePlugin"]

# Bumped when the plugin's checks change, so mypy's cache is not trusted across versions.
PLUGIN_VERSION = "4"

_STEP_HOOKS = {method: step_hook(method) for method in fullnames.BUILDER_METHODS}
_CONFIG_HOOKS = {name: config_hook(name) for name in RULES}
_DECORATOR_HOOKS: dict[str, Callable[[MethodContext], Type]] = {
    **{f"{guard}.__call__": fallback_hook for guard in fullnames.FALLBACK_GUARDS},
    f"{fullnames.BEAT_DECORATOR}.__call__": beat_hook,
}


class CadencePlugin(Plugin):
    """Adds cadence's checks to mypy; never changes an inferred type."""

    def get_function_hook(self, fullname: str) -> Callable[[FunctionContext], Type] | None:
        """Route calls of `beat`, `Cadence(...)`, `retry`, `timeout` and `circuit_breaker`."""
        if fullname == fullnames.BEAT:
            return beat_hook
        return _CONFIG_HOOKS.get(fullname)

    def get_function_signature_hook(
        self, fullname: str
    ) -> Callable[[FunctionSigContext], FunctionLike] | None:
        """Route `Cadence(...)`: a call with no context gets a note giving the fix."""
        return template_hook if fullname == fullnames.CADENCE else None

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        """Route builder calls, `with_field(s)`, and applied `fallback`/`beat` decorators."""
        decorator_hook = _DECORATOR_HOOKS.get(fullname)
        if decorator_hook is not None:
            return decorator_hook
        method = fullname.rpartition(".")[2]
        if method == "with_field":
            return with_field_hook
        if method == "with_fields":
            return with_fields_hook
        return _STEP_HOOKS.get(method)

    def get_base_class_hook(self, fullname: str) -> Callable[[ClassDefContext], None] | None:
        """Check every class with a base: it may be a context class, directly or not."""
        if fullname.startswith(("builtins.", "typing.", "typing_extensions.", "abc.")):
            return None
        return context_class_hook

    def report_config_data(self, ctx: ReportConfigContext) -> Any:  # mypy's own signature
        """Tie mypy's cache to the plugin's version (bumped whenever its checks change)."""
        return PLUGIN_VERSION
