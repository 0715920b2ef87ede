"""The project-level operations: init, new context / cadence / beat, and atomic plans."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadence.codegen import (
    BeatOptions,
    CodegenError,
    find_project,
    init_project,
    new_beat,
    new_cadence,
    new_context,
    package_name,
    parse_field,
)


@pytest.fixture
def project(tmp_path: Path):
    init_project(tmp_path / "shop").write()
    return find_project(tmp_path / "shop")


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_init_writes_a_project_and_refuses_a_non_empty_directory(tmp_path: Path):
    plan = init_project(tmp_path / "my-project")
    assert plan.changed
    assert not (tmp_path / "my-project").exists()  # nothing before write()
    plan.write()
    files = snapshot(tmp_path / "my-project")
    assert set(files) == {
        ".gitignore",
        "README.md",
        "pyproject.toml",
        "src/my_project/__init__.py",
        "src/my_project/py.typed",
        "src/my_project/beats.py",
        "src/my_project/cadences.py",
        "src/my_project/contexts.py",
        "tests/test_cadences.py",
    }
    assert b'plugins = ["cadence_mypy"]' in files["pyproject.toml"]
    assert b'typeCheckingMode = "strict"' in files["pyproject.toml"]
    with pytest.raises(CodegenError, match="is not empty"):
        init_project(tmp_path / "my-project")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("1abc", "not a valid project name"),
        ("a--b", "not a valid project name"),
        ("with space", "not a valid project name"),
        ("json", "would shadow"),
        ("cadence", "would shadow"),
        ("class", "would shadow"),
    ],
)
def test_init_validates_the_name(name: str, message: str):
    with pytest.raises(CodegenError, match=message):
        package_name(name)


def test_find_project_outside_a_project(tmp_path: Path):
    with pytest.raises(CodegenError, match=r"not inside a project: no pyproject.toml"):
        find_project(tmp_path)


def test_find_project_finds_the_package_without_a_tool_table(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.ruff]\nline-length = 79\n'
    )
    (tmp_path / "src" / "x").mkdir(parents=True)
    (tmp_path / "src" / "x" / "__init__.py").write_text("")
    (tmp_path / "src" / "x" / "cadences.py").write_text("")
    found = find_project(tmp_path / "src" / "x")
    assert (found.package, found.package_dir, found.line_length) == (
        "x",
        tmp_path / "src" / "x",
        79,
    )


def test_new_beat_twice_is_byte_identical(project):
    new_cadence(project, "checkout").write()
    first = new_beat(
        project, "process-payment", BeatOptions(retry=3, timeout=30), cadence="checkout"
    )
    assert [project.relative(c.path) for c in first.changed] == [
        "src/shop/beats.py",
        "src/shop/cadences.py",
    ]
    first.write()
    before = snapshot(project.root)
    second = new_beat(
        project, "process-payment", BeatOptions(retry=3, timeout=30), cadence="checkout"
    )
    assert second.changed == []
    assert second.notes == [
        "src/shop/beats.py: process_payment already exists; left as it is",
        "src/shop/cadences.py: cadence 'checkout' already has a step 'process_payment'; left as it is",  # noqa: E501 # the exact line is the point
    ]
    second.write()
    assert snapshot(project.root) == before
    beats = project.beats.read_text()
    assert (
        "@retry(max_attempts=3)\n@timeout(seconds=30.0)\n@beat\nasync def process_payment(ctx: CheckoutContext) -> None:"  # noqa: E501 # the exact line is the point
        in beats
    )


def test_new_beat_all_decorators_in_order(project):
    new_cadence(project, "checkout").write()
    new_context(project, "rates", ["rate:float=1.0"]).write()
    plan = new_beat(
        project,
        "fetch-rates",
        BeatOptions(retry=2, timeout=5, fallback=("rate", "1.5"), breaker=(5, 30), is_async=False),
        context="RatesContext",
    )
    text = plan.changes[project.beats].after.decode()
    assert text == (
        '"""The beats: the small steps the cadences run."""\n\n'
        "from cadence import beat, circuit_breaker, fallback, retry, timeout\n\n"
        "from shop.contexts import RatesContext\n\n\n"
        '@fallback(default=1.5, field="rate")\n'
        "@retry(max_attempts=2)\n"
        "@circuit_breaker(failure_threshold=5, recovery_timeout=30.0)\n"
        "@timeout(seconds=5.0)\n"
        "@beat\n"
        "def fetch_rates(ctx: RatesContext) -> None:\n"
        '    """Fetch rates."""\n'
    )
    assert plan.notes == [
        "src/shop/cadences.py: the beat is not attached: the only cadence, 'checkout', runs "
        "over CheckoutContext, not RatesContext"
    ]
    assert project.cadences not in plan.changes
    with pytest.raises(CodegenError, match="runs over CheckoutContext, not RatesContext"):
        new_beat(project, "fetch-rates", context="RatesContext", cadence="checkout")


def test_new_beat_errors(project):
    with pytest.raises(
        CodegenError, match=r"cannot tell which context the beat takes \(contexts: none\)"
    ):
        new_beat(project, "pay")
    new_context(project, "order", ["id:str"]).write()
    new_cadence(project, "checkout").write()
    new_cadence(project, "order").write()
    with pytest.raises(
        CodegenError,
        match=r"cannot tell which context the beat takes "
        r"\(contexts: CheckoutContext, OrderContext\)",
    ):
        new_beat(project, "pay")
    with pytest.raises(CodegenError, match="has no context class NopeContext"):
        new_beat(project, "pay", context="nope")
    with pytest.raises(CodegenError, match="OrderContext has no field 'missing'"):
        new_beat(project, "pay", BeatOptions(fallback=("missing", "1")), context="OrderContext")
    with pytest.raises(CodegenError, match="not a usable Python name"):
        new_beat(project, "class", context="OrderContext")
    plan = new_beat(project, "pay", context="order")
    assert plan.notes == [
        "src/shop/cadences.py: 2 cadences (checkout, order); pass --cadence NAME to attach the "
        "beat to one"
    ]


def test_new_beat_attaches_to_the_only_cadence(project):
    new_cadence(project, "checkout").write()
    plan = new_beat(project, "shout")
    assert plan.notes == []
    assert plan.changes[project.cadences].after.decode() == (
        '"""The cadences: beats wired into plans."""\n\n'
        "from cadence import Cadence\n\n"
        "from shop.beats import shout\n"
        "from shop.contexts import CheckoutContext\n\n"
        'checkout_cadence = Cadence("checkout", CheckoutContext()).then("shout", shout)\n'
    )


def test_syntax_error_in_a_file_to_edit(project):
    project.cadences.write_text("x = (\n")
    with pytest.raises(CodegenError, match=r"^src/shop/cadences.py:\d+:\d+: cannot parse the file"):
        new_beat(project, "shout")


def test_new_cadence_reuses_an_existing_context_with_placeholders(project):
    new_context(project, "checkout", ["order_id:str", "count:int", "total:float=0.0"]).write()
    plan = new_cadence(project, "checkout")
    assert plan.notes == []
    assert project.contexts not in {c.path for c in plan.changed}
    assert 'checkout_cadence = Cadence("checkout", CheckoutContext(order_id="", count=0))\n' in (
        plan.changes[project.cadences].after.decode()
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (["a"], "expected name:type"),
        (["a:int=", "b:int"], "expected name:type"),
        (["a:int=1", "b:int"], "cannot follow a"),
        (["a:int", "a:str"], "given twice"),
        (["a:int=foo()"], "not a Python literal"),
        (["a:list[=1"], "not a Python type"),
        (["_a:int"], "not a public Python name"),
    ],
)
def test_new_context_validates_fields(project, fields: list[str], message: str):
    with pytest.raises(CodegenError, match=message):
        new_context(project, "order", fields)


def test_parse_field():
    field = parse_field("total : float = 0.0")
    assert (field.name, field.annotation, field.default) == ("total", "float", "0.0")


def test_plan_writes_everything_or_nothing(project, monkeypatch: pytest.MonkeyPatch):
    before = snapshot(project.root)
    plan = new_cadence(project, "checkout")
    assert len(plan.changed) == 3
    real_replace = Path.replace
    calls: list[Path] = []

    def failing_replace(self: Path, target: Path) -> Path:
        calls.append(self)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        plan.write()
    monkeypatch.undo()
    assert snapshot(project.root) == before  # restored, and no temporary file left behind


def test_plan_diff(project):
    plan = new_context(project, "order", ["id:str"])
    assert plan.diff().startswith("--- a/src/shop/contexts.py\n+++ b/src/shop/contexts.py\n@@ ")
    assert "+class OrderContext(Context):\n" in plan.diff()
