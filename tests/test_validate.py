"""cadence.validate: every rule, with the file and line it points at."""

from __future__ import annotations

import itertools
import sys
import textwrap
from pathlib import Path

import pytest

from cadence import BeatSpec, Cadence, Sync, Then, fail_on_conflict
from cadence._validate import RULES, SCHEMA_VERSION, Finding, find_cadences, validate

_counter = itertools.count()

HEADER = """\
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from cadence import AtomicList, Cadence, Context, beat, last_write_wins, retry, timeout


@dataclass
class Order(Context):
    total: float = 0.0
    status: str = ""
    tags: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    log: AtomicList[str] = field(default_factory=AtomicList)


@dataclass
class Special(Order):
    pass


@dataclass
class Other(Context):
    x: int = 0

"""


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(body: str, *, header: bool = True) -> tuple[str, Path]:
        name = f"validate_case_{next(_counter)}"
        path = tmp_path / f"{name}.py"
        path.write_text((HEADER if header else "") + textwrap.dedent(body))
        names.append(name)
        return name, path

    yield write
    for name in names:
        sys.modules.pop(name, None)


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_a_clean_module_has_no_findings(load):
    name, _ = load("""
        def a(ctx: Order) -> None:
            ctx.total = 1.0

        async def b(ctx: Order) -> None:
            ctx.status = "paid"
            ctx.log.append("b")

        def c(ctx: Order) -> None:
            ctx.log.append("c")

        checkout = Cadence("checkout", Order()).sync("both", [a, b, c]).then("after", a)
    """)
    report = validate(name)
    assert report.ok
    assert report.cadences == ("checkout",)
    assert report.findings == ()


@pytest.mark.parametrize(
    ("first", "second", "field"),
    [
        ("ctx.total = 1.0", "ctx.total += 2", "total"),
        ("ctx.tags.append('a')", "ctx.tags.extend(['b'])", "tags"),
        ("ctx.meta['a'] = 'x'", "ctx.meta.update(b='y')", "meta"),
        ("ctx.status, ctx.total = 'a', 1.0", "setattr(ctx, 'status', 'b')", "status"),
        ("del ctx.meta['k']", "ctx.meta.pop('k')", "meta"),
        ("ctx.total: float = 1.0", "(ctx.total) = 2.0", "total"),
    ],
)
def test_two_parallel_beats_writing_one_field(load, first: str, second: str, field: str):
    name, path = load(f"""
        def a(ctx: Order) -> None:
            {first}

        @retry(max_attempts=2)
        @timeout(seconds=1.0)
        @beat
        async def b(ctx: Order) -> None:
            {second}

        checkout = (
            Cadence("checkout", Order())
            .sync("both", [a, b])
        )
    """)
    report = validate(name)
    assert [(f.rule, f.cadence, f.step) for f in report.findings] == [
        ("merge-conflict", "checkout", "both")
    ]
    finding = report.findings[0]
    assert finding.file == str(path)
    assert finding.line == line_of(path, second)
    assert f"all write field {field!r}" in finding.message
    assert f"'a' ({path.name}:{line_of(path, first)})" in finding.message
    assert "MergeConflictError" in finding.message


def test_merge_strategies_and_atomic_fields_are_not_conflicts(load):
    name, _ = load("""
        def a(ctx: Order) -> None:
            ctx.total = 1.0
            ctx.log.append("a")

        def b(ctx: Order) -> None:
            ctx.total = 2.0
            ctx.log.append("b")

        def c(ctx: Order) -> None:
            ctx.log.append("c")

        lww = Cadence("lww", Order()).sync("both", [a, b], merge=last_write_wins)
        atomic = Cadence("atomic", Order()).sync("both", [a, c])
    """)
    assert validate(name).ok


def test_a_beat_for_another_context(load):
    name, path = load("""
        def fine(ctx: Special) -> None: ...
        def base(ctx: Context) -> None: ...
        def extra(ctx: Order) -> None: ...
        C = TypeVar("C", bound=Context)
        def generic(ctx: C) -> None: ...
        def either(ctx: Other | Special) -> None: ...
        def wrong(ctx: Other) -> None: ...
        def cond(ctx: Other) -> bool:
            return True

        special = (
            Cadence("special", Special())
            .then("fine", fine)
            .then("base", base)
            .then("generic", generic)
            .then("either", either)
            .then("wrong", wrong)  # type: ignore[arg-type]
            .split("route", cond, [extra])  # type: ignore[arg-type]
        )
    """)
    report = validate(name)
    assert [(f.rule, f.step, f.line) for f in report.findings] == [
        ("context-mismatch", "wrong", line_of(path, "def wrong")),
        ("context-mismatch", "route", line_of(path, "def cond")),
    ]
    assert report.findings[0].message == (
        "cadence 'special', step 'wrong': beat 'wrong' takes Other, "
        "but the cadence runs over Special"
    )
    assert "the condition takes Other" in report.findings[1].message


def test_duplicate_names(load):
    first, first_path = load("""
        def fetch(ctx: Order) -> None: ...
        def other(ctx: Order) -> None: ...

        one = Cadence("shop", Order()).then("fetch", fetch).sync("many", [other, fetch])
    """)
    second, second_path = load("""
        two = Cadence("shop", Order())\\
            .then("x", lambda ctx: None)
    """)
    report = validate(first, second)
    by_file = {f.file: f for f in report.findings}
    assert len(report.findings) == 2
    beat_finding, cadence_finding = by_file[str(first_path)], by_file[str(second_path)]
    assert (beat_finding.rule, beat_finding.line) == (
        "duplicate-name",
        line_of(first_path, '.sync("many"'),
    )
    assert (cadence_finding.rule, cadence_finding.line) == (
        "duplicate-name",
        line_of(second_path, 'Cadence("shop"'),
    )
    assert "beat 'fetch' has the name of a beat of step 'fetch'" in beat_finding.message
    assert f"two cadences are named 'shop' (the first at {first_path}:" in cadence_finding.message


def test_a_definition_refused_while_importing(load):
    name, path = load("""
        def a(ctx: Order) -> None: ...

        broken = (
            Cadence("broken", Order())
            .then("a", a)
            .then("a", a)
        )
    """)
    report = validate(name)
    assert [(f.rule, f.cadence, f.file, f.line) for f in report.findings] == [
        ("duplicate-name", "broken", str(path), line_of(path, "broken = (") + 3)
    ]
    assert "a step named 'a' already exists" in report.findings[0].message
    assert f"(raised while importing {name})" in report.findings[0].message


def test_a_non_callable_refused_while_importing(load):
    name, path = load("""
        x = Cadence("x", Order()).then("a", 42)
    """)
    [finding] = validate(name).findings
    assert (finding.rule, finding.line) == ("not-callable", line_of(path, 'Cadence("x"'))


def test_a_non_callable_in_a_plan(load):
    cadence = Cadence("hand-made")
    cadence._steps = (Then("bad", BeatSpec("bad", 42, is_async=False, in_thread=False)),)  # type: ignore[arg-type]
    [finding] = validate(cadence).findings
    assert (finding.rule, finding.step, finding.file) == ("not-callable", "bad", None)
    assert (
        finding.message
        == "cadence 'hand-made', step 'bad': beat 'bad' is a int, which cannot be called"
    )


def test_an_empty_cadence_is_fine_and_an_empty_sync_is_not(load):
    name, _ = load("""
        empty = Cadence("empty", Order())
    """)
    assert validate(name).ok
    cadence = Cadence("hand-made")
    cadence._steps = (Sync("nothing", (), fail_on_conflict),)  # type: ignore[assignment]
    [finding] = validate(cadence).findings
    assert (finding.rule, finding.step) == ("empty", "nothing")
    assert (
        finding.message == "cadence 'hand-made', step 'nothing': the parallel step holds no beats"
    )


def test_child_merges_that_do_not_fit(load):
    name, path = load("""
        child = Cadence("child", Other()).then("c", lambda ctx: None)

        def swapped(child: Other, parent: Order) -> None: ...
        def one_argument(parent: Order) -> None: ...
        def fits(parent: Order, child: Other) -> None: ...
        def builds(parent: Order) -> Order:
            return parent

        parent = (
            Cadence("parent", Order())
            .child("swapped", child, swapped)  # type: ignore[arg-type]
            .child("short", child, one_argument)  # type: ignore[arg-type]
            .child("fits", child, fits)
            .child("built", child, fits, context=builds)  # type: ignore[arg-type]
        )
    """)
    report = validate(name)
    summary = [(f.rule, f.step, f.line) for f in report.findings if f.cadence == "parent"]
    assert summary == [
        ("child-merge", "swapped", line_of(path, "def swapped")),
        ("child-merge", "swapped", line_of(path, "def swapped")),
        ("child-merge", "short", line_of(path, "def one_argument")),
        ("child-merge", "built", line_of(path, "def builds")),
    ]
    assert "the merge's first parameter takes Other, but the parent context is Order" in (
        report.findings[0].message + report.findings[1].message
    )
    assert "cannot be called as merge(parent, child)" in report.findings[2].message
    assert "builds a Order, but child cadence 'child' runs over Other" in report.findings[3].message
    assert report.cadences == ("child", "parent")


def test_import_errors_propagate(load):
    with pytest.raises(ImportError):
        validate("no_such_module_anywhere")
    name, _ = load("raise RuntimeError('boom')\n", header=False)
    with pytest.raises(RuntimeError, match="boom"):
        validate(name)


def test_find_cadences_and_the_schema(load):
    name, path = load("""
        def wrong(ctx: Other) -> None: ...

        a = Cadence("a", Order()).then("wrong", wrong)  # type: ignore[arg-type]
        alias = a
    """)
    module = sys.modules.get(name) or __import__(name)
    assert [c.name for c in find_cadences(module)] == ["a"]
    report = validate(module)
    assert report.as_dict() == {
        "version": SCHEMA_VERSION,
        "cadences": ["a"],
        "findings": [
            {
                "rule": "context-mismatch",
                "message": (
                    "cadence 'a', step 'wrong': beat 'wrong' takes Other, but the cadence runs "
                    "over Order"
                ),
                "cadence": "a",
                "step": "wrong",
                "file": str(path),
                "line": line_of(path, "def wrong"),
            }
        ],
        "summary": {"cadences": 1, "findings": 1},
    }
    assert set(RULES) == {
        "definition",
        "duplicate-name",
        "not-callable",
        "context-mismatch",
        "child-merge",
        "empty",
        "merge-conflict",
    }
    assert Finding("empty", "m").as_dict()["file"] is None
