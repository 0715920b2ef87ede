"""`cadence validate`: check the cadences of modules before anything runs."""

from __future__ import annotations

import json
import types
from typing import TYPE_CHECKING, Any

import click
from rich_click import RichCommand

from cadence.cli._common import EXIT_FINDINGS, note
from cadence.cli._load import relative

if TYPE_CHECKING:
    from cadence._validate import Finding, ValidationReport

__all__ = ["validate"]


@click.command(cls=RichCommand)
@click.argument("modules", nargs=-1, required=True, metavar="MODULE...")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "github"]),
    default="table",
    show_default=True,
    help="table for people, json for tools (schema version 1), github for workflow annotations.",
)
def validate(modules: tuple[str, ...], output_format: str) -> None:
    """Check every cadence of MODULE... and report what would go wrong, with file:line.

    Each MODULE is imported (the current directory and its src/ first on sys.path), or
    module:attribute names one cadence. The rules: duplicate names, non-callables, beats
    annotated for another context, child merges that do not fit, empty steps, and two beats
    of one sync step writing one field under fail_on_conflict.

    Exit 0 when clean, 1 with findings, 2 when a module cannot be imported.

    \b
    Examples:
      cadence validate myapp.cadences
      cadence validate myapp.cadences myapp.billing --format json
      cadence validate myapp.cadences:checkout_cadence --format github
    """
    from cadence import Cadence  # noqa: PLC0415 # imports stay lazy so --help is fast
    from cadence._validate import validate as run_validate  # noqa: PLC0415
    from cadence.cli._load import import_user_module, load_cadence, user_paths  # noqa: PLC0415

    user_paths()
    targets: list[Cadence[Any] | types.ModuleType | str] = []
    for name in modules:
        if ":" in name:
            targets.append(load_cadence(name))
        else:
            # A failure to import is a user error; a definition error, a finding (validate
            # imports the name again to find the line, since a failed module is not kept).
            module = import_user_module(name, definition_errors=True)
            targets.append(name if module is None else module)
    report = run_validate(*targets)
    if output_format == "json":
        click.echo(json.dumps(_relative_report(report), indent=2))
    elif output_format == "github":
        for finding in report.findings:
            click.echo(_annotation(finding))
    else:
        _print_table(report)
    count = len(report.findings)
    note(
        f"{len(report.cadences)} cadence{'s' if len(report.cadences) != 1 else ''} checked, "
        f"{count or 'no'} finding{'s' if count != 1 else ''}"
    )
    if count:
        raise click.exceptions.Exit(EXIT_FINDINGS)


def _relative_report(report: ValidationReport) -> dict[str, object]:
    findings = [{**f.as_dict(), "file": f.file and relative(f.file)} for f in report.findings]
    return {**report.as_dict(), "findings": findings}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _annotation(finding: Finding) -> str:
    properties: list[str] = []
    file = finding.file and relative(finding.file)
    if file is not None:
        properties.append(f"file={_escape_property(file)}")
        if finding.line is not None:
            properties.append(f"line={finding.line}")
    properties.append(f"title={_escape_property(f'cadence validate: {finding.rule}')}")
    return f"::error {','.join(properties)}::{_escape_data(finding.message)}"


def _print_table(report: ValidationReport) -> None:
    if not report.findings:
        return
    from rich.console import Console  # noqa: PLC0415 # rich loads only to print a table
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="cadence validate", show_lines=False)
    table.add_column("Location", no_wrap=True)
    table.add_column("Rule", no_wrap=True)
    table.add_column("Cadence")
    table.add_column("Step")
    table.add_column("Message", overflow="fold")
    for finding in report.findings:
        file = finding.file and relative(finding.file)
        where = f"{file}:{finding.line}" if file and finding.line else (file or "")
        table.add_row(
            where, finding.rule, finding.cadence or "", finding.step or "", finding.message
        )
    Console(soft_wrap=False).print(table)
