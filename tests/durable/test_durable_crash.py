"""Real crashes: a worker process is SIGKILLed inside a beat and another process resumes its run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
# Where each step's effects sit: the beats of `par` run at once, and each commits as it ends,
# so a kill inside `par` runs again those of its beats that had not finished.
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


def _inner(db: Path) -> str | None:
    """Return the stored inner progress of the run, if any."""
    try:
        with sqlite3.connect(db) as connection:
            row = connection.execute("SELECT inner FROM cadence_runs").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None or row[0] is None else bytes(row[0]).decode()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    where = tmp_path_factory.mktemp("reference")
    return _finish(_run(where / "runs.db", where / "log", "order-1"))


@pytest.mark.parametrize(
    "kill_in",
    ["one", "two", "par.left", "par.right", "pick.small", "sub.inner", "sub.inner2", "last"],
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
    while kill_in == "par.right" and not _inner(db):  # par.left's own commit has landed
        assert time.monotonic() < deadline, "the finished branch was never committed"
        time.sleep(0.01)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.communicate(timeout=30)
    assert doomed.returncode == -signal.SIGKILL
    if kill_in == "par.right":  # killed in one branch with its sibling committed
        frames = json.loads(_inner(db) or "[]")
        assert [(position, sorted(done)) for position, done in frames] == [(-1, ["left"])]

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
    if kill_in == "par.right":
        assert effects.count("par.left") == 1  # the finished branch did not run again
    assert effects.count("pick.big") == 0
    with sqlite3.connect(db) as connection:
        row = connection.execute("SELECT status, attempts, position FROM cadence_runs").fetchone()
    assert row == ("completed", 2, 7)


# Where each effect sits in the run: (top-level step,) or (child step, step inside the child).
WHERE = {
    "one": (0,),
    "two": (1,),
    "flaky": (2,),
    "par.left": (3,),
    "par.right": (3,),
    "pick.small": (4,),
    "sub.inner": (5, 0),
    "sub.inner2": (5, 1),
    "last": (6,),
}
KILLS = 100


def _committed(trial: dict[str, Any]) -> tuple[int, ...]:
    """Where the run's last commit before the kill stood, comparable with `WHERE`."""
    stored = trial["stored"]
    if stored is None:
        return (-1,)  # killed before its claim committed: nothing stored
    if stored[0] == "completed":
        return (99,)
    inner = [p for p in trial["inner"] or () if p >= 0]  # a child's frame, not a sync's
    return (stored[1], *inner[:1])


def _done(step: str, where: tuple[int, ...], trial: dict[str, Any]) -> bool:
    """Whether `step` had completed and been committed when the run was killed."""
    if where < _committed(trial):
        return True
    # a finished branch of the `sync` step at the committed position: committed on its own
    stored = trial["stored"]
    return (
        step.startswith("par.")
        and stored is not None
        and stored[1] == where[0]
        and step.removeprefix("par.") in trial["branches"]
    )


def test_a_hundred_runs_killed_at_random_points_resume_exactly(tmp_path: Path) -> None:
    """SIGKILL 100 runs at seeded random points, resume each in a fresh process, check effects.

    One warm process forks each crash and each resume (see `crash_worker.zygote`): a point is
    chosen (a beat's effect, the retry's failing call, the start) and the process is killed a
    random 0-2 ms after reaching it, wherever that lands: in a beat, a commit, a retry's wait,
    between steps, inside the `sync`, the `split` or the `child`.
    """
    args = [sys.executable, str(WORKER), "zygote", str(tmp_path / "runs.db"), str(tmp_path)]
    done = subprocess.run(  # our own worker
        [*args, "20261201", str(KILLS)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    reference, trials = report["reference"], report["trials"]
    killed = [t for t in trials if t["killed"]]
    assert len(killed) == KILLS
    at_kill: set[str] = set()
    for trial in trials:
        run_id, before, after = trial["run_id"], trial["before"], trial["after"]
        assert trial["resumed"] == 0, trial
        expected = json.loads(json.dumps(reference).replace("reference:", f"{run_id}:"))
        assert trial["result"] == expected, trial  # every final context: the uninterrupted one
        committed = _committed(trial)
        in_flight: set[str] = set()
        for step, where in WHERE.items():
            if _done(step, where, trial):  # completed and committed before the kill: once
                assert before.count(step) == after.count(step) == 1, (step, trial)
            else:  # not committed: ran at most once before the kill, once more on resume
                assert before.count(step) <= 1, (step, trial)
                assert after.count(step) == before.count(step) + 1, (step, trial)
                if before.count(step):
                    in_flight.add(UNIT.get(step, step))
        assert len(in_flight) <= 1, trial  # only the step in flight at the kill ran twice
        assert "pick.big" not in after
        if trial["killed"]:
            pending = [s for s, w in WHERE.items() if not _done(s, w, trial)] or ["finished"]
            at_kill.add("start" if committed == (-1,) else UNIT.get(pending[0], pending[0]))
            if trial["anchor"] == "flaky.retry" and committed == (2,) and "flaky" not in before:
                at_kill.add("retry in progress")
    # the kills landed all over the run: before the claim, in each kind of step, in a retry's
    # wait (where exactly depends on timing, so most places are asked for, not all)
    places = {
        "start",
        "one",
        "two",
        "flaky",
        "retry in progress",
        "par",
        "pick.small",
        "sub.inner",
        "sub.inner2",
        "last",
    }
    assert len(at_kill & places) >= 7, at_kill
    assert at_kill & {"sub.inner", "sub.inner2"}, at_kill  # inside the child
    assert "par" in at_kill, at_kill  # inside the sync step
    print(f"{len(trials)} runs, {KILLS} killed; kills landed at {sorted(at_kill)}")  # shown with -s
