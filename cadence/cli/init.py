"""`cadence init`: create a ready project."""

from __future__ import annotations

from pathlib import Path

import click
from rich_click import RichCommand

from cadence.cli._common import UserError, note
from cadence.cli._plans import apply_plan, plan_options

__all__ = ["init"]


@click.command(cls=RichCommand)
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--name", help="The project's name (default: the directory's name).")
@plan_options
def init(directory: Path, name: str | None, *, dry_run: bool, show_diff: bool, check: bool) -> None:
    """Create a project in DIRECTORY: src layout, a cadence, a test, strict type checking.

    The project depends on cadence-flow, runs mypy --strict with the cadence_mypy plugin and
    pyright strict, and its test, mypy and pyright pass as generated. DIRECTORY must not
    exist or be empty.

    \b
    Examples:
      cadence init my-project
      cadence init services/billing --name billing-service
    """
    from cadence import __version__  # noqa: PLC0415 # imports stay lazy so --help is fast
    from cadence.codegen import CodegenError, init_project  # noqa: PLC0415

    try:
        plan = init_project(directory, name, version=__version__)
    except CodegenError as error:
        raise UserError(str(error)) from None
    apply_plan(plan, dry_run=dry_run, show_diff=show_diff, check=check)
    if not (dry_run or show_diff or check):
        note("")
        note("Next steps:")
        note(f"  cd {directory}")
        note("  python -m pip install -e . --group dev")
        note("  python -m pytest && python -m mypy && pyright")
