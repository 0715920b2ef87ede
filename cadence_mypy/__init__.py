"""cadence_mypy: a mypy plugin that checks what cadence's types alone cannot say.

Enable it with `plugins = ["cadence_mypy"]` in mypy's configuration. It adds errors and notes
with its own codes (see `cadence_mypy.errorcodes`) and never changes an inferred type. It never
imports the cadence runtime: it reads the program only through mypy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy.plugin import Plugin

__all__ = ["plugin"]


def plugin(version: str) -> type[Plugin]:  # noqa: ARG001 # one plugin serves every supported mypy
    """Return the plugin class for mypy `version` (mypy's plugin entry point)."""
    from cadence_mypy.main import CadencePlugin  # noqa: PLC0415 # keeps `import cadence_mypy` cheap

    return CadencePlugin
