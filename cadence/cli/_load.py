"""Importing the user's modules for `validate` and `diagram`, with one-line errors."""

from __future__ import annotations

import importlib
import sys
import traceback
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cadence.cli._common import UserError

if TYPE_CHECKING:
    from cadence import Cadence

__all__ = ["import_user_module", "load_attribute", "load_cadence", "relative", "user_paths"]


def user_paths() -> None:
    """Put the current directory (and its `src/`, for src layouts) first on `sys.path`."""
    cwd = Path.cwd()
    for path in (cwd / "src", cwd):
        if path.is_dir() and str(path) not in sys.path:
            sys.path.insert(0, str(path))


def describe(error: BaseException) -> str:
    """Return `Type: message (file:line)` for an exception raised by the user's code."""
    where = ""
    if isinstance(error, SyntaxError) and error.filename:
        where = f" ({relative(error.filename)}:{error.lineno})"
    else:
        frames = traceback.extract_tb(error.__traceback__)
        user = [f for f in frames if not f.filename.startswith("<frozen")]
        if user:
            where = f" ({relative(user[-1].filename)}:{user[-1].lineno})"
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}{': ' + message if message else ''}{where}"


def relative(file: str) -> str:
    """Return `file` relative to the current directory when it lies below it (POSIX form)."""
    path = Path(file)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return file


def import_user_module(name: str, *, definition_errors: bool = False) -> types.ModuleType | None:
    """Import module `name`, or raise a `UserError` that says why it cannot be imported.

    With `definition_errors`, a `CadenceDefinitionError` raised by the module is no user
    error: `None` is returned, and `validate` reports it as a finding.
    """
    from cadence import CadenceDefinitionError  # noqa: PLC0415 # lazy, like the rest

    if not name or any(not part.isidentifier() for part in name.split(".")):
        raise UserError(f"{name!r} is not a module name (expected dotted.module.name)")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            raise UserError(
                f"no module named {name!r} (searched the current directory, its src/, and "
                "the installed packages)"
            ) from None
        raise UserError(f"cannot import {name!r}: {describe(error)}") from None
    except CadenceDefinitionError as error:
        if definition_errors:
            return None
        raise UserError(f"cannot import {name!r}: {describe(error)}") from None
    except Exception as error:  # noqa: BLE001 # the user's module raised: say what, in one line
        raise UserError(f"cannot import {name!r}: {describe(error)}") from None


def load_attribute(target: str) -> object:
    """Return the object named `module:attribute` (the attribute may be dotted)."""
    module_name, colon, attribute = target.partition(":")
    if not colon or not attribute:
        raise UserError(f"{target!r}: expected module:attribute, e.g. myapp.cadences:checkout")
    value: object = import_user_module(module_name)
    assert value is not None  # noqa: S101 # definition errors are user errors here
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise UserError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return value


def load_cadence(target: str) -> Cadence[Any]:  # Any: a cadence over any context type
    """Return the `Cadence` named by `module:attribute`, or raise a `UserError` saying why not."""
    from cadence import Cadence  # noqa: PLC0415 # loaded only when a command runs

    value = load_attribute(target)
    if not isinstance(value, Cadence):
        raise UserError(f"{target} is a {type(value).__qualname__}, not a Cadence")
    # pyright reads Cadence[Unknown] after the isinstance, mypy Cadence[Any]
    return value  # pyright: ignore[reportUnknownVariableType]
