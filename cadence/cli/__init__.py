"""The `cadence` command line (rich-click), installed with the `cli` extra.

Importing this package imports nothing beyond the standard library: `main` loads rich-click
(and each command loads what it needs) only when it runs, and prints an install hint when the
extra is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["INSTALL_HINT", "main"]

INSTALL_HINT = "the cadence command needs the cli extra: pip install 'cadence-flow[cli]'"
"""The line printed when rich-click or libcst is missing."""


def main(args: Sequence[str] | None = None) -> NoReturn:
    """Run the `cadence` command with `args` (default: `sys.argv[1:]`) and exit with its code."""
    missing = _missing_dependency()
    if missing is not None:
        print(f"cadence: {INSTALL_HINT} ({missing} is not installed)", file=sys.stderr)
        sys.exit(1)
    from cadence.cli._app import cli  # noqa: PLC0415 # rich-click loads only when a command runs

    cli.main(args=list(sys.argv[1:] if args is None else args), prog_name="cadence")


def _missing_dependency() -> str | None:
    """Return the distribution name of a missing dependency of the extra, or `None`."""
    try:
        importlib.import_module("rich_click")
    except ImportError:
        return "rich-click"
    try:
        # Found, not imported: libcst takes a tenth of a second to import and only `new` needs it.
        spec = importlib.util.find_spec("libcst")
    except (ImportError, ValueError):
        spec = None
    return "libcst" if spec is None else None
