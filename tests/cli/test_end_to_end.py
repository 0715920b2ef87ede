"""From `cadence init` to a validated, type-checked, tested project, all as subprocesses.

init -> new context -> new cadence -> new beat (twice) -> mypy --strict with cadence_mypy ->
pyright strict -> ruff -> the project's own pytest -> diagram to SVG -> validate (clean, then
with a planted parallel write conflict found). The tools run from the shared environment, with
this checkout first on PYTHONPATH.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

CONFLICT = '''\
"""A planted parallel write conflict."""

from __future__ import annotations

from cadence import Cadence, beat

from shop.contexts import OrderContext


@beat
def reserve_stock(ctx: OrderContext) -> None:
    """Reserve the stock."""
    ctx.total = 1.0


@beat
def apply_discount(ctx: OrderContext) -> None:
    """Apply the discount."""
    ctx.total -= 0.5


order_cadence = Cadence("order", OrderContext(order_id="o-1")).sync(
    "prepare", [reserve_stock, apply_discount]
)
'''


def run(cwd: Path, *args: str | Path, expect: int = 0) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "NO_COLOR": "1",
    }
    env.pop("PYTHONSTARTUP", None)
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == expect, (
        f"{args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result


def cadence(cwd: Path, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    return run(cwd, sys.executable, "-m", "cadence", *args, expect=expect)


def test_init_new_check_test_draw_validate(tmp_path: Path):
    cadence(tmp_path, "init", "shop")
    project = tmp_path / "shop"
    cadence(
        project, "new", "context", "order", "--field", "order_id:str", "--field", "total:float=0.0"
    )
    cadence(project, "new", "cadence", "checkout")
    cadence(
        project,
        "new",
        "beat",
        "process-payment",
        "--retry",
        "3",
        "--timeout",
        "30",
        "--cadence",
        "checkout",
    )
    cadence(project, "new", "beat", "send-receipt", "--cadence", "checkout", "--sync")
    beat = cadence(
        project, "new", "beat", "estimate-total", "--fallback", "total=0.0", "--breaker", "5:30",
        "--context", "order", "--sync",
    )  # fmt: skip
    assert "the beat is not attached" in beat.stderr  # checkout runs over CheckoutContext
    # everything is in place: a second run would change nothing
    assert cadence(project, "new", "cadence", "checkout", "--check").stderr.endswith(
        "nothing to change\n"
    )

    run(project, sys.executable, "-m", "mypy", "--cache-dir", tmp_path / "mypy-cache")
    pyright = shutil.which("pyright", path=str(BIN)) or shutil.which("pyright")
    if pyright is not None:
        run(project, pyright)
    run(project, sys.executable, "-m", "ruff", "check", "--no-cache", ".")
    run(project, sys.executable, "-m", "ruff", "format", "--no-cache", "--check", ".")
    tests = run(project, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert "2 passed" in tests.stdout

    diagram = importlib.util.find_spec("cadence.diagram")
    if diagram is not None and shutil.which("dot") is not None:
        module = importlib.import_module("cadence.diagram")
        if hasattr(module, "to_dot"):
            cadence(project, "diagram", "shop.cadences:checkout_cadence", "-o", "checkout.svg")
            assert "process_payment" in (project / "checkout.svg").read_text()

    clean = cadence(project, "validate", "shop.cadences")
    assert clean.stderr == "1 cadence checked, no findings\n"

    (project / "src" / "shop" / "conflict.py").write_text(CONFLICT)
    found = cadence(
        project, "validate", "shop.cadences", "shop.conflict", "--format", "json", expect=1
    )
    [finding] = json.loads(found.stdout)["findings"]
    assert finding["rule"] == "merge-conflict"
    assert (finding["cadence"], finding["step"]) == ("order", "prepare")
    assert (finding["file"], finding["line"]) == ("src/shop/conflict.py", 19)
    assert (
        "beats 'reserve_stock' (conflict.py:13) and 'apply_discount' (conflict.py:19)"
        in (finding["message"])
    )


pytestmark = pytest.mark.timeout(600)
