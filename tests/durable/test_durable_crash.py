"""Real crashes: a worker process is SIGKILLed inside a beat and another process resumes its run."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("crash_worker.py")
ROOT = Path(__file__).parents[2]
STEPS = [
    "one",
    "two",
    "flaky",
    "par.left",
    "par.right",
    "pick.small",
    "sub.inner",
    "sub.inner2",
    "last",
]
# Where each step's effects sit: a kill inside one beat of `par` runs both of its beats again.
UNIT = {"par.left": "par", "par.right": "par"}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _run(db: Path, log: Path, run_id: str, hang: str | None = None) -> subprocess.Popen[str]:
    args = [sys.executable, str(WORKER), str(db), str(log), run_id]
    if hang is not None:
        args.append(hang)
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )


def _finish(process: subprocess.Popen[str]) -> dict[str, object]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return json.loads(out)  # type: ignore[no-any-return] # the worker's JSON


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    where = tmp_path_factory.mktemp("reference")
    return _finish(_run(where / "runs.db", where / "log", "order-1"))


@pytest.mark.parametrize(
    "kill_in", ["one", "two", "par.left", "pick.small", "sub.inner", "sub.inner2", "last"]
)
def test_a_run_killed_inside_a_beat_resumes_in_another_process(
    tmp_path: Path, kill_in: str, uninterrupted: dict[str, object]
) -> None:
    db, log = tmp_path / "runs.db", tmp_path / "log"
    doomed = _run(db, log, "order-1", hang=kill_in)
    deadline = time.monotonic() + 60
    while f"hang:{kill_in}" not in (log.read_text() if log.exists() else ""):
        assert doomed.poll() is None, doomed.communicate()[1]
        assert time.monotonic() < deadline, "the worker never reached the beat to kill it in"
        time.sleep(0.01)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.communicate(timeout=30)
    assert doomed.returncode == -signal.SIGKILL

    with sqlite3.connect(db) as connection:
        status, owner = connection.execute("SELECT status, owner FROM cadence_runs").fetchone()
    assert status == "running"  # as the dead process left it
    assert f":{doomed.pid}:" in owner

    assert _finish(_run(db, log, "order-1")) == uninterrupted

    effects = [line for line in log.read_text().splitlines() if not line.startswith("hang:")]
    in_flight = UNIT.get(kill_in, kill_in)
    for step in STEPS:
        if UNIT.get(step, step) == in_flight:
            assert 1 <= effects.count(step) <= 2, (step, effects)  # the step in flight: again
        else:
            assert effects.count(step) == 1, (step, effects)  # completed steps: exactly once
    assert effects.count(kill_in) == 2
    assert effects.count("pick.big") == 0
    with sqlite3.connect(db) as connection:
        row = connection.execute("SELECT status, attempts, position FROM cadence_runs").fetchone()
    assert row == ("completed", 2, 7)


@pytest.mark.parametrize("seed", range(12))
def test_a_run_killed_at_a_random_moment_resumes_exactly(
    tmp_path: Path, seed: int, uninterrupted: dict[str, object]
) -> None:
    db, log = tmp_path / "runs.db", tmp_path / "log"
    doomed = _run(db, log, "order-1", hang="slow:0.01")
    deadline = time.monotonic() + 60
    while not (log.exists() and log.read_text()):  # started: the first beat has run
        assert doomed.poll() is None, doomed.communicate()[1]
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.002)
    time.sleep(random.Random(seed).uniform(0.0, 0.12))  # anywhere in the run's ~0.1 s
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.communicate(timeout=30)

    assert _finish(_run(db, log, "order-1")) == uninterrupted
    effects = log.read_text().splitlines()
    twice = {UNIT.get(step, step) for step in STEPS if effects.count(step) == 2}
    for step in STEPS:
        assert 1 <= effects.count(step) <= 2, (step, effects)  # never lost, never thrice
    assert len(twice) <= 1, effects  # only the step in flight at the kill ran again
