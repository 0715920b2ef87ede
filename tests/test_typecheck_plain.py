"""The plain typing cases (typecheck_tests/plain) hold under mypy --strict and pyright --strict.

The case files are type-checked, never run. Positive cases are `assert_type` calls; each negative
case carries a paired ignore (`# type: ignore[code]` for mypy, `# pyright: ignore[rule]` for
pyright), and both checkers are configured to fail on an ignore that is not needed, so an
expected error that goes missing fails these tests. The last two tests prove that: they edit one
negative case so that it type-checks, and expect each checker to fail on the unused ignore.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TYPECHECK = ROOT / "typecheck_tests"
PLAIN = TYPECHECK / "plain"
MYPY_CONFIG = TYPECHECK / "mypy-plain.ini"
PYRIGHT_CONFIG = TYPECHECK / "pyrightconfig.json"

# The negative case the self-test makes correct: a beat for `Payment` given to a cadence over
# `Order`. Replacing the beat by one for `Order` leaves both ignores on the line unused.
SELF_TEST_FILE = "test_plain_cadence.py"
SELF_TEST_CASE = (
    '    cadence.then("charge", charge)'
    "  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]\n"
)
SELF_TEST_FIX = ('cadence.then("charge", charge)', 'cadence.then("charge", fetch_items)')


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _mypy(
    cache_dir: Path, cases: Path, config: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return _run(
        "mypy",
        "--config-file",
        str(config or MYPY_CONFIG),
        "--cache-dir",
        str(cache_dir),
        str(cases.relative_to(ROOT)) if cases.is_relative_to(ROOT) else str(cases),
    )


def _pyright(config: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, object], str]:
    """Run pyright on `config`; return the process, its JSON summary and readable output."""
    result = _run("pyright", "-p", str(config), "--pythonpath", sys.executable, "--outputjson")
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        return result, {}, result.stdout + result.stderr
    lines = []
    for diagnostic in report["generalDiagnostics"]:
        start = diagnostic.get("range", {}).get("start", {"line": -1, "character": -1})
        rule = f" ({diagnostic['rule']})" if "rule" in diagnostic else ""
        lines.append(
            f"{diagnostic['file']}:{start['line'] + 1}:{start['character'] + 1} - "
            f"{diagnostic['severity']}: {diagnostic['message']}{rule}"
        )
    summary: dict[str, object] = report["summary"]
    lines.append(f"summary: {summary}")
    return result, summary, "\n".join(lines) + "\n" + result.stderr


def _case_files() -> list[Path]:
    files = sorted(PLAIN.glob("*.py"))
    assert files, f"no case files in {PLAIN}"
    return files


def test_mypy_plain(tmp_path: Path) -> None:
    result = _mypy(tmp_path / "mypy_cache", PLAIN)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # An empty or unread directory must not pass: every case file is checked.
    assert f"no issues found in {len(_case_files())} source files" in output, output


def test_mypy_with_the_plugin_plain(tmp_path: Path) -> None:
    # The same cases, with the plugin: its notes follow mypy's errors, so the same ignores hold.
    result = _mypy(tmp_path / "mypy_cache", PLAIN, TYPECHECK / "mypy-plugin.ini")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"no issues found in {len(_case_files())} source files" in output, output


def test_pyright_plain() -> None:
    result, summary, output = _pyright(PYRIGHT_CONFIG)
    assert result.returncode == 0, output
    # pyright exits 0 when it finds no files at all, so count the files it analysed.
    assert summary.get("filesAnalyzed") == len(_case_files()), output
    assert summary.get("errorCount") == 0, output


@pytest.fixture
def corrected_case(tmp_path: Path) -> tuple[Path, int]:
    """A copy of a case file whose self-test negative case is made correct, and its line."""
    source = (PLAIN / SELF_TEST_FILE).read_text(encoding="utf-8")
    assert source.count(SELF_TEST_CASE) == 1, f"{SELF_TEST_CASE!r} not found once"
    lines = source.splitlines(keepends=True)
    lineno = lines.index(SELF_TEST_CASE) + 1
    lines[lineno - 1] = SELF_TEST_CASE.replace(*SELF_TEST_FIX)
    cases = tmp_path / "plain"
    cases.mkdir()
    (cases / SELF_TEST_FILE).write_text("".join(lines), encoding="utf-8")
    # The same pyright configuration, next to the copy (its `include` is relative to it).
    (tmp_path / "pyrightconfig.json").write_text(
        PYRIGHT_CONFIG.read_text(encoding="utf-8"), encoding="utf-8"
    )
    return cases, lineno


def test_mypy_fails_on_a_missing_error(tmp_path: Path, corrected_case: tuple[Path, int]) -> None:
    cases, lineno = corrected_case
    result = _mypy(tmp_path / "mypy_cache", cases)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    errors = [line for line in output.splitlines() if re.search(r":\d+: error:", line)]
    # The unused ignore on the corrected line is the one and only error.
    assert len(errors) == 1, output
    assert f"{SELF_TEST_FILE}:{lineno}: error: Unused " in errors[0], output
    assert "[unused-ignore]" in errors[0], output


def test_pyright_fails_on_a_missing_error(corrected_case: tuple[Path, int]) -> None:
    cases, lineno = corrected_case
    result, summary, output = _pyright(cases.parent / "pyrightconfig.json")
    assert result.returncode == 1, output
    assert summary.get("filesAnalyzed") == 1, output
    # The unnecessary ignore on the corrected line is the one and only error.
    assert summary.get("errorCount") == 1, output
    assert f"{SELF_TEST_FILE}:{lineno}:" in output, output
    assert 'Unnecessary "# pyright: ignore" rule: "reportArgumentType"' in output, output
