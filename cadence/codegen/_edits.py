"""The edits behind the codemods: each adds one definition to one module.

`edit(module)` returns the edited module. Each leaves the module unchanged when what it adds
is already there, and never rewrites an existing definition: it records a note in `notes`
instead. They import only libcst's node classes (`libcst.codemod` takes a third of a second to
import, which `cadence new` does without); `cadence.codegen.commands` wraps each in a libcst
codemod command.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst

from cadence.codegen._imports import add_from_import
from cadence.codegen._sites import CadenceSite, find_sites

__all__ = [
    "AddBeat",
    "AddCadence",
    "AddCadenceTest",
    "AddContext",
    "AttachBeat",
    "ContextField",
    "Decorator",
    "Edit",
]


@dataclass(frozen=True, slots=True)
class ContextField:
    """A field of a generated context: `name: annotation = default` (default as source text)."""

    name: str
    annotation: str
    default: str | None = None


@dataclass(frozen=True, slots=True)
class Decorator:
    """A decorator to put on a generated beat: its source text and the name it imports."""

    text: str
    source: str
    name: str


def _top_level_names(module: cst.Module) -> dict[str, cst.BaseStatement]:
    """Return the classes, functions and simple assignments of `module` by name."""
    names: dict[str, cst.BaseStatement] = {}
    for statement in module.body:
        if isinstance(statement, cst.ClassDef | cst.FunctionDef):
            names.setdefault(statement.name.value, statement)
        elif isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                targets: list[cst.BaseExpression] = []
                if isinstance(small, cst.Assign):
                    targets = [t.target for t in small.targets]
                elif isinstance(small, cst.AnnAssign):
                    targets = [small.target]
                for target in targets:
                    if isinstance(target, cst.Name):
                        names.setdefault(target.value, statement)
    return names


def _append(module: cst.Module, source: str) -> cst.Module:
    """Return `module` with the statements of `source` appended, blank lines before."""
    parsed = cst.parse_module(source.replace("\n", module.default_newline))
    statements = list(parsed.body)
    if not statements:
        return module
    # two blank lines around a def or class, one between simple statements (as isort and
    # ruff format lay them out: an assignment right after the imports gets one)
    simple = isinstance(statements[0], cst.SimpleStatementLine)
    after_simple = bool(module.body) and isinstance(module.body[-1], cst.SimpleStatementLine)
    count = (1 if simple and after_simple else 2) if module.body else 0
    lines = [cst.EmptyLine()] * count
    statements[0] = statements[0].with_changes(leading_lines=lines)
    return module.with_changes(body=[*module.body, *statements], has_trailing_newline=True)


def _indent(source: str, indent: str) -> str:
    return source.replace("\n    ", "\n" + indent)


class Edit:
    """Base of the edits: notes, the first-party package, and `edit(module)`."""

    DESCRIPTION = "Edit a module."

    def __init__(self, first_party: str) -> None:
        self.first_party = frozenset({first_party.split(".", maxsplit=1)[0]})
        self.notes: list[str] = []

    def edit(self, module: cst.Module) -> cst.Module:
        """Return the edited module."""
        raise NotImplementedError

    def future(self, module: cst.Module) -> cst.Module:
        """Return `module` with `from __future__ import annotations` if it is a new, empty file.

        An existing file is left without it: it changes how every annotation in the file is
        evaluated, which is the file owner's choice.
        """
        if module.body:
            return module
        return self.imports(module, "__future__", "annotations")

    def imports(self, module: cst.Module, source: str, *names: str) -> cst.Module:
        """Return `module` importing `names` from `source`."""
        return add_from_import(module, source, names, self.first_party)


class AddContext(Edit):
    """Add a context dataclass (`@dataclass class OrderContext(Context)`) to a module."""

    DESCRIPTION = "Add a typed context dataclass."

    def __init__(
        self,
        class_name: str,
        fields: Sequence[ContextField] = (),
        *,
        immutable: bool = False,
        description: str = "",
        first_party: str = "",
    ) -> None:
        super().__init__(first_party)
        self.class_name = class_name
        self.fields = tuple(fields)
        self.immutable = immutable
        self.description = description or f"What the {class_name} cadences work on."

    def edit(self, module: cst.Module) -> cst.Module:
        """Append the class and its imports, unless a definition of that name exists."""
        if self.class_name in _top_level_names(module):
            self.notes.append(f"{self.class_name} already exists; left as it is")
            return module
        factory = any(f.default in {"[]", "{}", "set()"} for f in self.fields)
        base = "ImmutableContext" if self.immutable else "Context"
        lines = [
            "@dataclass(frozen=True)" if self.immutable else "@dataclass",
            f"class {self.class_name}({base}):",
            f'    """{self.description}"""',
        ]
        if self.fields:
            lines.append("")
        for f in self.fields:
            if f.default is None:
                lines.append(f"    {f.name}: {f.annotation}")
            elif f.default in {"[]", "{}", "set()"}:
                kind = {"[]": "list", "{}": "dict", "set()": "set"}[f.default]
                lines.append(f"    {f.name}: {f.annotation} = field(default_factory={kind})")
            else:
                lines.append(f"    {f.name}: {f.annotation} = {f.default}")
        module = self.future(module)
        module = self.imports(
            module, "dataclasses", *(["dataclass", "field"] if factory else ["dataclass"])
        )
        module = self.imports(module, "cadence", base)
        return _append(module, _indent("\n".join(lines) + "\n", module.default_indent))


class AddCadence(Edit):
    """Add `name_cadence = Cadence("name", NameContext())` to a module."""

    DESCRIPTION = "Add a cadence definition."

    def __init__(
        self,
        name: str,
        variable: str,
        context_class: str,
        context_module: str,
        *,
        template_arguments: str = "",
        first_party: str = "",
    ) -> None:
        super().__init__(first_party or context_module)
        self.name = name
        self.variable = variable
        self.context_class = context_class
        self.context_module = context_module
        self.template_arguments = template_arguments

    def edit(self, module: cst.Module) -> cst.Module:
        """Append the definition and its imports, unless the name or the cadence exists."""
        if self.variable in _top_level_names(module):
            self.notes.append(f"{self.variable} already exists; left as it is")
            return module
        if any(site.name == self.name for site in find_sites(module)):
            self.notes.append(f"a cadence named {self.name!r} already exists; left as it is")
            return module
        module = self.future(module)
        module = self.imports(module, "cadence", "Cadence")
        module = self.imports(module, self.context_module, self.context_class)
        template = f"{self.context_class}({self.template_arguments})"
        return _append(module, f'{self.variable} = Cadence("{self.name}", {template})\n')


class AddBeat(Edit):
    """Add a typed beat (`@beat async def process_payment(ctx: Ctx) -> None`) to a module."""

    DESCRIPTION = "Add a typed beat with its resilience decorators."

    def __init__(
        self,
        function: str,
        context_class: str,
        context_module: str,
        *,
        is_async: bool = True,
        decorators: Sequence[Decorator] = (),
        description: str = "",
        first_party: str = "",
    ) -> None:
        super().__init__(first_party or context_module)
        self.function = function
        self.context_class = context_class
        self.context_module = context_module
        self.is_async = is_async
        self.decorators = tuple(decorators)
        self.description = description or function.replace("_", " ").capitalize() + "."

    def edit(self, module: cst.Module) -> cst.Module:
        """Append the beat and its imports, unless a definition of that name exists."""
        if self.function in _top_level_names(module):
            self.notes.append(f"{self.function} already exists; left as it is")
            return module
        module = self.future(module)
        by_source: dict[str, list[str]] = {}
        for decorator in self.decorators:
            by_source.setdefault(decorator.source, []).append(decorator.name)
        for source in sorted(by_source):
            module = self.imports(module, source, *by_source[source])
        module = self.imports(module, self.context_module, self.context_class)
        keyword = "async def" if self.is_async else "def"
        lines = [f"@{d.text}" for d in self.decorators]
        lines += [
            f"{keyword} {self.function}(ctx: {self.context_class}) -> None:",
            f'    """{self.description}"""',
        ]
        return _append(module, _indent("\n".join(lines) + "\n", module.default_indent))


class AttachBeat(Edit):
    """Append `.then("step", function)` to a cadence's builder chain, importing the function."""

    DESCRIPTION = "Attach a beat to a cadence chain."

    def __init__(
        self,
        step: str,
        function: str,
        function_module: str,
        *,
        cadence: str | None = None,
        line_length: int = 88,
        first_party: str = "",
    ) -> None:
        super().__init__(first_party or function_module)
        self.step = step
        self.function = function
        self.function_module = function_module
        self.cadence = cadence
        self.line_length = line_length
        self.attached_to: str | None = None
        self._site: CadenceSite | None = None
        self._module: cst.Module | None = None

    def choose(self, module: cst.Module) -> CadenceSite | None:
        """Return the chain to attach to: the one named by `cadence`, else the only one."""
        sites = find_sites(module)
        if self.cadence is not None:
            wanted = {self.cadence, f"{self.cadence}_cadence"}
            chosen = [s for s in sites if s.name == self.cadence] or [
                s for s in sites if s.variable in wanted
            ]
            if not chosen:
                known = ", ".join(sorted({s.name for s in sites})) or "none"
                self.notes.append(
                    f"no cadence named {self.cadence!r} (cadences: {known}); the beat is not "
                    "attached"
                )
                return None
            return chosen[0]
        names = sorted({s.name for s in sites})
        if len(names) == 1:
            return sites[0]
        if not names:
            self.notes.append("no cadence to attach the beat to; add it with .then(...)")
        else:
            self.notes.append(
                f"{len(names)} cadences ({', '.join(names)}); pass --cadence NAME to attach the "
                "beat to one"
            )
        return None

    def edit(self, module: cst.Module) -> cst.Module:
        """Append the step to the chosen chain and import the function."""
        site = self.choose(module)
        if site is None:
            return module
        self.attached_to = site.name
        if self.step in site.steps:
            self.notes.append(
                f"cadence {site.name!r} already has a step {self.step!r}; left as it is"
            )
            return module
        self._site = site
        self._module = module
        edited = module.visit(_Replace(site.node, self._extend(site, module)))
        assert isinstance(edited, cst.Module)  # noqa: S101 # visiting a module returns one
        return self.imports(edited, self.function_module, self.function)

    def _extend(self, site: CadenceSite, module: cst.Module) -> cst.BaseExpression:
        chain = site.node
        quote = site.quote
        step = cst.SimpleString(f"{quote}{self.step}{quote}")
        arguments = [
            cst.Arg(step, comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))),
            cst.Arg(cst.Name(self.function)),
        ]
        last_dot = _last_dot(chain)
        before = last_dot.whitespace_before if last_dot is not None else None
        if isinstance(before, cst.ParenthesizedWhitespace):
            # the same layout as the last step, without the comments around it
            layout = before.with_changes(first_line=cst.TrailingWhitespace(), empty_lines=[])
            return _call(chain, cst.Dot(whitespace_before=layout), arguments)
        inline = _call(chain, cst.Dot(), arguments)
        code = module.code_for_node(inline)
        first, *rest = code.splitlines() or [""]
        widest = max([site.prefix_width + len(first), *(len(line) for line in rest)])
        if widest <= self.line_length and "\n" not in code.strip():
            return inline
        return _fluent(inline, module)


def _last_dot(chain: cst.BaseExpression) -> cst.Dot | None:
    if isinstance(chain, cst.Call) and isinstance(chain.func, cst.Attribute):
        return chain.func.dot
    return None


def _call(chain: cst.BaseExpression, dot: cst.Dot, arguments: list[cst.Arg]) -> cst.Call:
    """Return `chain.then(arguments)`, moving the chain's parentheses to the new outer call."""
    inner = chain.with_changes(lpar=[], rpar=[])
    return cst.Call(
        func=cst.Attribute(value=inner, attr=cst.Name("then"), dot=dot),
        args=arguments,
        lpar=chain.lpar,
        rpar=chain.rpar,
    )


def _fluent(chain: cst.Call, module: cst.Module) -> cst.Call:
    """Return `chain` laid out one call per line inside parentheses (ruff's fluent style)."""
    indent = module.default_indent

    def line_break(last: str) -> cst.ParenthesizedWhitespace:
        return cst.ParenthesizedWhitespace(
            first_line=cst.TrailingWhitespace(),
            empty_lines=[],
            indent=True,
            last_line=cst.SimpleWhitespace(last),
        )

    def relayout(node: cst.BaseExpression) -> cst.BaseExpression:
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
            attribute = node.func
            if _cadence_rooted(attribute.value):
                return node.with_changes(
                    func=attribute.with_changes(
                        value=relayout(attribute.value),
                        dot=cst.Dot(whitespace_before=line_break(indent)),
                    )
                )
        return node

    laid_out = relayout(chain.with_changes(lpar=[], rpar=[]))
    assert isinstance(laid_out, cst.Call)  # noqa: S101 # relayout keeps the outer Call
    return laid_out.with_changes(
        lpar=[cst.LeftParen(whitespace_after=line_break(indent))],
        rpar=[cst.RightParen(whitespace_before=line_break(""))],
    )


def _cadence_rooted(node: cst.BaseExpression) -> bool:
    while isinstance(node, cst.Call):
        func = node.func
        target = func.value if isinstance(func, cst.Subscript) else func
        if (isinstance(target, cst.Name) and target.value == "Cadence") or (
            isinstance(target, cst.Attribute) and target.attr.value == "Cadence"
        ):
            return True
        if not isinstance(func, cst.Attribute):
            return False
        node = func.value
    return False


class _Replace(cst.CSTTransformer):
    def __init__(self, target: cst.BaseExpression, replacement: cst.BaseExpression) -> None:
        super().__init__()
        self.target = target
        self.replacement = replacement

    def leave_Call(  # noqa: N802 # libcst's method name
        self, original_node: cst.Call, updated_node: cst.Call
    ) -> cst.BaseExpression:
        return self.replacement if original_node is self.target else updated_node


class AddCadenceTest(Edit):
    """Add a test that runs a cadence on its template context."""

    DESCRIPTION = "Add a test for a cadence."

    def __init__(
        self,
        test_name: str,
        variable: str,
        cadences_module: str,
        *,
        context_class: str,
        context_module: str,
        first_party: str = "",
    ) -> None:
        super().__init__(first_party or cadences_module)
        self.test_name = test_name
        self.variable = variable
        self.cadences_module = cadences_module
        self.context_class = context_class
        self.context_module = context_module

    def edit(self, module: cst.Module) -> cst.Module:
        """Append the test and its imports, unless a test of that name exists."""
        if self.test_name in _top_level_names(module):
            self.notes.append(f"{self.test_name} already exists; left as it is")
            return module
        if not module.body:
            module = module.with_changes(
                body=[cst.parse_statement('"""Tests of the cadences."""\n')],
                has_trailing_newline=True,
            )
        module = self.future(module)
        module = self.imports(module, self.cadences_module, self.variable)
        module = self.imports(module, self.context_module, self.context_class)
        cadence = self.variable.removesuffix("_cadence")
        source = (
            f"def {self.test_name}() -> None:\n"
            f'    """The {cadence} cadence runs on a fresh copy of its template."""\n'
            f"    result = {self.variable}.run_sync()\n"
            f"    assert isinstance(result, {self.context_class})\n"
        )
        return _append(module, _indent(source, module.default_indent))
