"""The plugin works at both ends of the supported mypy range: the oldest (1.13) and this one.

The newest mypy is the one the test dependencies install (every other typecheck test runs on
it). Here a separate virtual environment gets the oldest supported mypy from PyPI, and runs it,
with the plugin, over the same cases and over a file of known mistakes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OLDEST_MYPY = "1.13.0"

KNOWN_MISTAKES = """
from dataclasses import dataclass
from cadence import Cadence, Context, ImmutableContext, beat, fallback, retry


@dataclass
class Order(Context):
    status: str = ""


@dataclass
class Payment(Context):
    amount: float = 0.0


@dataclass(frozen=True)
class Config(ImmutableContext):
    timeout: int = 30


class NotADataclass(Context):
    pass


async def charge(ctx: Payment) -> None: ...


Config().with_field("timout", 60)


@fallback(default={"stauts": "unknown"})
@retry(max_attempts=0)
async def get_status(ctx: Order) -> None: ...


@beat
def not_a_beat(x: int) -> None: ...


checkout = (
    Cadence("checkout", Order())
    .then("charge", charge)
    .then("charge", get_status)
)


def drop(ctx: Config) -> None:
    ctx.with_field("timeout", 1)


Cadence("config", Config()).then("drop", drop)
"""

EXPECTED_CODES = {
    "[cadence-dataclass]": 1,
    "[cadence-field]": 2,
    "[cadence-config]": 1,
    "[cadence-name]": 1,
    "[cadence-immutable]": 1,
    "[arg-type]": 1,
    "[type-var]": 1,  # `@beat` on a non-context: mypy's own error, the plugin's note follows
}


@pytest.fixture(scope="module")
def oldest_mypy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the python of a fresh virtual environment holding the oldest supported mypy."""
    home = tmp_path_factory.mktemp("mypy-oldest")
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"mypy=={OLDEST_MYPY}"],
        check=True,
        capture_output=True,
    )
    return python


def run_mypy(
    python: Path, config: str, target: Path, cache: Path
) -> subprocess.CompletedProcess[str]:
    """Run `python -m mypy` with the plugin importable, type-checking against this environment."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [
            str(python),
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "typecheck_tests" / config),
            "--python-executable",
            sys.executable,
            "--cache-dir",
            str(cache),
            str(target),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_oldest_mypy_is_the_one_installed(oldest_mypy: Path) -> None:
    out = subprocess.run(
        [str(oldest_mypy), "-m", "mypy", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith(f"mypy {OLDEST_MYPY}")


@pytest.mark.parametrize(
    ("config", "folder"),
    [("mypy-plain.ini", "plain"), ("mypy-plugin.ini", "plugin")],
)
def test_cases_pass_on_the_oldest_mypy(
    oldest_mypy: Path, tmp_path: Path, config: str, folder: str
) -> None:
    target = ROOT / "typecheck_tests" / folder
    if not any(target.glob("*.py")):
        pytest.skip(f"no cases in typecheck_tests/{folder}")
    result = run_mypy(oldest_mypy, config, target, tmp_path / "cache")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("which", ["oldest", "newest"])
def test_the_plugin_reports_the_same_on_both_ends(
    oldest_mypy: Path, tmp_path: Path, which: str
) -> None:
    case = tmp_path / "mistakes.py"
    case.write_text(KNOWN_MISTAKES, encoding="utf-8")
    python = oldest_mypy if which == "oldest" else Path(sys.executable)
    result = run_mypy(python, "mypy-plugin.ini", case, tmp_path / "cache")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    counts = {code: sum(line.endswith(code) for line in lines) for code in EXPECTED_CODES}
    assert counts == EXPECTED_CODES, result.stdout
    assert any('note: Beat "charge" takes "Payment"' in line for line in lines), result.stdout
    assert any('note: @beat: the first parameter of "not_a_beat"' in line for line in lines), (
        result.stdout
    )
