"""Helpers for the codemod tests: apply an edit, then check a second run changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import libcst as cst

from cadence.codegen import Edit

MakeCommand = Callable[[], Edit]


def apply_twice(make: MakeCommand, before: str | bytes) -> tuple[bytes, list[str]]:
    """Run a fresh edit on `before`, then another on the result; return (after, notes)."""
    source = before.encode("utf-8") if isinstance(before, str) else before
    first = make()
    after = first.edit(cst.parse_module(source)).bytes
    second = make()
    again = second.edit(cst.parse_module(after)).bytes
    assert again == after, "a second identical run changed the file"
    return after, first.notes
