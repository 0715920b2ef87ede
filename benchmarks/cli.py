"""How fast the CLI is: `--help`, `new beat` on a 5,000-line module, `validate` of 100 cadences.

    .venv/bin/python benchmarks/cli.py [--runs N]

Each figure is the best and the median of `--runs` runs of a fresh `python -m cadence ...`
subprocess (interpreter start-up included, as a user sees it), beside the issue's target.
`new beat` runs on a copy of the generated project each time, so every run does the full edit.
The script only prints; it checks nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# ruff: noqa: S603 # the subprocesses are this interpreter running cadence's own CLI

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode not in {0, 1}:
        raise SystemExit(f"{args} failed:\n{result.stderr.decode()}")
    return elapsed


def cadence(*args: str) -> list[str]:
    return [sys.executable, "-m", "cadence", *args]


def big_project(base: Path) -> Path:
    subprocess.run(cadence("init", "big"), cwd=base, env=ENV, check=True, capture_output=True)
    project = base / "big"
    subprocess.run(
        cadence("new", "cadence", "checkout"), cwd=project, env=ENV, check=True, capture_output=True
    )
    beats = project / "src" / "big" / "beats.py"
    lines = [
        '"""5,000 lines of beats."""',
        "",
        "from cadence import beat",
        "",
        "from big.contexts import CheckoutContext",
    ]
    index = 0
    while len(lines) < 5000:
        lines += ["", "", "@beat", f"async def beat_{index}(ctx: CheckoutContext) -> None:"]
        lines += [f'    """Beat {index}."""', "    # a comment", "    return None"]
        index += 1
    beats.write_text("\n".join(lines) + "\n")
    return project


def many_cadences(base: Path) -> str:
    lines = [
        "from dataclasses import dataclass",
        "from cadence import Cadence, Context, retry",
        "",
        "@dataclass",
        "class Ctx(Context):",
        "    a: int = 0",
        "    b: int = 0",
        "",
    ]
    for i in range(100):
        lines += [
            f"def first_{i}(ctx: Ctx) -> None:",
            "    ctx.a = 1",
            "@retry(max_attempts=2)",
            f"async def second_{i}(ctx: Ctx) -> None:",
            "    ctx.b += 1",
            f"cadence_{i} = (",
            f'    Cadence("c{i}", Ctx())',
            f'    .sync("both", [first_{i}, second_{i}])',
            f'    .then("again", first_{i})',
            ")",
        ]
    (base / "hundred.py").write_text("\n".join(lines) + "\n")
    return "hundred"


def report(name: str, samples: list[float], target: float) -> None:
    best, median = min(samples), statistics.median(samples)
    print(
        f"{name:<44} best {best * 1e3:7.1f} ms  median {median * 1e3:7.1f} ms  "
        f"target {target * 1e3:5.0f} ms  ({best / target:.2f} of it)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory)
        print(f"python {sys.version.split()[0]}, {runs} runs each")
        report("cadence --help", [timed(cadence("--help"), base) for _ in range(runs)], 0.300)
        project = big_project(base)
        size = len((project / "src/big/beats.py").read_text().splitlines())
        samples = []
        for i in range(runs):
            copy = base / f"copy{i}"
            shutil.copytree(project, copy)
            samples.append(timed(cadence("new", "beat", "process-payment", "--retry", "3"), copy))
        report(f"cadence new beat ({size:,}-line beats.py)", samples, 1.0)
        module = many_cadences(base)
        samples = [timed(cadence("validate", module), base) for _ in range(runs)]
        report("cadence validate (100 cadences)", samples, 2.0)


if __name__ == "__main__":
    main()
