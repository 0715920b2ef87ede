"""Check cadence definitions before anything runs: `validate(...)` and its findings.

`validate` walks the plans of the cadences it is given (or finds in modules) and reports what
would fail or mislead at run time, each finding with the file and line to look at:

| rule | what it finds |
|---|---|
| `definition` | a builder call refused the definition while the module was imported |
| `duplicate-name` | two cadences of one name, or two beats of one name in one cadence |
| `not-callable` | a beat, condition, merge or handler that cannot be called |
| `context-mismatch` | a beat, condition or handler annotated for another context type |
| `child-merge` | a child step's merge or context function that does not fit the two contexts |
| `empty` | a parallel step or a split's `if_true` branch without beats |
| `merge-conflict` | two beats of one `sync` step writing one field under `fail_on_conflict` |

The last rule reads the beats' source: an assignment to `ctx.field` (plain, augmented,
annotated, through an item or attribute, or deleted), a mutating method call on it
(`ctx.field.append(...)`, `.update(...)`, ...), `setattr(ctx, "field", ...)` and
`ctx.with_field("field", ...)` count as writes. Atomic and shared fields are exempt: they are
never merged.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import inspect
import re
import sys
import textwrap
import traceback
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, get_args, get_origin

from cadence._beat import BeatSpec
from cadence._cadence import Cadence
from cadence._context import AtomicDict, AtomicList
from cadence._errors import CadenceDefinitionError
from cadence._merge import fail_on_conflict
from cadence._steps import Child, Split, Step, Sync, Then

__all__ = ["RULES", "SCHEMA_VERSION", "Finding", "ValidationReport", "find_cadences", "validate"]

Rule: TypeAlias = Literal[
    "definition",
    "duplicate-name",
    "not-callable",
    "context-mismatch",
    "child-merge",
    "empty",
    "merge-conflict",
]
"""The name of a validation rule."""

RULES: Final[dict[str, str]] = {
    "definition": "a builder call refused the definition while the module was imported",
    "duplicate-name": "two cadences of one name, or two beats of one name in one cadence",
    "not-callable": "a beat, condition, merge or handler that cannot be called",
    "context-mismatch": "a beat, condition or handler annotated for another context type",
    "child-merge": "a child step's merge or context function that does not fit the contexts",
    "empty": "a parallel step or a split's if_true branch without beats",
    "merge-conflict": "two beats of one sync step write the same field under fail_on_conflict",
}
"""Every rule `validate` applies, with a one-line description."""

SCHEMA_VERSION: Final = 1
"""The version of `ValidationReport.as_dict()`'s layout; bumped only on incompatible changes."""

# Any: a cadence over any context type
AnyCadence: TypeAlias = Cadence[Any]
Target: TypeAlias = "Cadence[Any] | types.ModuleType | str"

_CADENCE_PACKAGE = Path(__file__).resolve().parent
_MUTATORS: Final = frozenset(
    {
        "append",
        "extend",
        "insert",
        "pop",
        "remove",
        "clear",
        "sort",
        "reverse",
        "update",
        "setdefault",
        "popitem",
        "add",
        "discard",
        "difference_update",
        "intersection_update",
        "symmetric_difference_update",
        "__setitem__",
        "__delitem__",
        "__iadd__",
    }
)
_STEP_METHODS: Final = frozenset({"then", "sync", "split", "child"})


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem `validate` found.

    Attributes:
        rule: The rule that found it (a key of `RULES`).
        message: What is wrong and what to do, naming the cadence and the step.
        cadence: The cadence's name (`None` when a definition failed before it had one).
        step: The step's name, when the finding is about one.
        file: The source file to look at, when known.
        line: The line in `file`, when known.

    """

    rule: Rule
    message: str
    cadence: str | None = None
    step: str | None = None
    file: str | None = None
    line: int | None = None

    def as_dict(self) -> dict[str, str | int | None]:
        """Return the finding as the JSON object of the documented schema."""
        return {
            "rule": self.rule,
            "message": self.message,
            "cadence": self.cadence,
            "step": self.step,
            "file": self.file,
            "line": self.line,
        }


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """What `validate` checked and found.

    Attributes:
        cadences: The names of the cadences checked, in the order found.
        findings: The findings, ordered by file and line.

    """

    cadences: tuple[str, ...]
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """Whether nothing was found."""
        return not self.findings

    def as_dict(self) -> dict[str, object]:
        """Return the report as the JSON document of the documented schema (version 1)."""
        return {
            "version": SCHEMA_VERSION,
            "cadences": list(self.cadences),
            "findings": [f.as_dict() for f in self.findings],
            "summary": {"cadences": len(self.cadences), "findings": len(self.findings)},
        }


def find_cadences(module: types.ModuleType) -> list[AnyCadence]:
    """Return the cadences bound to names in `module`, in definition order, each once."""
    seen: set[int] = set()
    found: list[AnyCadence] = []
    values: list[object] = list(vars(module).values())
    for value in values:
        cadence = _as_cadence(value)
        if cadence is not None and id(cadence) not in seen:
            seen.add(id(cadence))
            found.append(cadence)
    return found


def _as_cadence(value: object) -> AnyCadence | None:
    # pyright narrows to Cadence[Unknown], mypy to Cadence[Any]: only pyright needs telling
    return value if isinstance(value, Cadence) else None  # pyright: ignore[reportUnknownVariableType]


def validate(*targets: Cadence[Any] | types.ModuleType | str) -> ValidationReport:
    """Check cadences, given as objects, modules, or module names to import.

    A module name is imported (with whatever `sys.path` holds); when one of its builder calls
    raises `CadenceDefinitionError`, that is reported as a finding at the line that made it.
    Child cadences are checked too.

    Args:
        targets: `Cadence` objects, modules to search for cadences, or module names.

    Returns:
        The names checked and the findings, sorted by file and line.

    Raises:
        ImportError: a module name cannot be imported (other errors raised while importing it
            propagate too).

    """
    checker = _Checker()
    for target in targets:
        if isinstance(target, Cadence):
            checker.add(target, None)
        elif isinstance(target, types.ModuleType):
            for cadence in find_cadences(target):
                checker.add(cadence, target)
        else:
            module = checker.import_module(target)
            if module is not None:
                for cadence in find_cadences(module):
                    checker.add(cadence, module)
    return checker.report()


# ------------------------------------------------------------------------------ the checker


@dataclass
class _Checker:
    findings: list[Finding] = field(default_factory=list[Finding])
    names: list[str] = field(default_factory=list[str])
    seen: set[int] = field(default_factory=set[int])
    by_name: dict[str, str | None] = field(default_factory=dict[str, str | None])
    locations: dict[str, _Locations] = field(default_factory=dict[str, "_Locations"])

    def report(self) -> ValidationReport:
        def key(f: Finding) -> tuple[str, int, str]:
            return (f.file or "\uffff", f.line or 0, f.message)

        return ValidationReport(tuple(self.names), tuple(sorted(self.findings, key=key)))

    def import_module(self, name: str) -> types.ModuleType | None:
        try:
            return importlib.import_module(name)
        except CadenceDefinitionError as error:
            file, line = _user_frame(error)
            message = str(error)
            match = re.match(r"(?:cadence|Cadence:?) '([^']+)'", message)
            self.findings.append(
                Finding(
                    _classify(message),
                    f"{message} (raised while importing {name})",
                    cadence=match.group(1) if match else None,
                    file=file,
                    line=line,
                )
            )
            return None

    def add(self, cadence: AnyCadence, module: types.ModuleType | None) -> None:
        if id(cadence) in self.seen:
            return
        self.seen.add(id(cadence))
        where = self._locations(module).cadence(cadence.name)
        if cadence.name in self.by_name:
            first = self.by_name[cadence.name]
            self.findings.append(
                Finding(
                    "duplicate-name",
                    f"two cadences are named {cadence.name!r}"
                    f"{f' (the first at {first})' if first else ''}; hooks, reporters and "
                    "diagrams cannot tell them apart",
                    cadence=cadence.name,
                    **_at(where),
                )
            )
        else:
            self.by_name[cadence.name] = f"{where[0]}:{where[1]}" if where else None
        self.names.append(cadence.name)
        self._check(cadence, module, where)

    def _locations(self, module: types.ModuleType | None) -> _Locations:
        file = getattr(module, "__file__", None) if module is not None else None
        if not file:
            return _Locations(None, {}, {})
        if file not in self.locations:
            self.locations[file] = _Locations.read(file)
        return self.locations[file]

    def _check(
        self, cadence: AnyCadence, module: types.ModuleType | None, where: tuple[str, int] | None
    ) -> None:
        locations = self._locations(module)
        ctx_type = context_type(cadence)
        name = cadence.name

        emit = _Emitter(self.findings, locations, name, where)

        beat_steps: dict[str, str] = {}
        for step in cadence.steps:
            self._check_step(emit, step, ctx_type, beat_steps, module)
        handler = cadence.error_handler
        if handler is not None:
            _check_fn(emit, (f"cadence {name!r}", None), "the error handler", handler, ctx_type)

    def _check_step(
        self,
        emit: _Emit,
        step: Step,
        ctx_type: type | None,
        beat_steps: dict[str, str],
        module: types.ModuleType | None,
    ) -> None:
        prefix = f"cadence {emit.cadence!r}, step {step.name!r}"
        where = (prefix, step.name)
        for group, specs in _groups(step):
            if not specs and group != "if_false":
                what = "the parallel step" if group == "beats" else group
                emit("empty", f"{prefix}: {what} holds no beats", step.name, None)
            for spec in specs:
                _check_fn(emit, where, f"beat {spec.name!r}", spec.fn, ctx_type)
        for spec in _distinct_names(step):
            first = beat_steps.setdefault(spec.name, step.name)
            if first != step.name:
                emit(
                    "duplicate-name",
                    f"{prefix}: beat {spec.name!r} has the name of a beat of step {first!r}; "
                    "hooks, timings and diagrams cannot tell them apart (rename one with "
                    "@beat(name=...))",
                    step.name,
                    None,
                )
        if isinstance(step, Split):
            _check_fn(emit, where, "the condition", step.condition, ctx_type)
        elif isinstance(step, Sync):
            _check_fn(emit, where, "the merge strategy", step.merge, None)
            if step.merge is fail_on_conflict:
                self._check_writes(emit, prefix, step, ctx_type)
        elif isinstance(step, Child):
            self._check_child(emit, prefix, step, ctx_type)
            self.add(step.cadence, module)

    def _check_child(self, emit: _Emit, prefix: str, step: Child, ctx_type: type | None) -> None:
        child_type = context_type(step.cadence)
        if step.context is not None:
            _check_fn(emit, (prefix, step.name), "the context function", step.context, ctx_type)
            built = _return_annotation(step.context)
            if (
                isinstance(built, type)
                and child_type is not None
                and not issubclass(built, child_type)
            ):
                emit(
                    "child-merge",
                    f"{prefix}: the context function builds a {built.__qualname__}, but child "
                    f"cadence {step.cadence.name!r} runs over {child_type.__qualname__}",
                    step.name,
                    _source_location(step.context),
                )
            elif isinstance(built, type):
                child_type = built
        merge: object = step.merge
        if not callable(merge):
            _check_fn(emit, (prefix, step.name), "the merge", merge, None)
            return
        try:
            inspect.signature(merge).bind(object(), object())
        except TypeError:
            emit(
                "child-merge",
                f"{prefix}: the merge cannot be called as merge(parent, child) with two arguments",
                step.name,
                _source_location(merge),
            )
            return
        except ValueError:  # no signature (a builtin): nothing more to read
            return
        for index, (role, expected) in enumerate((("parent", ctx_type), ("child", child_type))):
            annotation = _parameter_annotation(merge, index)
            if expected is None or annotation is _UNKNOWN:
                continue
            if _accepts(annotation, expected) is False:
                emit(
                    "child-merge",
                    f"{prefix}: the merge's {'first' if index == 0 else 'second'} parameter "
                    f"takes {_type_name(annotation)}, but the {role} context is "
                    f"{expected.__qualname__} (merge(parent, child))",
                    step.name,
                    _source_location(merge),
                )

    @staticmethod
    def _check_writes(emit: _Emit, prefix: str, step: Sync, ctx_type: type | None) -> None:
        exempt = _unmerged_fields(ctx_type)
        writers: dict[str, list[tuple[str, tuple[str, int] | None]]] = {}
        for spec in step.beats:
            for name, at in written_fields(spec.fn).items():
                if name not in exempt:
                    writers.setdefault(name, []).append((spec.name, at))
        for name, writes in writers.items():
            if len(writes) < 2:
                continue
            described = " and ".join(
                f"{beat!r}{f' ({Path(at[0]).name}:{at[1]})' if at else ''}" for beat, at in writes
            )
            emit(
                "merge-conflict",
                f"{prefix}: beats {described} all write field {name!r}; under "
                "fail_on_conflict that raises MergeConflictError whenever their values differ "
                "(write disjoint fields, use an AtomicList/AtomicDict, or pass "
                "merge=last_write_wins or merge=smart_merge)",
                step.name,
                writes[1][1],
            )


@dataclass(frozen=True, slots=True)
class _Emitter:
    """Adds findings about one cadence, placed at the best location known."""

    findings: list[Finding]
    locations: _Locations
    cadence: str
    where: tuple[str, int] | None

    def __call__(
        self, rule: Rule, message: str, step: str | None, at: tuple[str, int] | None, /
    ) -> None:
        at = at or (self.locations.step(self.cadence, step) if step else None) or self.where
        self.findings.append(Finding(rule, message, cadence=self.cadence, step=step, **_at(at)))


_Emit: TypeAlias = _Emitter


def _check_fn(
    emit: _Emit, where: tuple[str, str | None], what: str, fn: object, ctx_type: type | None
) -> None:
    """Report `fn` when it cannot be called, or is annotated for another context than `ctx_type`."""
    prefix, step = where
    if not callable(fn):
        emit(
            "not-callable",
            f"{prefix}: {what} is a {type(fn).__qualname__}, which cannot be called",
            step,
            None,
        )
        return
    if ctx_type is None:
        return
    annotation = _parameter_annotation(fn, 0)
    if annotation is _UNKNOWN or _accepts(annotation, ctx_type) is not False:
        return
    emit(
        "context-mismatch",
        f"{prefix}: {what} takes {_type_name(annotation)}, but the cadence runs over "
        f"{ctx_type.__qualname__}",
        step,
        _source_location(fn),
    )


def _at(at: tuple[str, int] | None) -> dict[str, Any]:  # Any: str and int keyword values
    return {"file": at[0], "line": at[1]} if at else {}


def _groups(step: object) -> Iterator[tuple[str, tuple[BeatSpec, ...]]]:
    if isinstance(step, Then):
        yield "beat", (step.beat,)
    elif isinstance(step, Sync):
        yield "beats", step.beats
    elif isinstance(step, Split):
        yield "if_true", step.if_true
        yield "if_false", step.if_false


def _distinct_names(step: object) -> list[BeatSpec]:
    """Return the beats of `step`, a beat named in both branches of a split counted once."""
    specs: dict[str, BeatSpec] = {}
    for _, group in _groups(step):
        for spec in group:
            specs.setdefault(spec.name, spec)
    return list(specs.values())


def _classify(message: str) -> Rule:
    if "already exists" in message or "both named" in message:
        return "duplicate-name"
    if "callable" in message or "expected a function" in message:
        return "not-callable"
    if "must not be empty" in message:
        return "empty"
    if "child" in message:
        return "child-merge"
    return "definition"


def _user_frame(error: BaseException) -> tuple[str | None, int | None]:
    """Return the innermost traceback frame outside cadence's own package."""
    found: tuple[str | None, int | None] = (None, None)
    for frame in traceback.extract_tb(error.__traceback__):
        path = Path(frame.filename)
        if path.is_relative_to(_CADENCE_PACKAGE) or frame.filename.startswith("<frozen"):
            continue
        found = (frame.filename, frame.lineno)
    return found


def context_type(cadence: Cadence[Any]) -> type | None:
    """Return the context type of `cadence`: its template's type, or one it declares."""
    template: object = cadence.context
    if template is not None:
        return type(template)
    declared = getattr(cadence, "context_type", None)
    return declared if isinstance(declared, type) else None


# ------------------------------------------------------------------------------ annotations

_UNKNOWN: Final = object()


def _target(fn: object) -> object:
    fn = inspect.unwrap(fn) if callable(fn) else fn
    while isinstance(fn, functools.partial):
        fn = inspect.unwrap(fn.func)
    return fn


def _hints(fn: object) -> dict[str, Any]:  # Any: resolved annotations
    target = _target(fn)
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = getattr(type(target), "__call__", None)  # noqa: B004 # the class's own __call__
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 # an annotation that does not resolve is not checked
        return {}


def _parameter_annotation(fn: object, index: int) -> object:
    """Return the resolved annotation of the `index`-th positional parameter, or `_UNKNOWN`."""
    try:
        signature = inspect.signature(typing.cast("Callable[..., object]", fn))
    except (TypeError, ValueError):
        return _UNKNOWN
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in {p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD}
    ]
    if len(positional) <= index:
        return _UNKNOWN
    parameter = positional[index]
    if parameter.annotation is parameter.empty:
        return _UNKNOWN
    annotation: object = parameter.annotation
    if isinstance(annotation, str):
        annotation = _hints(fn).get(parameter.name, _UNKNOWN)
    return annotation


def _return_annotation(fn: object) -> object:
    return _hints(fn).get("return", _UNKNOWN)


def _accepts(annotation: object, ctx_type: type) -> bool | None:
    """Return whether a parameter annotated `annotation` takes a `ctx_type` (None: cannot tell)."""
    if annotation is Any or annotation is object:
        return True
    if isinstance(annotation, typing.TypeVar):
        bound = annotation.__bound__
        return True if bound is None else _accepts(bound, ctx_type)
    origin = get_origin(annotation)
    if origin is typing.Union or isinstance(annotation, types.UnionType):
        verdicts = [_accepts(a, ctx_type) for a in get_args(annotation)]
        if any(v is True for v in verdicts):
            return True
        return None if any(v is None for v in verdicts) else False
    if origin is not None:
        annotation = origin
    if isinstance(annotation, type):
        return issubclass(ctx_type, annotation)
    return None


def _type_name(annotation: object) -> str:
    return annotation.__qualname__ if isinstance(annotation, type) else repr(annotation)


def _unmerged_fields(ctx_type: type | None) -> frozenset[str]:
    """Return the fields of `ctx_type` that parallel beats share instead of merging."""
    if ctx_type is None or not dataclasses.is_dataclass(ctx_type):
        return frozenset()
    exempt: set[str] = set()
    try:
        hints = typing.get_type_hints(ctx_type, include_extras=True)
    except Exception:  # noqa: BLE001 # unresolvable annotations: fall back to no exemptions
        hints = {}
    for name, hint in hints.items():
        if any(_is_atomic(part) for part in _parts(hint)):
            exempt.add(name)
    shared = getattr(sys.modules["cadence._context"], "shared_fields", None)
    if callable(shared):
        exempt.update(typing.cast("frozenset[str]", shared(ctx_type)))
    return frozenset(exempt)


def _parts(hint: object) -> Iterator[object]:
    yield hint
    origin = get_origin(hint)
    if origin is not None:
        yield origin
    if origin is typing.Union or isinstance(hint, types.UnionType) or origin is typing.Annotated:
        for arg in get_args(hint):
            yield from _parts(arg)


def _is_atomic(hint: object) -> bool:
    return isinstance(hint, type) and issubclass(hint, AtomicList | AtomicDict)


# ------------------------------------------------------------------------------ source reading


def _source_location(fn: object) -> tuple[str, int] | None:
    target = _target(fn)
    code = getattr(target, "__code__", None)
    if code is None:
        code = getattr(getattr(type(target), "__call__", None), "__code__", None)  # noqa: B004
    if code is None:
        return None
    return (code.co_filename, code.co_firstlineno)


def _parse_function(fn: Callable[..., object]) -> tuple[ast.AST, str, int, str] | None:
    try:
        lines, start = inspect.getsourcelines(fn)
        file = inspect.getsourcefile(fn) or inspect.getfile(fn)
    except (OSError, TypeError):
        return None
    source = textwrap.dedent("".join(lines))
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            arguments = [*node.args.posonlyargs, *node.args.args]
            skip = 1 if inspect.ismethod(fn) else 0
            if len(arguments) <= skip:
                return None
            return node, arguments[skip].arg, start, file
    return None


def written_fields(fn: object) -> dict[str, tuple[str, int] | None]:
    """Return the context fields a beat's source writes, each with the first line that does.

    The beat's first parameter is the context; see the module docstring for what counts as a
    write. Beats whose source cannot be read (builtins, callables made at run time) write
    nothing as far as this function can tell.
    """
    target = _target(fn)
    if inspect.isfunction(target) or inspect.ismethod(target):
        parsed = _parse_function(target)
    else:
        call = getattr(type(target), "__call__", None)  # noqa: B004 # the class's own __call__
        if not inspect.isfunction(call):
            return {}
        parsed = _parse_function(call)
        parsed = None if parsed is None else _skip_self(parsed)
    if parsed is None:
        return {}
    node, param, start, file = parsed
    found: dict[str, tuple[str, int] | None] = {}
    for name, line in _writes(node, param):
        found.setdefault(name, (file, start + line - 1))
    return found


def _skip_self(parsed: tuple[ast.AST, str, int, str]) -> tuple[ast.AST, str, int, str] | None:
    node = parsed[0]
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    arguments = [*node.args.posonlyargs, *node.args.args]
    if len(arguments) < 2:
        return None
    return node, arguments[1].arg, parsed[2], parsed[3]


def _root_field(node: ast.expr, param: str) -> str | None:
    """Return `f` when `node` is `param.f` or reaches into it (`param.f[k]`, `param.f.x`)."""
    while True:
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == param:
                return node.attr
            node = node.value
        elif isinstance(node, ast.Subscript | ast.Starred):
            node = node.value
        else:
            return None


def _targets(node: ast.expr) -> Iterable[ast.expr]:
    if isinstance(node, ast.Tuple | ast.List):
        for element in node.elts:
            yield from _targets(element)
    else:
        yield node


def _writes(tree: ast.AST, param: str) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = [t for target in node.targets for t in _targets(target)]
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = list(_targets(node.target))
        elif isinstance(node, ast.Delete):
            targets = [t for target in node.targets for t in _targets(target)]
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            targets = list(_targets(node.target))
        elif isinstance(node, ast.NamedExpr):
            targets = []
        elif isinstance(node, ast.Call):
            yield from _call_writes(node, param)
        for target in targets:
            name = _root_field(target, param)
            if name is not None:
                yield name, target.lineno


def _call_writes(node: ast.Call, param: str) -> Iterator[tuple[str, int]]:
    func = node.func
    if isinstance(func, ast.Attribute):
        if func.attr in _MUTATORS:
            name = _root_field(func.value, param)
            if name is not None:
                yield name, node.lineno
        is_param = isinstance(func.value, ast.Name) and func.value.id == param
        if is_param and func.attr == "with_field" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield first.value, node.lineno
        if is_param and func.attr == "with_fields":
            for keyword in node.keywords:
                if keyword.arg is not None:
                    yield keyword.arg, node.lineno
    elif isinstance(func, ast.Name) and func.id in {"setattr", "delattr"} and len(node.args) >= 2:
        obj, attribute = node.args[0], node.args[1]
        if (
            isinstance(obj, ast.Name)
            and obj.id == param
            and isinstance(attribute, ast.Constant)
            and isinstance(attribute.value, str)
        ):
            yield attribute.value, node.lineno


# ------------------------------------------------------------------------------ module locations


@dataclass(frozen=True, slots=True)
class _Locations:
    """Where a module's source builds each cadence (`Cadence("name", ...)`) and its steps."""

    file: str | None
    cadences: dict[str, int]
    steps: dict[tuple[str, str], int]

    @staticmethod
    def read(file: str) -> _Locations:
        try:
            tree = ast.parse(Path(file).read_bytes(), filename=file)
        except (OSError, SyntaxError, ValueError):
            return _Locations(file, {}, {})
        cadences: dict[str, int] = {}
        steps: dict[tuple[str, str], int] = {}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _cadence_call_name(node)
            if name is not None:
                cadences.setdefault(name, node.lineno)
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in _STEP_METHODS and node.args:
                step = _literal(node.args[0])
                root = _chain_root(func.value)
                if step is not None and root is not None:
                    steps.setdefault((root, step), func.end_lineno or node.lineno)
        return _Locations(file, cadences, steps)

    def cadence(self, name: str) -> tuple[str, int] | None:
        line = self.cadences.get(name)
        return (self.file, line) if self.file and line else None

    def step(self, cadence: str, step: str) -> tuple[str, int] | None:
        line = self.steps.get((cadence, step))
        return (self.file, line) if self.file and line else None


def _literal(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _cadence_call_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Subscript):  # Cadence[Ctx]("name")
        func = func.value
    is_cadence = (isinstance(func, ast.Name) and func.id == "Cadence") or (
        isinstance(func, ast.Attribute) and func.attr == "Cadence"
    )
    if not is_cadence:
        return None
    if node.args:
        return _literal(node.args[0])
    for keyword in node.keywords:
        if keyword.arg == "name":
            return _literal(keyword.value)
    return None


def _chain_root(node: ast.expr) -> str | None:
    """Return the cadence name at the root of a builder chain (`Cadence("x", ...).then...`)."""
    while isinstance(node, ast.Call):
        name = _cadence_call_name(node)
        if name is not None:
            return name
        if not isinstance(node.func, ast.Attribute):
            return None
        node = node.func.value
    return None
