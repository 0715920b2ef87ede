"""`cadence diagram` through CliRunner: formats, files, Graphviz rendering and errors.

The command's plumbing is tested against a stand-in `cadence.diagram`; the last test uses the
real one when it is there.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence.cli._app import cli

MODULE = """\
from dataclasses import dataclass

from cadence import Cadence, Context


@dataclass
class Order(Context):
    total: float = 0.0


def charge(ctx: Order) -> None:
    ctx.total = 1.0


checkout = Cadence("checkout", Order()).then("charge", charge)
not_a_cadence = 42
"""

DOT = 'digraph cadence {\n  "start" -> "charge";\n}\n'


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "diagram_shop.py").write_text(MODULE)
    yield tmp_path
    sys.modules.pop("diagram_shop", None)


@pytest.fixture
def fake_diagram(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, object]]]:
    calls: list[tuple[str, str, dict[str, object]]] = []
    module = types.ModuleType("cadence.diagram")

    def to_mermaid(cadence, **options):
        calls.append(("mermaid", cadence.name, options))
        return f"flowchart {options['direction']}\n  start --> charge"

    def to_dot(cadence, **options):
        calls.append(("dot", cadence.name, options))
        return DOT

    module.to_mermaid = to_mermaid  # type: ignore[attr-defined]
    module.to_dot = to_dot  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cadence.diagram", module)
    return calls


def invoke(*args: str):
    return CliRunner().invoke(cli, ["diagram", *args])


def test_mermaid_to_stdout(workdir: Path, fake_diagram):
    result = invoke("diagram_shop:checkout")
    assert (result.exit_code, result.stdout) == (0, "flowchart TD\n  start --> charge\n")
    assert fake_diagram == [("mermaid", "checkout", {"direction": "TD", "details": True})]


def test_dot_to_a_file(workdir: Path, fake_diagram):
    result = invoke(
        "diagram_shop:checkout",
        "--format",
        "dot",
        "-o",
        "out.dot",
        "--direction",
        "LR",
        "--no-details",
    )
    assert result.exit_code == 0
    assert (workdir / "out.dot").read_text() == DOT
    assert result.stderr == "wrote out.dot\n"
    assert fake_diagram == [("dot", "checkout", {"direction": "LR", "details": False})]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_svg_through_graphviz(workdir: Path, fake_diagram):
    result = invoke("diagram_shop:checkout", "--output", "checkout.svg")
    assert result.exit_code == 0, result.output
    svg = (workdir / "checkout.svg").read_text()
    assert svg.lstrip().startswith("<?xml")
    assert "charge" in svg
    assert fake_diagram[0][0] == "dot"


def test_svg_without_graphviz_says_what_to_install(workdir: Path, fake_diagram, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = invoke("diagram_shop:checkout", "-o", "checkout.png")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: rendering checkout.png needs Graphviz's dot, which is not installed: install "
        "graphviz (apt install graphviz, brew install graphviz), or write --format dot\n"
    )
    assert not (workdir / "checkout.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["diagram_shop"], "expected module:attribute"),
        (["diagram_shop:nope"], "module 'diagram_shop' has no attribute 'nope'"),
        (["diagram_shop:not_a_cadence"], "is a int, not a Cadence"),
        (["nowhere:x"], "no module named 'nowhere'"),
        (["diagram_shop:checkout", "--format", "mermaid", "-o", "x.svg"], "drop --format mermaid"),
    ],
)
def test_errors(workdir: Path, fake_diagram, args: list[str], message: str):
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(
    importlib.util.find_spec("cadence.diagram") is None, reason="cadence.diagram is not merged yet"
)
def test_real_diagram_module(workdir: Path):
    diagram = pytest.importorskip("cadence.diagram")
    if not hasattr(diagram, "to_mermaid"):
        pytest.skip("cadence.diagram has no to_mermaid yet")
    result = invoke("diagram_shop:checkout")
    assert result.exit_code == 0, result.output
    assert "charge" in result.stdout
    dot = invoke("diagram_shop:checkout", "--format", "dot")
    assert dot.exit_code == 0
    assert "digraph" in dot.stdout


def test_an_output_in_a_missing_directory_is_a_user_error(workdir: Path, fake_diagram):
    result = invoke("diagram_shop:checkout", "-o", "missing/x.mmd")
    assert result.exit_code == 2, result.output
    assert "is not a directory" in result.stderr
    assert "Traceback" not in result.output
    assert not (workdir / "missing").exists()
