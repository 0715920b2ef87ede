"""`cadence validate` through CliRunner: formats, exit codes and errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence.cli._app import cli

MODULE = """\
from __future__ import annotations

from dataclasses import dataclass

from cadence import Cadence, Context


@dataclass
class Order(Context):
    total: float = 0.0
    status: str = ""


def a(ctx: Order) -> None:
    ctx.total = 1.0


def b(ctx: Order) -> None:
    ctx.total = 2.0


def c(ctx: Order) -> None:
    ctx.status = "c"


clean = Cadence("clean", Order()).sync("fetch", [a, c])
conflict = Cadence("conflict", Order()).sync("fetch", [a, b])
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    (tmp_path / "shop_cadences.py").write_text(MODULE)
    (tmp_path / "shop_clean.py").write_text(MODULE.split("conflict =", maxsplit=1)[0])
    (tmp_path / "shop_raises.py").write_text("import json\n\njson.loads('{')\n")
    (tmp_path / "shop_syntax.py").write_text("x = (\n")
    (tmp_path / "shop_broken.py").write_text(
        "from cadence import Cadence\n\n\ndef a(ctx):\n    pass\n\n\n"
        'x = Cadence("x").then("a", a).then("a", a)\n'
    )
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def invoke(*args: str):
    return CliRunner().invoke(cli, ["validate", *args])


def test_clean_module_exits_0(workdir: Path):
    result = invoke("shop_clean")
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == "1 cadence checked, no findings\n"


def test_table(workdir: Path):
    result = invoke("shop_cadences")
    assert result.exit_code == 1
    assert "shop_cadences.py:19" in result.stdout
    assert "merge-conflict" in result.stdout
    assert result.stderr == "2 cadences checked, 1 finding\n"


def test_json_schema(workdir: Path):
    result = invoke("shop_cadences", "--format", "json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document == {
        "version": 1,
        "cadences": ["clean", "conflict"],
        "findings": [
            {
                "rule": "merge-conflict",
                "message": (
                    "cadence 'conflict', step 'fetch': beats 'a' (shop_cadences.py:15) and 'b' "
                    "(shop_cadences.py:19) all write field 'total'; under fail_on_conflict that "
                    "raises MergeConflictError whenever their values differ (write disjoint "
                    "fields, use an AtomicList/AtomicDict, or pass merge=last_write_wins or "
                    "merge=smart_merge)"
                ),
                "cadence": "conflict",
                "step": "fetch",
                "file": "shop_cadences.py",
                "line": 19,
            }
        ],
        "summary": {"cadences": 2, "findings": 1},
    }


def test_github_annotations(workdir: Path):
    result = invoke("shop_cadences", "--format", "github")
    assert result.exit_code == 1
    [line] = result.stdout.splitlines()
    assert line.startswith(
        "::error file=shop_cadences.py,line=19,title=cadence validate%3A merge-conflict::"
        "cadence 'conflict', step 'fetch': beats 'a' (shop_cadences.py:15)"
    )


def test_one_cadence_by_attribute(workdir: Path):
    assert invoke("shop_cadences:clean").exit_code == 0
    assert invoke("shop_cadences:conflict").exit_code == 1


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module", "Error: no module named 'no_such_module'"),
        ("shop_raises", "Error: cannot import 'shop_raises': JSONDecodeError: "),
        ("shop_syntax", "Error: cannot import 'shop_syntax': SyntaxError: "),
        ("shop_cadences:nope", "Error: module 'shop_cadences' has no attribute 'nope'"),
        ("shop_cadences:Order", "Error: shop_cadences:Order is a type, not a Cadence"),
        ("not a module", "Error: 'not a module' is not a module name"),
    ],
)
def test_user_errors_exit_2_with_one_line(workdir: Path, target: str, message: str):
    result = invoke(target)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_syntax_error_points_at_the_file(workdir: Path):
    result = invoke("shop_syntax")
    assert "(shop_syntax.py:1)" in result.stderr


def test_no_module_is_a_usage_error(workdir: Path):
    result = invoke()
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr


def test_a_definition_error_is_a_finding(workdir: Path):
    result = invoke("shop_broken", "--format", "github")
    assert result.exit_code == 1
    assert result.stdout.startswith(
        "::error file=shop_broken.py,line=8,title=cadence validate%3A duplicate-name::"
        "cadence 'x', step 'a' (then): a step named 'a' already exists"
    )
