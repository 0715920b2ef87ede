"""The operations behind `cadence new ...`: read the modules, run the codemods, plan the writes."""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import libcst as cst

from cadence.codegen._edits import (
    AddBeat,
    AddCadence,
    AddCadenceTest,
    AddContext,
    AttachBeat,
    ContextField,
    Decorator,
    Edit,
)
from cadence.codegen._errors import CodegenError
from cadence.codegen._names import class_name, snake_name
from cadence.codegen._plan import Plan
from cadence.codegen._project import Project
from cadence.codegen._sites import find_sites

__all__ = ["BeatOptions", "new_beat", "new_cadence", "new_context", "parse_field"]

_PLACEHOLDERS = {"str": '""', "int": "0", "float": "0.0", "bool": "False", "bytes": 'b""'}
_FACTORIES = frozenset({"[]", "{}", "set()"})


def _parse(plan: Plan, path: Path) -> cst.Module:
    data = plan.current(path)
    if data is None:
        return cst.parse_module(b"")
    try:
        return cst.parse_module(data)
    except cst.ParserSyntaxError as error:
        raise CodegenError(
            f"{plan.label(path)}:{error.raw_line}:{error.raw_column + 1}: cannot parse the file "
            f"to edit it ({error.message}); fix it first"
        ) from None


def _run(plan: Plan, path: Path, command: Edit) -> cst.Module:
    module = _parse(plan, path)
    edited = command.edit(module)
    for note in command.notes:
        plan.note(f"{plan.label(path)}: {note}")
    if edited is not module:
        after = edited.bytes
        if after != plan.current(path):
            plan.put(path, after, edited.encoding)
    return edited


def parse_field(spec: str) -> ContextField:
    """Parse `name:type` or `name:type=default` (a Python literal) into a `ContextField`.

    Raises:
        CodegenError: the spec is malformed, or its name, type or default is not valid Python.

    """
    match = re.fullmatch(r"\s*([^:=\s]+)\s*:\s*([^=]+?)\s*(?:=\s*(.+?)\s*)?", spec)
    if match is None:
        raise CodegenError(f"--field {spec!r}: expected name:type or name:type=default")
    name, annotation, default = match.group(1), match.group(2), match.group(3)
    if not name.isidentifier() or name.startswith("_"):
        raise CodegenError(f"--field {spec!r}: {name!r} is not a public Python name")
    try:
        ast.parse(annotation, mode="eval")
    except SyntaxError:
        raise CodegenError(f"--field {spec!r}: {annotation!r} is not a Python type") from None
    if default is not None:
        try:
            ast.literal_eval(default)
        except (SyntaxError, ValueError):
            raise CodegenError(
                f"--field {spec!r}: the default {default!r} is not a Python literal"
            ) from None
    return ContextField(name, annotation, default)


def _context_classes(module: cst.Module) -> dict[str, list[ContextField]]:
    """Return the classes of `module` that subclass a context base, with their fields."""
    found: dict[str, list[ContextField]] = {}
    for statement in module.body:
        if not isinstance(statement, cst.ClassDef):
            continue
        bases = {module.code_for_node(b.value) for b in statement.bases}
        if not any(b.endswith("Context") for b in bases):
            continue
        fields: list[ContextField] = []
        body: Sequence[cst.BaseStatement | cst.BaseSmallStatement] = statement.body.body
        for line in body:
            if isinstance(line, cst.SimpleStatementLine):
                for small in line.body:
                    if isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name):
                        annotation = module.code_for_node(small.annotation.annotation)
                        value = None if small.value is None else module.code_for_node(small.value)
                        fields.append(ContextField(small.target.value, annotation, value))
        found[statement.name.value] = fields
    return found


def new_context(
    project: Project, name: str, fields: Sequence[str] = (), *, immutable: bool = False
) -> Plan:
    """Plan a context dataclass named after `name` (`order` -> `OrderContext`) in `contexts.py`.

    Raises:
        CodegenError: a name, field or default is invalid, or a required field follows a
            field with a default.

    """
    cls = class_name(name, "context name", "Context")
    parsed = [parse_field(f) for f in fields]
    seen: set[str] = set()
    defaulted: str | None = None
    for f in parsed:
        if f.name in seen:
            raise CodegenError(f"--field {f.name}: given twice")
        seen.add(f.name)
        if f.default is None and defaulted is not None:
            raise CodegenError(
                f"--field {f.name}: a field without a default cannot follow {defaulted}, "
                "which has one (dataclass order)"
            )
        if f.default is not None:
            defaulted = f.name
        if immutable and f.default in _FACTORIES:
            raise CodegenError(f"--field {f.name}: an immutable context needs immutable defaults")
    plan = Plan(project.root)
    label = name.replace("_", " ").replace("-", " ")
    command = AddContext(
        cls,
        parsed,
        immutable=immutable,
        description=f"What the {label} cadence works on.",
        first_party=project.package,
    )
    _run(plan, project.contexts, command)
    return plan


def new_cadence(project: Project, name: str) -> Plan:
    """Plan a cadence `name` (`checkout_cadence`), its `CheckoutContext` and a test.

    An existing `CheckoutContext` is reused; its required fields get placeholder values in
    the template (empty strings, zeros).

    Raises:
        CodegenError: the name is invalid, or the existing context has a required field whose
            type has no obvious placeholder.

    """
    snake = snake_name(name, "cadence name")
    cls = class_name(name, "cadence name", "Context")
    variable = f"{snake}_cadence"
    plan = Plan(project.root)
    contexts = _parse(plan, project.contexts)
    existing = _context_classes(contexts).get(cls)
    arguments = ""
    if existing is None:
        label = name.replace("_", " ").replace("-", " ")
        _run(
            plan,
            project.contexts,
            AddContext(
                cls,
                description=f"What the {label} cadence works on.",
                first_party=project.package,
            ),
        )
    else:
        required = [f for f in existing if f.default is None]
        missing = [f for f in required if f.annotation not in _PLACEHOLDERS]
        if missing:
            raise CodegenError(
                f"{plan.label(project.contexts)}: {cls} has required fields without an obvious "
                f"placeholder ({', '.join(f.name for f in missing)}); give them defaults first"
            )
        arguments = ", ".join(f"{f.name}={_PLACEHOLDERS[f.annotation]}" for f in required)
    _run(
        plan,
        project.cadences,
        AddCadence(
            snake,
            variable,
            cls,
            project.module_name(project.contexts),
            template_arguments=arguments,
            first_party=project.package,
        ),
    )
    _run(
        plan,
        project.tests,
        AddCadenceTest(
            f"test_{variable}_runs",
            variable,
            project.module_name(project.cadences),
            context_class=cls,
            context_module=project.module_name(project.contexts),
            first_party=project.package,
        ),
    )
    return plan


@dataclass(frozen=True, slots=True)
class BeatOptions:
    """What `cadence new beat` puts on a beat, besides `@beat`.

    Attributes:
        retry: `@retry(max_attempts=N)`.
        timeout: `@timeout(seconds=S)`.
        fallback: `(field, literal)`: `@fallback(default=literal, field="field")`.
        breaker: `(failure_threshold, recovery_timeout)`: `@circuit_breaker(...)`.
        is_async: An `async def` (the default) or a plain `def`.

    """

    retry: int | None = None
    timeout: float | None = None
    fallback: tuple[str, str] | None = None
    breaker: tuple[int, float | None] | None = None
    is_async: bool = True


def _decorators(options: BeatOptions) -> list[Decorator]:
    decorators: list[Decorator] = []
    if options.fallback is not None:
        field_name, default = options.fallback
        decorators.append(
            Decorator(f'fallback(default={default}, field="{field_name}")', "cadence", "fallback")
        )
    if options.retry is not None:
        if options.retry < 1:
            raise CodegenError(f"--retry {options.retry}: max_attempts must be at least 1")
        decorators.append(Decorator(f"retry(max_attempts={options.retry})", "cadence", "retry"))
    if options.breaker is not None:
        threshold, recovery = options.breaker
        if threshold < 1 or (recovery is not None and recovery <= 0):
            raise CodegenError("--breaker: the threshold must be >= 1 and the recovery > 0")
        arguments = f"failure_threshold={threshold}"
        if recovery is not None:
            arguments += f", recovery_timeout={float(recovery)!r}"
        decorators.append(Decorator(f"circuit_breaker({arguments})", "cadence", "circuit_breaker"))
    if options.timeout is not None:
        if options.timeout <= 0:
            raise CodegenError(f"--timeout {options.timeout}: seconds must be > 0")
        decorators.append(
            Decorator(f"timeout(seconds={float(options.timeout)!r})", "cadence", "timeout")
        )
    decorators.append(Decorator("beat", "cadence", "beat"))
    return decorators


def new_beat(
    project: Project,
    name: str,
    options: BeatOptions | None = None,
    *,
    cadence: str | None = None,
    context: str | None = None,
) -> Plan:
    """Plan a typed beat in `beats.py`, attached to a cadence when one can be told.

    The beat is attached to `cadence` (a cadence or variable name), else to the project's only
    cadence; otherwise it is only defined, and a note says why. Its context is `context`, else
    the attached cadence's, else the project's only context class.

    Raises:
        CodegenError: a name or option is invalid, or the context cannot be told or is unknown.

    """
    options = options or BeatOptions()
    function = snake_name(name, "beat name")
    decorators = _decorators(options)
    plan = Plan(project.root)
    cadences = _parse(plan, project.cadences)
    attach = AttachBeat(
        function,
        function,
        project.module_name(project.beats),
        cadence=None if cadence is None else snake_name(cadence, "cadence name"),
        line_length=project.line_length,
        first_party=project.package,
    )
    site = attach.choose(cadences)
    classes = _context_classes(_parse(plan, project.contexts))
    if context is not None:
        chosen = context if context in classes else class_name(context, "context", "Context")
    elif site is not None and site.context_class is not None:
        chosen = site.context_class
    elif len(classes) == 1:
        chosen = next(iter(classes))
    else:
        known = ", ".join(sorted(classes)) or "none"
        raise CodegenError(
            f"cannot tell which context the beat takes (contexts: {known}); pass --context NAME"
        )
    if chosen not in classes:
        known = ", ".join(sorted(classes)) or "none"
        raise CodegenError(
            f"{plan.label(project.contexts)} has no context class {chosen} (contexts: {known}); "
            f"create it with: cadence new context {chosen.removesuffix('Context').lower()}"
        )
    if options.fallback is not None:
        field_names = {f.name for f in classes[chosen]}
        if options.fallback[0] not in field_names:
            raise CodegenError(
                f"--fallback {options.fallback[0]}=...: {chosen} has no field "
                f"{options.fallback[0]!r} (fields: {', '.join(sorted(field_names)) or 'none'})"
            )
    attach_it = site is not None
    if site is not None and site.context_class not in {None, chosen}:
        if cadence is not None:
            raise CodegenError(
                f"cadence {site.name!r} runs over {site.context_class}, not {chosen}; a beat "
                "attached to it must take its context"
            )
        attach_it = False
        plan.note(
            f"{plan.label(project.cadences)}: the beat is not attached: the only cadence, "
            f"{site.name!r}, runs over {site.context_class}, not {chosen}"
        )
    _run(
        plan,
        project.beats,
        AddBeat(
            function,
            chosen,
            project.module_name(project.contexts),
            is_async=options.is_async,
            decorators=decorators,
            first_party=project.package,
        ),
    )
    if attach_it or site is None:
        attach.notes.clear()
        _run(plan, project.cadences, attach)
    return plan


def cadence_names(project: Project) -> list[str]:
    """Return the names of the cadences `cadences.py` builds."""
    plan = Plan(project.root)
    return [site.name for site in find_sites(_parse(plan, project.cadences))]
