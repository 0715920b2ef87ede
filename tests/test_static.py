"""The package is clean under ruff, `mypy --strict` and `pyright --strict`, as CI requires."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    "command",
    [
        ("ruff", "check", "."),
        ("ruff", "format", "--check", "."),
        ("mypy",),  # [tool.mypy] in pyproject.toml: strict, over cadence/
        ("pyright", "--pythonpath", sys.executable),  # [tool.pyright]: strict, over cadence/
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_clean(command: tuple[str, ...]) -> None:
    result = _run(*command)
    assert result.returncode == 0, result.stdout + result.stderr
