"""Applying a codegen plan: write it, or show it (`--dry-run`, `--diff`, `--check`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import click

from cadence.cli._common import EXIT_FINDINGS, UserError, note

if TYPE_CHECKING:
    from cadence.codegen import Plan

__all__ = ["apply_plan", "plan_options"]

F = TypeVar("F", bound=Callable[..., object])


def plan_options(fn: F) -> F:
    """Add `--dry-run`, `--diff` and `--check` to a command."""
    fn = click.option(
        "--check",
        is_flag=True,
        help="Write nothing; exit 1 if something would change (for CI).",
    )(fn)
    fn = click.option(
        "--diff", "show_diff", is_flag=True, help="Write nothing; print a unified diff on stdout."
    )(fn)
    return click.option(
        "--dry-run", is_flag=True, help="Write nothing; list the files that would change."
    )(fn)


def apply_plan(plan: Plan, *, dry_run: bool, show_diff: bool, check: bool) -> None:
    """Write `plan`, or show it; exit 1 under `--check` when it would change files."""
    for message in plan.notes:
        note(message)
    changed = plan.changed
    if show_diff:
        click.echo(plan.diff(), nl=False)
    if dry_run or show_diff or check:
        for change in changed:
            verb = "create" if change.before is None else "update"
            note(f"would {verb} {plan.label(change.path)}")
        if not changed:
            note("nothing to change")
        if check and changed:
            raise click.exceptions.Exit(EXIT_FINDINGS)
        return
    try:
        plan.write()
    except OSError as error:
        raise UserError(f"cannot write the files (none was changed): {error}") from None
    for change in changed:
        verb = "created" if change.before is None else "updated"
        note(f"{verb} {plan.label(change.path)}")
    if not changed:
        note("nothing to change")
