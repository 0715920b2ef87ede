"""Real faults of the store: SQLite itself reports a full database mid-run.

`PRAGMA max_page_count` caps the database file, so a commit that would grow it fails inside
SQLite with `SQLITE_FULL` ("database or disk is full"), the very error a full disk gives: no
Python-side stand-in for the failure.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from cadence import BeatError, Cadence, Context
from cadence.durable import SQLiteStore, StoreError
from cadence.events import CheckpointFailed

pytestmark = pytest.mark.anyio

STEPS = 6


@dataclass
class Big(Context):
    blobs: list[str] = field(default_factory=list[str])


class CappedStore(SQLiteStore):
    """A store whose database file may not grow past `max_pages` pages (0: no cap)."""

    max_pages = 0

    def _connect(self) -> sqlite3.Connection:
        connection = super()._connect()
        if self.max_pages:
            connection.execute(f"PRAGMA max_page_count = {self.max_pages}")
        return connection


def flow(ran: list[str]) -> Cadence[Big]:
    def grow(name: str) -> Callable[[Big], Awaitable[None]]:
        async def beat(ctx: Big) -> None:
            ran.append(name)
            ctx.blobs.append(name * 20_000)  # about five pages a step

        beat.__name__ = name
        return beat

    cadence = Cadence("big", context_type=Big)
    for i in range(STEPS):
        cadence = cadence.then(f"s{i}", grow(f"s{i}"))
    return cadence


async def test_a_full_database_fails_the_run_whole_and_it_resumes_later(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    warm = SQLiteStore(path, synchronous="NORMAL")
    await flow([]).run(Big(), run_id="warm", store=warm)  # the schema, and a finished run
    await warm.aclose()
    pages = sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0]

    ran: list[str] = []
    capped = CappedStore(path, synchronous="NORMAL")
    capped.max_pages = pages + 12  # room for a step or two, not for six
    with pytest.raises(StoreError, match=r"run 'order': .*database or disk is full"):
        await flow(ran).run(Big(), run_id="order", store=capped)
    record = await capped.get("order")
    assert record is not None
    assert record.status == "pending"  # handed back whole, resumable at once
    done = record.position
    assert 0 < done < STEPS
    assert record.step == f"s{done}"
    assert ran == [f"s{i}" for i in range(done + 1)]  # the step in flight ran once
    await capped.aclose()

    # The disk has room again: the run goes on from its last whole commit.
    ran.clear()
    store = SQLiteStore(path, synchronous="NORMAL")
    result = await flow(ran).run(Big(), run_id="order", store=store)
    assert result.blobs == [f"s{i}" * 20_000 for i in range(STEPS)]
    assert ran == [f"s{i}" for i in range(done, STEPS)]  # completed steps are not run again
    await store.aclose()


@pytest.mark.parametrize("beat_fails", [False, True])
async def test_a_hand_back_that_failed_is_made_at_the_stores_next_call(
    tmp_path: Path, beat_fails: bool
) -> None:
    """The checkpoint fails, or (`beat_fails`) the beat and then the record of its failure."""
    path = tmp_path / "runs.db"
    store = SQLiteStore(path, synchronous="NORMAL", busy_timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)  # another process's writer, say

    async def lock_out(ctx: Big) -> None:
        other.execute("BEGIN IMMEDIATE")  # holds the write lock past the store's busy_timeout
        if beat_fails:
            raise ValueError("card declined")

    async def after(ctx: Big) -> None:
        ctx.blobs.append("after")

    flow = Cadence("locked", Big()).then("a", lock_out).then("b", after)
    with pytest.raises(BeatError if beat_fails else StoreError) as raised:
        await flow.run(Big(), run_id="r", store=store)
    notes = " ".join(getattr(raised.value, "__notes__", []))
    assert "locked" in (notes if beat_fails else str(raised.value))
    row = other.execute("SELECT status FROM cadence_runs WHERE run_id = 'r'").fetchone()
    assert row == ("running",)  # the hand-back could not be written either
    other.execute("ROLLBACK")  # the store can write again
    await Cadence("plain", Big()).then("x", after).run(Big(), run_id="another", store=store)
    row = other.execute("SELECT status, owner FROM cadence_runs WHERE run_id = 'r'").fetchone()
    assert row == ("pending", None)  # handed back at the store's next claim: resumable by all
    await store.aclose()
    other.close()


async def test_a_finish_that_fails_hands_the_run_back(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path, synchronous="NORMAL", busy_timeout=0.2)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    async def first(ctx: Big) -> None:
        ctx.blobs.append("first")

    locks = [blocker]

    async def last(ctx: Big) -> None:  # another writer holds the lock through the finish
        ctx.blobs.append("last")
        if locks:
            locks.pop().execute("BEGIN IMMEDIATE")

    events: list[object] = []
    fin = Cadence("fin", context_type=Big).then("first", first).then("last", last)
    with pytest.raises(StoreError, match=r"run 'fin': .*database is locked"):
        await fin.with_listener(events.append).run(Big(), run_id="fin", store=store)
    failed = [e for e in events if isinstance(e, CheckpointFailed)]
    assert [(e.position, e.step) for e in failed] == [(1, "last")]  # its last commit
    blocker.execute("ROLLBACK")
    blocker.close()
    await store.aclose()  # the hand-back, which failed beside the finish, is made here
    row = (
        sqlite3.connect(path)
        .execute("SELECT status, owner, position FROM cadence_runs WHERE run_id = 'fin'")
        .fetchone()
    )
    assert row == ("pending", None, 1)  # resumable at its last step, by anyone, at once
    again = SQLiteStore(path, synchronous="NORMAL")
    assert (await fin.run(Big(), run_id="fin", store=again)).blobs == ["first", "last"]
    await again.aclose()


@pytest.mark.parametrize("offload", [True, None])
async def test_a_caller_cancelled_during_its_claim_leaves_the_run_to_the_next(
    tmp_path: Path, offload: bool | None
) -> None:
    store = SQLiteStore(tmp_path / "runs.db", synchronous="NORMAL", offload=offload)
    ran: list[str] = []
    with anyio.move_on_after(0):  # cancelled while its first call (the claim) runs
        await flow(ran).run(Big(), run_id="c", store=store)
    with anyio.fail_after(10):  # not waiting for an owner that is gone
        result = await flow(ran).run(Big(), run_id="c", store=store)
    assert len(result.blobs) == STEPS
    record = await store.get("c")
    assert record is not None
    assert record.status == "completed"
    await store.aclose()


async def test_a_caller_cancelled_in_its_last_step_leaves_no_run_running(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")  # FULL: the finish goes to the writer thread
    with anyio.CancelScope() as scope:

        async def last(ctx: Big) -> None:
            ctx.blobs.append("last")
            scope.cancel()

        await (
            Cadence("end", context_type=Big)
            .then("last", last)
            .run(Big(), run_id="end", store=store)
        )
    record = await store.get("end")
    assert record is not None
    assert (record.status, record.owner) in (("completed", None), ("pending", None))
    await store.aclose()


_HOLDER = """
import sys, time, anyio
from dataclasses import dataclass
from cadence import Cadence, Context
from cadence.durable import SQLiteStore

@dataclass
class Held(Context):
    n: int = 0

async def hold(ctx: Held) -> None:
    print("holding", flush=True)
    time.sleep(60)

flow = Cadence("held", Held()).then("hold", hold)
anyio.run(lambda: flow.run(run_id="held", store=SQLiteStore(sys.argv[1], synchronous="NORMAL")))
"""


@dataclass
class Held(Context):
    n: int = 0


async def test_a_run_whose_owner_was_killed_but_not_reaped_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    holder = subprocess.Popen(  # noqa: ASYNC220 # started, killed and reaped by hand
        [sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        holder.kill()  # a zombie until reaped below: waited for without reaping it
        flags = os.WEXITED | os.WNOWAIT
        await anyio.to_thread.run_sync(os.waitid, os.P_PID, holder.pid, flags)

        async def bump(ctx: Held) -> None:
            ctx.n += 1

        store = SQLiteStore(path, synchronous="NORMAL")
        with anyio.fail_after(5):  # taken over at once, not waited for
            result = (
                await Cadence("held", Held()).then("hold", bump).run(run_id="held", store=store)
            )
        assert result.n == 1
        await store.aclose()
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


@pytest.mark.parametrize("kind", ["sync", "child"])
@pytest.mark.parametrize("stop", [True, False])
async def test_a_commit_failing_inside_a_sync_or_child_step_stops_the_run_as_itself(
    tmp_path: Path, kind: str, stop: bool
) -> None:
    """Not a beat's failure: no error handler recovers it, nor is it wrapped as a BeatError."""
    path = tmp_path / "runs.db"
    store = SQLiteStore(path, synchronous="NORMAL", busy_timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    locks = [other]

    async def lock_out(ctx: Big) -> None:  # another writer takes the lock before the commit
        ctx.blobs.append("locked")
        if locks:
            locks.pop().execute("BEGIN IMMEDIATE")

    async def after(ctx: Big) -> None:
        ctx.blobs.append("after")

    async def idle(ctx: Big) -> None:
        await anyio.sleep(0.5)  # still running when its sibling's commit fails

    inner = Cadence("inner", Big()).then("lock_out", lock_out).then("after", after)
    flow = Cadence("outer", Big())
    if kind == "sync":
        flow = flow.sync("par", [lock_out, idle])
    else:
        flow = flow.child("sub", inner, context=lambda ctx: Big(), merge=lambda ctx, sub: ctx)
    handled: list[Exception] = []
    flow = flow.then("end", after).on_error(lambda ctx, exc: handled.append(exc), stop=stop)
    with pytest.raises(StoreError, match=r"run 'r': .*database is locked"):
        await flow.run(run_id="r", store=store)
    assert handled == []
    other.execute("ROLLBACK")
    other.close()
    result = await flow.run(run_id="r", store=store)  # resumable, as any store failure
    assert result == await flow.run()
    await store.aclose()


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("a-folder", "the path is a directory"),
        ("missing/runs.db", "its directory '.*missing' does not exist"),
    ],
)
async def test_a_database_that_cannot_be_opened_says_why(
    tmp_path: Path, where: str, why: str
) -> None:
    (tmp_path / "a-folder").mkdir()
    store = SQLiteStore(tmp_path / where)
    with pytest.raises(StoreError, match=rf"unable to open database file \({why}\)"):
        await flow([]).run(Big(), run_id="o-1", store=store)
    await store.aclose()
