"""`cadence new`: add a context, a cadence or a beat to the project (libcst codemods)."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

import click
from rich_click import RichCommand, RichGroup

from cadence.cli._common import UserError
from cadence.cli._plans import apply_plan, plan_options

if TYPE_CHECKING:
    from collections.abc import Callable

    from cadence.codegen import Plan, Project

__all__ = ["new"]


def _project() -> Project:
    from cadence.codegen import CodegenError, find_project  # noqa: PLC0415 # lazy: libcst

    try:
        return find_project()
    except CodegenError as error:
        raise UserError(str(error)) from None


def _apply(build: Callable[[], Plan], *, dry_run: bool, show_diff: bool, check: bool) -> None:
    from cadence.codegen import CodegenError  # noqa: PLC0415 # lazy: libcst

    try:
        plan = build()
    except CodegenError as error:
        raise UserError(str(error)) from None
    apply_plan(plan, dry_run=dry_run, show_diff=show_diff, check=check)


@click.group(cls=RichGroup)
def new() -> None:
    """Add a context, a cadence or a beat to the project, in place.

    Edits are keyed by Python name and idempotent: running one twice changes nothing, and an
    existing definition is never rewritten. Each file keeps its formatting, comments, newline
    style and encoding; all files are written together or not at all.

    \b
    Examples:
      cadence new context order --field order_id:str --field total:float=0.0
      cadence new cadence checkout
      cadence new beat process-payment --retry 3 --timeout 30
    """


@new.command("context", cls=RichCommand)
@click.argument("name")
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="NAME:TYPE[=DEFAULT]",
    help="A field; the default is a Python literal ([] and {} become default factories).",
)
@click.option("--immutable", is_flag=True, help="A frozen ImmutableContext.")
@plan_options
def new_context_command(
    name: str,
    fields: tuple[str, ...],
    *,
    immutable: bool,
    dry_run: bool,
    show_diff: bool,
    check: bool,
) -> None:
    """Add a typed context dataclass NAME (order -> OrderContext) to contexts.py.

    \b
    Examples:
      cadence new context order --field order_id:str --field total:float=0.0
      cadence new context settings --field region:str='"eu"' --immutable
    """
    project = _project()
    from cadence.codegen import new_context  # noqa: PLC0415 # lazy: libcst

    _apply(
        lambda: new_context(project, name, fields, immutable=immutable),
        dry_run=dry_run,
        show_diff=show_diff,
        check=check,
    )


@new.command("cadence", cls=RichCommand)
@click.argument("name")
@plan_options
def new_cadence_command(name: str, *, dry_run: bool, show_diff: bool, check: bool) -> None:
    """Add a cadence NAME: its context, its definition and a test.

    checkout makes a CheckoutContext in contexts.py (an existing one is reused), a
    checkout_cadence in cadences.py and test_checkout_cadence_runs in tests/test_cadences.py.

    \b
    Examples:
      cadence new cadence checkout
      cadence new cadence checkout --diff
    """
    project = _project()
    from cadence.codegen import new_cadence  # noqa: PLC0415 # lazy: libcst

    _apply(lambda: new_cadence(project, name), dry_run=dry_run, show_diff=show_diff, check=check)


def _parse_fallback(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    field, equals, default = value.partition("=")
    field, default = field.strip(), default.strip()
    if not equals or not field.isidentifier() or not default:
        raise click.BadParameter("expected FIELD=LITERAL, e.g. status='\"unknown\"'")
    try:
        ast.literal_eval(default)
    except (SyntaxError, ValueError):
        raise click.BadParameter(f"{default!r} is not a Python literal") from None
    return field, default


def _parse_breaker(value: str | None) -> tuple[int, float | None] | None:
    if value is None:
        return None
    threshold, colon, recovery = value.partition(":")
    try:
        return int(threshold), float(recovery) if colon else None
    except ValueError:
        raise click.BadParameter("expected THRESHOLD or THRESHOLD:RECOVERY, e.g. 5:30") from None


@new.command("beat", cls=RichCommand)
@click.argument("name")
@click.option("--retry", type=click.IntRange(min=1), help="@retry(max_attempts=N).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="@timeout(seconds=S).",
)
@click.option(
    "--fallback", metavar="FIELD=LITERAL", help='@fallback(default=LITERAL, field="FIELD").'
)
@click.option(
    "--breaker",
    metavar="THRESHOLD[:RECOVERY]",
    help="@circuit_breaker(failure_threshold=THRESHOLD, recovery_timeout=RECOVERY).",
)
@click.option("--cadence", help="The cadence to attach it to (default: the only one).")
@click.option("--context", help="Its context class (default: the cadence's, or the only one).")
@click.option("--sync", "is_sync", is_flag=True, help="A plain def instead of an async def.")
@plan_options
def new_beat_command(
    name: str,
    *,
    retry: int | None,
    timeout: float | None,
    fallback: str | None,
    breaker: str | None,
    cadence: str | None,
    context: str | None,
    is_sync: bool,
    dry_run: bool,
    show_diff: bool,
    check: bool,
) -> None:
    """Add a typed beat NAME to beats.py and attach it to a cadence.

    process-payment makes process_payment(ctx) with its decorators (fallback, retry,
    circuit_breaker, timeout, then @beat) and appends .then("process_payment",
    process_payment) to the cadence's chain, with the imports it needs.

    \b
    Examples:
      cadence new beat process-payment --retry 3 --timeout 30
      cadence new beat send-receipt --cadence checkout --sync
      cadence new beat fetch-rates --fallback rate=1.0 --breaker 5:30
    """
    options_fallback = _parse_fallback(fallback)
    options_breaker = _parse_breaker(breaker)
    project = _project()
    from cadence.codegen import BeatOptions, new_beat  # noqa: PLC0415 # lazy: libcst

    options = BeatOptions(
        retry=retry,
        timeout=timeout,
        fallback=options_fallback,
        breaker=options_breaker,
        is_async=not is_sync,
    )
    _apply(
        lambda: new_beat(project, name, options, cadence=cadence, context=context),
        dry_run=dry_run,
        show_diff=show_diff,
        check=check,
    )
