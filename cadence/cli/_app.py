"""The root `cadence` group: global options and the lazily imported subcommands."""

from __future__ import annotations

import click
import rich_click

from cadence import __version__
from cadence.cli._common import LazyGroup

__all__ = ["cli"]

rich_click.rich_click.SHOW_ARGUMENTS = True
rich_click.rich_click.STYLE_ERRORS_SUGGESTION = "magenta italic"

_COMMANDS = {
    "init": "cadence.cli.init:init",
    "new": "cadence.cli.new:new",
    "diagram": "cadence.cli.diagram:diagram",
    "validate": "cadence.cli.validate:validate",
    "runs": "cadence.cli.runs:runs",
}


@click.group(
    cls=LazyGroup, lazy_commands=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(
    __version__, "--version", "-V", prog_name="cadence", message="%(prog)s %(version)s"
)
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
def cli(debug: bool) -> None:
    """Scaffold, draw and check cadences.

    \b
    Examples:
      cadence init my-project
      cadence new cadence checkout
      cadence new beat process-payment --retry 3 --timeout 30
      cadence diagram myapp.cadences:checkout_cadence --format mermaid
      cadence validate myapp.cadences
      cadence runs list --db runs.db

    Exit codes: 0 ok, 1 findings (or changes under --check), 2 usage or user error, 70 a bug.
    """
