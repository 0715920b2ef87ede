"""What every command shares: the lazy group, user errors, and how failures are reported.

Exit codes: 0 ok, 1 findings (or changes under `--check`), 2 usage and user errors, 70 an
internal bug. Data goes to stdout, messages to stderr, and a traceback only with `--debug`.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any, ClassVar, cast

import click
from click.exceptions import Abort, Exit
from rich_click import RichGroup

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["EXIT_FINDINGS", "EXIT_INTERNAL", "EXIT_USAGE", "LazyGroup", "UserError", "note"]

EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE in sysexits.h


class UserError(click.ClickException):
    """A mistake of the user's (unknown module, syntax error, no project): one line, exit 2."""

    exit_code = EXIT_USAGE


def note(message: str) -> None:
    """Write one message line to stderr."""
    click.echo(message, err=True)


def _debug_requested(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.params.get("debug")) or os.environ.get("CADENCE_DEBUG", "") not in {"", "0"}


class LazyGroup(RichGroup):
    """A group whose subcommands are imported only when they are looked up.

    Every failure below it is turned into one line on stderr and an exit code: a `UserError`
    exits 2, anything unexpected is an internal bug and exits 70 (`--debug` adds the traceback).
    """

    lazy_commands: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        *args: Any,  # Any: click's own constructor arguments, passed through
        lazy_commands: Mapping[str, str] | None = None,
        **kwargs: Any,  # Any: likewise
    ) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Name the eager and the lazy subcommands, sorted."""
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Return the subcommand `cmd_name`, importing its module on first use."""
        target = self._lazy.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        return cast("click.Command", command)

    def invoke(self, ctx: click.Context) -> Any:  # Any: whatever the subcommand returns
        """Run the subcommand; report user errors and bugs as one line each."""
        try:
            return super().invoke(ctx)
        except (Exit, Abort, click.UsageError):
            raise
        except UserError as error:
            note(f"Error: {error.format_message()}")
            ctx.exit(error.exit_code)
        except click.ClickException:
            raise
        except Exception as error:  # noqa: BLE001 # any other exception is a bug, reported as one
            if _debug_requested(ctx):
                traceback.print_exception(error, file=sys.stderr)
            detail = str(error).splitlines()[0] if str(error) else ""
            note(
                f"cadence: internal error: {type(error).__qualname__}"
                f"{': ' + detail if detail else ''} (rerun with --debug for the traceback, "
                "and please report it)"
            )
            ctx.exit(EXIT_INTERNAL)
