"""Finding the cadences a module builds (`Cadence("name", Ctx()).then(...)`) with libcst."""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

__all__ = ["CadenceSite", "find_sites", "string_value"]

_STEP_METHODS = frozenset({"then", "sync", "split", "child"})


@dataclass(eq=False)
class CadenceSite:
    """One builder chain rooted at `Cadence("name", ...)`.

    Attributes:
        name: The cadence's name (the string literal).
        variable: The name the chain is bound to, or the function that returns it.
        node: The outermost expression of the chain.
        context_class: The context class it runs over, when the source says so.
        steps: The names of the steps already in the chain.
        prefix_width: The columns before the chain on its first line (for line lengths).
        quote: The quote character of the name literal.

    """

    name: str
    variable: str | None
    node: cst.BaseExpression
    context_class: str | None
    steps: list[str] = field(default_factory=list[str])
    prefix_width: int = 0
    quote: str = '"'


def string_value(node: cst.BaseExpression) -> str | None:
    """Return the value of a plain string literal, or `None`."""
    if isinstance(node, cst.SimpleString) and not node.prefix.strip("rRuU"):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


def _cadence_root(node: cst.BaseExpression) -> tuple[cst.Call, list[str]] | None:
    """Walk a chain down to its `Cadence(...)` call; return it and the step names, in order."""
    steps: list[str] = []
    while isinstance(node, cst.Call):
        func = node.func
        target = func.value if isinstance(func, cst.Subscript) else func
        if (isinstance(target, cst.Name) and target.value == "Cadence") or (
            isinstance(target, cst.Attribute) and target.attr.value == "Cadence"
        ):
            return node, steps[::-1]
        if not isinstance(func, cst.Attribute):
            return None
        if func.attr.value in _STEP_METHODS and node.args:
            step = string_value(node.args[0].value)
            if step is not None:
                steps.append(step)
        node = func.value
    return None


def _annotated_context(annotation: cst.Annotation | None) -> str | None:
    if annotation is None:
        return None
    node = annotation.annotation
    if isinstance(node, cst.Subscript) and len(node.slice) == 1:
        element = node.slice[0].slice
        if isinstance(element, cst.Index) and isinstance(element.value, cst.Name):
            return element.value.value
    return None


class _Finder(cst.CSTVisitor):
    def __init__(self, indent: str) -> None:
        self.sites: list[CadenceSite] = []
        self.functions: list[tuple[str, cst.Annotation | None]] = []
        self.indent = indent

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:  # noqa: N802 # libcst's method names
        self.functions.append((node.name.value, node.returns))

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:  # noqa: N802 # libcst's method names
        self.functions.pop()

    def _width(self, prefix: str) -> int:
        return len(self.indent) * len(self.functions) + len(prefix)

    def visit_Assign(self, node: cst.Assign) -> None:  # noqa: N802 # libcst's method names
        if len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name):
            name = node.targets[0].target.value
            self._add(node.value, name, None, self._width(f"{name} = "))

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:  # noqa: N802 # libcst's method names
        if node.value is not None and isinstance(node.target, cst.Name):
            name = node.target.value
            prefix = f"{name}: {cst.Module([]).code_for_node(node.annotation.annotation)} = "
            self._add(node.value, name, node.annotation, self._width(prefix))

    def visit_Return(self, node: cst.Return) -> None:  # noqa: N802 # libcst's method names
        if node.value is not None and self.functions:
            function, returns = self.functions[-1]
            self._add(node.value, function, returns, self._width("return "))

    def _add(
        self,
        value: cst.BaseExpression,
        variable: str,
        annotation: cst.Annotation | None,
        width: int,
    ) -> None:
        found = _cadence_root(value)
        if found is None:
            return
        root, steps = found
        if not root.args:
            return
        name_node = root.args[0].value
        name = string_value(name_node)
        if name is None:
            return
        context = _annotated_context(annotation)
        if isinstance(root.func, cst.Subscript):
            context = _annotated_context(cst.Annotation(root.func))
        if len(root.args) > 1:
            template = root.args[1].value
            if isinstance(template, cst.Call) and isinstance(template.func, cst.Name):
                context = template.func.value
        quote = name_node.quote[0] if isinstance(name_node, cst.SimpleString) else '"'
        self.sites.append(CadenceSite(name, variable, value, context, steps, width, quote))


def find_sites(module: cst.Module) -> list[CadenceSite]:
    """Return the cadence chains of `module`, in source order."""
    finder = _Finder(module.default_indent)
    module.visit(finder)
    return finder.sites
