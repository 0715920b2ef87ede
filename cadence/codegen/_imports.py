"""Adding `from module import name` to a module the way isort (and ruff's `I` rules) order it.

libcst's `AddImportsVisitor` appends names to an existing import out of order and places new
imports without regard to sections; ruff then reports the file. This keeps the order: names
are inserted where they sort (when the existing names are sorted), and a new statement goes to
its section (future, standard library, third party, first party) at its sorted place.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TypeAlias

import libcst as cst

_Body: TypeAlias = list[cst.SimpleStatementLine | cst.BaseCompoundStatement]

__all__ = ["add_from_import", "imported_names"]


def _name_key(name: str) -> tuple[int, str]:
    # isort's default order-by-type: CONSTANTS, then Classes, then the rest, each alphabetical
    if name.isupper() and len(name) > 1:
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name.lower())


def _dotted(node: cst.BaseExpression | None) -> str:
    if node is None:
        return ""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    return ""


def _import_of(statement: cst.BaseStatement) -> cst.Import | cst.ImportFrom | None:
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        small = statement.body[0]
        if isinstance(small, cst.Import | cst.ImportFrom):
            return small
    return None


def _is_docstring(statement: cst.BaseStatement) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], cst.Expr)
        and isinstance(statement.body[0].value, cst.SimpleString | cst.ConcatenatedString)
    )


def _section(module_name: str, first_party: frozenset[str]) -> int:
    root = module_name.split(".", maxsplit=1)[0]
    if root == "__future__":
        return 0
    if root in first_party or module_name.startswith("."):
        return 3
    if root in sys.stdlib_module_names:
        return 1
    return 2


def imported_names(module: cst.Module, source: str) -> set[str]:
    """Return the names `module` imports from `source` with `from source import ...`."""
    names: set[str] = set()
    for statement in module.body:
        node = _import_of(statement)
        if (
            isinstance(node, cst.ImportFrom)
            and not node.relative
            and _dotted(node.module) == source
            and not isinstance(node.names, cst.ImportStar)
        ):
            for alias in node.names:
                bound = alias.asname.name if alias.asname else alias.name
                if isinstance(bound, cst.Name):
                    names.add(bound.value)
    return names


def add_from_import(
    module: cst.Module, source: str, names: Sequence[str], first_party: frozenset[str]
) -> cst.Module:
    """Return `module` importing each of `names` from `source` (names it has already are kept)."""
    wanted = [n for n in dict.fromkeys(names) if n not in imported_names(module, source)]
    if not wanted:
        return module
    body = list(module.body)
    for index, statement in enumerate(body):
        node = _import_of(statement)
        if (
            isinstance(node, cst.ImportFrom)
            and not node.relative
            and _dotted(node.module) == source
            and not isinstance(node.names, cst.ImportStar)
        ):
            merged = _merge(node, wanted)
            assert isinstance(statement, cst.SimpleStatementLine)  # noqa: S101 # by _import_of
            body[index] = statement.with_changes(body=[merged])
            return module.with_changes(body=body)
    return module.with_changes(body=_insert_statement(body, source, wanted, first_party))


def _merge(node: cst.ImportFrom, wanted: list[str]) -> cst.ImportFrom:
    assert not isinstance(node.names, cst.ImportStar)  # noqa: S101 # checked by the caller
    aliases = list(node.names)
    existing = [_dotted(a.name) for a in aliases]
    is_sorted = existing == sorted(existing, key=_name_key)
    for name in sorted(wanted, key=_name_key):
        if is_sorted:
            keys = [_name_key(_dotted(a.name)) for a in aliases]
            position = next((i for i, k in enumerate(keys) if k > _name_key(name)), len(aliases))
        else:
            position = len(aliases)
        aliases = _insert_alias(aliases, position, name)
    return node.with_changes(names=aliases)


def _insert_alias(aliases: list[cst.ImportAlias], index: int, name: str) -> list[cst.ImportAlias]:
    separator: cst.Comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
    if len(aliases) > 1 and isinstance(aliases[0].comma, cst.Comma):
        separator = aliases[0].comma
    new = cst.ImportAlias(name=cst.Name(name))
    if index < len(aliases):
        return [*aliases[:index], new.with_changes(comma=separator), *aliases[index:]]
    last = aliases[-1]
    return [*aliases[:-1], last.with_changes(comma=separator), new.with_changes(comma=last.comma)]


def _statement_key(
    node: cst.Import | cst.ImportFrom, first_party: frozenset[str]
) -> tuple[int, int, str]:
    if isinstance(node, cst.Import):
        module_name = _dotted(node.names[0].name) if node.names else ""
        return (_section(module_name, first_party), 0, module_name.lower())
    module_name = "." * len(node.relative) + _dotted(node.module)
    return (_section(module_name, first_party), 1, module_name.lower())


def _insert_statement(
    body: _Body, source: str, names: list[str], first_party: frozenset[str]
) -> _Body:
    text = f"from {source} import {', '.join(sorted(names, key=_name_key))}\n"
    new = cst.parse_statement(text)
    key = (_section(source, first_party), 1, source.lower())
    start = 1 if body and _is_docstring(body[0]) else 0
    end = start
    while end < len(body) and _import_of(body[end]) is not None:
        end += 1
    position = end
    for index in range(start, end):
        node = _import_of(body[index])
        assert node is not None  # noqa: S101 # the block holds imports only
        if _statement_key(node, first_party) > key:
            position = index
            break

    def section_at(index: int) -> int | None:
        if start <= index < end:
            node = _import_of(body[index])
            return None if node is None else _statement_key(node, first_party)[0]
        return None

    blank = [cst.EmptyLine()]
    if section_at(position - 1) == key[0]:
        new = new.with_changes(leading_lines=[])
    elif section_at(position) == key[0]:
        following = body[position]
        new = new.with_changes(leading_lines=following.leading_lines)
        body[position] = following.with_changes(leading_lines=[])
    else:
        new = new.with_changes(leading_lines=blank if position > 0 else [])
    body.insert(position, new)
    after = position + 1
    if end == start and after < len(body):
        # a new import block: keep code after it apart (two lines before a def or class)
        following = body[after]
        wanted = 2 if isinstance(following, cst.FunctionDef | cst.ClassDef) else 1
        blanks = [e for e in following.leading_lines if e.comment is None]
        if len(blanks) < wanted and len(blanks) == len(following.leading_lines):
            body[after] = following.with_changes(leading_lines=[cst.EmptyLine()] * wanted)
    return body
