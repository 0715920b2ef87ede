"""Run one durable cadence in this process, for the SIGKILL tests (test_durable_crash.py).

    python crash_worker.py DB LOG RUN_ID [HANG_AT | slow:SECONDS]

Every beat appends its name to LOG (an `O_APPEND` write, which survives a SIGKILL), then the
beat named HANG_AT (if any) writes `hang:NAME` and blocks until the process is killed. The final
context is printed to stdout as JSON. With `slow:SECONDS`, every beat sleeps that long after its
effect instead (for kills at random times).
"""

from __future__ import annotations

import dataclasses
import json
import os
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
    trail: list[str] = field(default_factory=list)
    keys: AtomicList[str] = field(default_factory=AtomicList)


@dataclass
class Sub(Context):
    m: int = 0
    keys: list[str] = field(default_factory=list)


_ARGS = sys.argv if __name__ == "__main__" else []  # imported, it writes nowhere
LOG = _ARGS[2] if len(_ARGS) > 2 else os.devnull
MODE = _ARGS[4] if len(_ARGS) > 4 else None
SLOW = float(MODE.removeprefix("slow:")) if MODE and MODE.startswith("slow:") else 0.0
HANG_AT = None if SLOW else MODE


def effect(name: str) -> None:
    """Record a side effect, then hang if this is the beat to be killed in."""
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
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


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[3])
