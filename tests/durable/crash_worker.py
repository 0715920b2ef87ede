"""Run one durable cadence in this process, for the SIGKILL tests (test_durable_crash.py).

    python crash_worker.py DB LOG RUN_ID [HANG_AT | slow:SECONDS]
    python crash_worker.py zygote DB FOLDER SEED TRIALS


Every beat appends its name to LOG (an `O_APPEND` write, which survives a SIGKILL), then the
beat named HANG_AT (if any) writes `hang:NAME` and blocks until the process is killed. The final
context is printed to stdout as JSON. With `slow:SECONDS`, every beat sleeps that long after its
effect instead (for kills at random times).

`zygote` imports everything once and then, for each of TRIALS runs (run ids `trial-N` in one
database), forks a fresh process that runs the cadence, lets it reach a point chosen by a
seeded RNG (a beat's effect, the retry's failing call, the start), SIGKILLs it a random few
milliseconds later (in a beat, a commit, a retry's wait, between steps), records what it left
(the effects, the committed position), and forks another fresh process that resumes the run.
Forking from one warm process makes a crash and a resume cost milliseconds, not an interpreter
start, so a hundred real crashes fit in seconds. The report is JSON on stdout.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import select
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass, field

import anyio

from cadence import AtomicList, Cadence, Context
from cadence.durable import SQLiteStore, idempotency_key
from cadence.resilience import retry


@dataclass
class Job(Context):
    n: int = 0
    trail: list[str] = field(default_factory=list[str])
    keys: AtomicList[str] = field(default_factory=AtomicList[str])


@dataclass
class Sub(Context):
    m: int = 0
    keys: list[str] = field(default_factory=list[str])


_ARGS = sys.argv if __name__ == "__main__" and sys.argv[1:2] != ["zygote"] else []
LOG = _ARGS[2] if len(_ARGS) > 2 else os.devnull
MODE = _ARGS[4] if len(_ARGS) > 4 else None
SLOW = float(MODE.removeprefix("slow:")) if MODE and MODE.startswith("slow:") else 0.0
HANG_AT = None if SLOW else MODE


class Trial:
    """A forked trial's log, and the point to tell the zygote of through its pipe."""

    log = LOG
    anchor: str | None = None
    pipe = -1


def reached(name: str) -> None:
    """Tell the zygote (if it waits for this point) that the run got here."""
    if Trial.anchor == name:
        os.write(Trial.pipe, b"!")


def effect(name: str) -> None:
    """Record a side effect, then hang if this is the beat to be killed in."""
    reached(name)
    fd = os.open(Trial.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name}\n".encode())
        if name == HANG_AT:
            os.write(fd, f"hang:{name}\n".encode())
    finally:
        os.close(fd)
    if name == HANG_AT:
        time.sleep(600)  # killed here, inside the beat, after the previous checkpoint
    if SLOW:
        time.sleep(SLOW)  # a beat that takes a while: the random kills land in and between beats


_flaky_calls = [0]


@retry(max_attempts=3, delay=0.002)
async def flaky(ctx: Job) -> None:
    _flaky_calls[0] += 1
    if _flaky_calls[0] == 1:
        reached("flaky.retry")  # killed while the retry waits: a retry in progress
        raise ConnectionError("the first call of each process fails")  # retried at once
    effect("flaky")
    ctx.trail.append("flaky")


async def one(ctx: Job) -> None:
    effect("one")
    ctx.n += 1
    ctx.trail.append("one")
    ctx.keys.append(idempotency_key())


def two(ctx: Job) -> None:  # a sync beat: it runs in a worker thread
    effect("two")
    ctx.n *= 10
    ctx.trail.append("two")


async def left(ctx: Job) -> None:
    effect("par.left")
    ctx.keys.append(idempotency_key())


async def right(ctx: Job) -> None:
    effect("par.right")
    ctx.trail.append("right")


async def small(ctx: Job) -> None:
    effect("pick.small")
    ctx.n += 5


async def big(ctx: Job) -> None:
    effect("pick.big")
    ctx.n += 500


async def inner(ctx: Sub) -> None:
    effect("sub.inner")
    ctx.m = 7


async def inner2(ctx: Sub) -> None:
    effect("sub.inner2")
    ctx.m *= 3
    ctx.keys.append(idempotency_key())


def merge(parent: Job, child: Sub) -> None:
    parent.n += child.m
    parent.trail.append("sub")
    parent.trail.extend(child.keys)


async def last(ctx: Job) -> None:
    effect("last")
    ctx.trail.append("last")
    ctx.keys.append(idempotency_key())


FLOW = (
    Cadence("crashy", Job())
    .then("one", one)
    .then("two", two)
    .then("flaky", flaky)
    .sync("par", [left, right])
    .split("pick", lambda ctx: ctx.n < 100, small, big)
    .child("sub", Cadence("sub", Sub()).then("inner", inner).then("inner2", inner2), merge)
    .then("last", last)
)


async def main(db: str, run_id: str) -> None:
    result = await FLOW.run(Job(), run_id=run_id, store=SQLiteStore(db, synchronous="NORMAL"))
    print(json.dumps(dataclasses.asdict(result)))  # the worker's output


ANCHORS = (
    "start",
    "one",
    "two",
    "flaky.retry",
    "flaky",
    "par.left",
    "par.right",
    "pick.small",
    "sub.inner",
    "sub.inner2",
    "last",
)


def _fork(db: str, log: str, run_id: str, out: str, anchor: str | None) -> tuple[int, int]:
    """Fork a fresh process running `run_id`; return its pid and the read end of its pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, write the result, leave without the parent's cleanup
        code = 1
        try:
            os.close(read)
            Trial.log, Trial.anchor, Trial.pipe = log, anchor, write
            _flaky_calls[0] = 0
            reached("start")
            anyio.run(main_to, db, run_id, out)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    return pid, read


async def main_to(db: str, run_id: str, out: str) -> None:
    """Run the cadence as `run_id` and write its result to `out`."""
    result = await FLOW.run(Job(), run_id=run_id, store=SQLiteStore(db, synchronous="NORMAL"))
    await anyio.Path(out).write_text(json.dumps(dataclasses.asdict(result)))


def _wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _read(path: str) -> list[str]:
    try:
        with open(path) as file:  # noqa: PTH123 # as above
            return file.read().splitlines()
    except FileNotFoundError:
        return []


def zygote(db: str, folder: str, seed: int, trials: int) -> None:
    """Crash and resume `trials` runs; print what each crash left and how each resume ended."""
    rng = random.Random(seed)
    reference_out = os.path.join(folder, "reference.json")  # noqa: PTH118 # plain paths
    pid, read = _fork(db, os.path.join(folder, "reference.log"), "reference", reference_out, None)  # noqa: PTH118 # as above
    os.close(read)
    assert _wait(pid) == 0  # a test helper
    with open(reference_out) as file:  # noqa: PTH123 # as above
        reference = json.load(file)
    report: list[dict[str, object]] = []
    kills = 0
    for trial in range(trials * 2):  # until `trials` runs were killed (some finish first)
        if kills == trials:
            break
        run_id = f"trial-{trial}"
        log = os.path.join(folder, f"{run_id}.log")  # noqa: PTH118 # as above
        out = os.path.join(folder, f"{run_id}.json")  # noqa: PTH118 # as above
        anchor = rng.choice(ANCHORS)
        delay = 0.0 if rng.random() < 0.4 else rng.uniform(0.0, 0.002)  # at once, or soon
        pid, read = _fork(db, log, run_id, out, anchor)
        ready, _, _ = select.select([read], [], [], 30.0)
        if ready and os.read(read, 1):
            time.sleep(delay)
        os.kill(pid, signal.SIGKILL)  # wherever it is now; a no-op if it finished
        os.close(read)
        code = _wait(pid)
        kills += code == -signal.SIGKILL
        before = _read(log)
        connection = sqlite3.connect(db)
        try:
            row = connection.execute(
                "SELECT status, position, inner FROM cadence_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        finally:
            connection.close()
        inner = None if row is None or row[2] is None else json.loads(row[2])
        pid, read = _fork(db, log, run_id, out, None)
        os.close(read)
        resumed = _wait(pid)
        with open(out) as file:  # noqa: PTH123 # as above
            result = json.load(file) if resumed == 0 else None
        report.append(
            {
                "run_id": run_id,
                "anchor": anchor,
                "delay": delay,
                "killed": code == -signal.SIGKILL,
                "before": before,
                "stored": None if row is None else [row[0], row[1]],
                "inner": None if not inner else [frame[0] for frame in inner],
                "branches": sorted(inner[-1][1]) if inner and inner[-1][0] == -1 else [],
                "after": _read(log),
                "resumed": resumed,
                "result": result,
            }
        )
    print(json.dumps({"reference": reference, "trials": report}))  # the zygote's report


if __name__ == "__main__" and sys.argv[1:2] == ["zygote"]:
    zygote(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
elif __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[3])
