"""The `cadence` command itself: help, version, the missing extra, and how failures exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import cadence
from cadence.cli import INSTALL_HINT, main
from cadence.cli._app import cli

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_every_command_with_examples():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "new", "diagram", "validate"):
        assert command in result.stdout
    assert "cadence new beat process-payment --retry 3 --timeout 30" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["init", "--help"],
        ["new", "--help"],
        ["new", "context", "--help"],
        ["new", "cadence", "--help"],
        ["new", "beat", "--help"],
        ["diagram", "--help"],
        ["validate", "--help"],
    ],
)
def test_every_command_has_help_with_examples(args: list[str]):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Examples" in result.stdout
    assert "cadence " in result.stdout


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert (result.exit_code, result.stdout) == (0, f"cadence {cadence.__version__}\n")


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("missing", ["rich_click", "libcst"])
def test_without_the_extra_it_prints_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], missing: str
):
    monkeypatch.setitem(sys.modules, missing, None)  # makes the import fail, as if not installed
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert INSTALL_HINT in captured.err
    assert "pip install 'cadence-flow[cli]'" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_an_internal_bug_is_one_line_and_exit_70(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import cadence._validate  # noqa: PLC0415, F401 # loads the module patched below

    def broken(*targets: object) -> object:
        raise RuntimeError("something internal\nwith a second line")

    # by sys.modules: once cadence re-exports validate(), cadence.validate is the function
    monkeypatch.setattr(sys.modules["cadence._validate"], "validate", broken)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    result = CliRunner().invoke(cli, ["validate", "json"])
    assert result.exit_code == 70
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "cadence: internal error: RuntimeError: something internal (rerun with --debug for "
        "the traceback, and please report it)"
    ]
    debug = CliRunner().invoke(cli, ["--debug", "validate", "json"])
    assert debug.exit_code == 70
    assert "Traceback (most recent call last)" in debug.stderr
    assert 'raise RuntimeError("something internal' in debug.stderr


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=False,
        timeout=60,
    )


def test_python_dash_m_cadence():
    result = run_module("-m", "cadence", "--version")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"cadence {cadence.__version__}\n",
        "",
    )


def test_help_imports_nothing_heavy():
    probe = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from cadence.cli._app import cli\n"
        "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n"
        "heavy = ['libcst', 'cadence.codegen']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    result = run_module("-c", probe)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr
