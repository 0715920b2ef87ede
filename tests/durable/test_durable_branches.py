"""Per-branch checkpoints: each finished branch of a `sync` step is committed at once."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from cadence import (
    AtomicDict,
    AtomicList,
    BeatError,
    Cadence,
    Context,
    ImmutableContext,
    Shared,
    last_write_wins,
)
from cadence.durable import RunDecodeError, SQLiteStore, idempotency_key

pytestmark = pytest.mark.anyio


class Client:
    """A resource, never stored."""


@dataclass
class Order(Context):
    total: int = 0
    left: str = ""
    right: list[str] = field(default_factory=list[str])
    keys: AtomicList[str] = field(default_factory=AtomicList[str])
    client: Shared[Client | None] = None


class Recorder(SQLiteStore):
    """A store that remembers the inner progress of every checkpoint."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, synchronous="NORMAL")
        self.inner: list[bytes | None] = []

    async def checkpoint(  # the store's own signature
        self,
        run_id: str,
        owner: str,
        *,
        position: int,
        step: str | None,
        context: bytes,
        inner: bytes | None = None,
        plan: tuple[str, ...] | None = None,
        fingerprint: str | None = None,
    ) -> None:
        self.inner.append(inner)
        await super().checkpoint(
            run_id,
            owner,
            position=position,
            step=step,
            context=context,
            inner=inner,
            plan=plan,
            fingerprint=fingerprint,
        )


class Beats:
    """A `sync` step's beats that count their calls; `c` fails once, after a and b committed."""

    def __init__(self, store: Recorder) -> None:
        self.store = store
        self.calls: list[str] = []
        self.fail = True

    async def a(self, ctx: Order) -> None:
        self.calls.append("a")
        ctx.left = "from a"
        ctx.keys.append(idempotency_key())

    def b(self, ctx: Order) -> None:  # a sync beat, in a worker thread
        self.calls.append("b")
        ctx.right.append("from b")

    async def c(self, ctx: Order) -> None:
        self.calls.append("c")
        while self.fail and len([i for i in self.store.inner if i]) < 2:
            await anyio.lowlevel.checkpoint()  # until a's and b's commits are in
        if self.fail:
            self.fail = False
            raise ConnectionError("c lost its connection")
        ctx.total += 5

    def flow(self) -> Cadence[Order]:
        async def first(ctx: Order) -> None:
            ctx.total = 1

        async def last(ctx: Order) -> None:
            ctx.total *= 10

        return (
            Cadence("branches", context_type=Order)
            .then("first", first)
            .sync("par", [self.a, self.b, self.c])
            .then("last", last)
        )


async def test_a_resumed_sync_step_runs_only_the_unfinished_branches(tmp_path: Path) -> None:
    store = Recorder(tmp_path / "runs.db")
    beats = Beats(store)
    client = Client()
    with pytest.raises(BeatError, match="c lost its connection"):
        await beats.flow().run(Order(client=client), run_id="order-1", store=store)
    assert sorted(beats.calls) == ["a", "b", "c"]
    record = await store.get("order-1")
    assert record is not None
    assert (record.status, record.position, record.step) == ("failed", 1, "par")
    assert record.inner is not None
    frames = json.loads(record.inner)
    assert [frame[0] for frame in frames] == [-1]  # one frame: the sync step's branches
    assert sorted(frames[0][1]) == ["a", "b"]  # the finished branches, by beat name
    assert frames[0][1]["a"]["left"] == "from a"
    assert frames[0][1]["b"]["right"] == ["from b"]

    beats.calls.clear()
    resumed = await beats.flow().run(Order(client=client), run_id="order-1", store=store)
    assert beats.calls == ["c"]  # a and b finished before: not run again
    assert resumed.client is client  # shared fields come from the resuming caller
    assert (resumed.total, resumed.left, resumed.right) == (60, "from a", ["from b"])
    assert list(resumed.keys) == ["order-1:par.a"]

    # exactly what an uninterrupted run ends with
    plain = Beats(store)
    plain.fail = False
    reference = await plain.flow().run(Order(client=client), run_id="order-2", store=store)
    assert (reference.total, reference.left, reference.right) == (60, "from a", ["from b"])
    assert list(reference.keys) == ["order-2:par.a"]
    record = await store.get("order-1")
    assert record is not None
    assert (record.status, record.position, record.inner) == ("completed", 3, None)
    await store.aclose()


async def test_the_step_after_a_sync_drops_its_branch_frame(tmp_path: Path) -> None:
    store = Recorder(tmp_path / "runs.db")
    beats = Beats(store)
    beats.fail = False
    await beats.flow().run(Order(), run_id="order-3", store=store)
    # first's commit, then one per branch as it finishes (each holding all so far), then
    # par's own commit, which drops the frame
    assert store.inner[0] is None
    done = [sorted(json.loads(i)[0][1]) for i in store.inner[1:4] if i is not None]
    assert [len(d) for d in done] == [1, 2, 3]
    assert done[-1] == ["a", "b", "c"]
    assert store.inner[4] is None
    assert len(store.inner) == 5
    await store.aclose()


@dataclass(frozen=True)
class Pair(ImmutableContext):
    x: int = 0
    y: int = 0


async def test_an_immutable_contexts_finished_branch_is_restored(tmp_path: Path) -> None:
    store = Recorder(tmp_path / "runs.db")
    calls: list[str] = []
    failing = ["y"]

    async def x(ctx: Pair) -> Pair:
        calls.append("x")
        return ctx.with_field("x", 7)

    async def y(ctx: Pair) -> Pair:
        calls.append("y")
        while failing and not any(store.inner):
            await anyio.lowlevel.checkpoint()  # until x's commit is in
        if failing:
            failing.clear()
            raise ConnectionError("y failed")
        return ctx.with_field("y", 9)

    flow = Cadence("pair", Pair()).sync("both", [x, y])
    with pytest.raises(BeatError, match="y failed"):
        await flow.run(run_id="p", store=store)
    calls.clear()
    assert await flow.run(run_id="p", store=store) == Pair(x=7, y=9)
    assert calls == ["y"]  # x finished before: restored, not run
    await store.aclose()


@dataclass
class Tally(Context):
    log: AtomicList[str] = field(default_factory=AtomicList[str])
    seen: AtomicDict[str, int] = field(default_factory=AtomicDict[str, int])
    n: int = 0


async def test_atomic_fields_of_a_resumed_sync_hold_each_finished_branchs_changes_once(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "runs.db", synchronous="NORMAL")
    failing = {"c"}
    calls: list[str] = []
    finished: list[str] = []
    both = anyio.Event()

    def branch(name: str, after: int) -> Callable[[Tally], Awaitable[None]]:
        async def run(ctx: Tally) -> None:
            calls.append(name)
            ctx.log.append(f"{name}-early")
            for _ in range(after):  # a, then b, finish (and commit) first
                await anyio.lowlevel.checkpoint()
            if name == "c":
                await both.wait()
            if name in failing:
                raise RuntimeError(name)
            ctx.log.append(name)
            ctx.seen[name] = len(name)
            finished.append(name)
            if len(finished) == 2:
                both.set()

        run.__name__ = name
        return run

    flow = Cadence("tally", Tally()).sync("par", [branch("a", 0), branch("b", 20), branch("c", 0)])
    with pytest.raises(BeatError):
        await flow.run(run_id="t1", store=store)
    failing.clear()
    calls.clear()
    result = await flow.run(run_id="t1", store=store)
    assert calls == ["c"]
    assert sorted(result.log) == ["a", "a-early", "b", "b-early", "c", "c-early"]
    assert dict(result.seen) == {"a": 1, "b": 1, "c": 1}
    again = await flow.run(run_id="t1", store=store)  # finished: the stored result
    assert sorted(again.log) == sorted(result.log)
    await store.aclose()


async def test_a_durable_syncs_atomic_fields_end_as_in_a_plain_run_across_a_resume(
    tmp_path: Path,
) -> None:
    failing = {"c"}
    calls: list[str] = []
    committed = anyio.Event()

    def branch(name: str) -> Callable[[Tally], Awaitable[None]]:
        async def run(ctx: Tally) -> None:
            calls.append(name)
            if name == "a":  # appends and sets: replayable, committed on its own
                ctx.log.append("a")
                ctx.seen["a"] = 1
                return
            if name == "d":  # replaces the list: runs again, as one that changes it so
                ctx.log = AtomicList(["fresh"])
                return
            ctx.log.append(name)
            ctx.seen.compute("count", lambda n: (n or 0) + 1)  # adds to a sibling's count
            if name in failing:
                await committed.wait()
                raise RuntimeError(name)

        run.__name__ = name
        return run

    def flow() -> Cadence[Tally]:
        beats = [branch(n) for n in "abcd"]
        return Cadence("tally", Tally()).sync("par", beats, merge=last_write_wins)

    class Told(SQLiteStore):
        async def checkpoint(self, run_id: str, owner: str, **fields: Any) -> None:
            await super().checkpoint(run_id, owner, **fields)
            committed.set()

    store = Told(tmp_path / "runs.db", synchronous="NORMAL")
    with pytest.raises(BeatError):
        await flow().run(run_id="t1", store=store)
    failing.clear()
    calls.clear()
    result = await flow().run(run_id="t1", store=store)
    assert sorted(calls) == ["b", "c", "d"]  # a committed; b, c computed, d replaced the list
    plain = await flow().run()
    assert (list(result.log), dict(result.seen)) == (list(plain.log), dict(plain.seen))
    assert dict(result.seen) == {"a": 1, "count": 2}  # both computes counted, once each
    await store.aclose()


async def test_appends_from_a_branchs_own_threads_are_kept_across_a_resume(
    tmp_path: Path,
) -> None:
    failing = {"c"}
    calls: list[str] = []
    a_done = anyio.Event()

    async def a(ctx: Tally) -> None:  # its appends come from threads of its own pool
        calls.append("a")
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(ctx.log.append, ["a1", "a2"]))
        a_done.set()

    async def c(ctx: Tally) -> None:
        calls.append("c")
        ctx.log.append("c")
        await a_done.wait()
        if "c" in failing:
            raise RuntimeError("c")

    def flow() -> Cadence[Tally]:
        return Cadence("threads", Tally()).sync("par", [a, c])

    store = SQLiteStore(tmp_path / "runs.db", synchronous="NORMAL")
    with pytest.raises(BeatError):
        await flow().run(run_id="t1", store=store)
    failing.clear()
    calls.clear()
    result = await flow().run(run_id="t1", store=store)
    assert sorted(calls) == ["a", "c"]  # whose appends they were is not known: both again
    plain = await flow().run()
    assert sorted(result.log) == sorted(plain.log) == ["a1", "a2", "c"]
    await store.aclose()


async def test_a_branch_that_deletes_an_atomic_field_runs_again_on_resume(
    tmp_path: Path,
) -> None:
    failing = {"c"}
    calls: list[str] = []
    a_done = anyio.Event()

    async def a(ctx: Tally) -> None:
        calls.append("a")
        del ctx.seen
        a_done.set()

    async def c(ctx: Tally) -> None:
        calls.append("c")
        await a_done.wait()
        if "c" in failing:
            raise RuntimeError("c")
        ctx.n = 3

    store = SQLiteStore(tmp_path / "runs.db", synchronous="NORMAL")
    flow = Cadence("deletes", Tally()).sync("par", [a, c])
    with pytest.raises(BeatError):
        await flow.run(run_id="t1", store=store)
    failing.clear()
    calls.clear()
    result = await flow.run(run_id="t1", store=store)
    assert sorted(calls) == ["a", "c"]
    assert not hasattr(result, "seen")
    assert result.n == 3
    await store.aclose()


@pytest.mark.parametrize("kind", ["sync", "child"])
async def test_stored_progress_inside_a_step_that_does_not_decode_stops_the_run(
    tmp_path: Path, kind: str
) -> None:
    @dataclass
    class Part(Context):
        total: int = 0

    failing = ["once"]
    handled: list[BaseException] = []

    async def odd(ctx: Any) -> None:  # Any: an Order's or a Part's
        ctx.total = 7  # stored, then made a bool in the row: refused when read back

    async def fails(ctx: Any) -> None:  # Any: as above
        if failing:
            failing.pop()
            raise RuntimeError("fails once")

    async def handle(ctx: Order, error: Exception) -> None:
        handled.append(error)

    def build(*, handled_by: bool) -> Cadence[Order]:
        flow = Cadence("inner", Order()).then("first", lambda ctx: None)
        if kind == "sync":
            flow = flow.sync("both", [odd, fails])
        else:
            part = Cadence("part", Part()).then("odd", odd).then("fails", fails)
            flow = flow.child("both", part, lambda order, done: None)
        flow = flow.then("last", lambda ctx: None)
        return flow.on_error(handle, stop=False) if handled_by else flow

    store = SQLiteStore(tmp_path / "runs.db", synchronous="NORMAL")
    with pytest.raises(BeatError):
        await build(handled_by=False).run(Order(), run_id="odd-1", store=store)
    with sqlite3.connect(store.path) as connection:  # a bool in an int field
        changed = connection.execute(
            "UPDATE cadence_runs SET inner = "
            "CAST(replace(CAST(inner AS TEXT), '\"total\":7', '\"total\":true') AS BLOB)"
        ).rowcount
    assert changed == 1
    with pytest.raises(RunDecodeError, match="run 'odd-1'"):
        await build(handled_by=True).run(Order(), run_id="odd-1", store=store)
    assert handled == []  # stopped as itself: not a beat's failure to pass over
    record = await store.get("odd-1")
    assert record is not None
    # Found once the run had begun (told as claimed): the attempt counts, and the run is
    # handed back where it stood, resumable once the class or the row is mended.
    assert (record.status, record.attempts, record.step) == ("pending", 2, "both")
    await store.aclose()


async def test_a_run_decode_error_a_beat_raises_is_that_beats_failure(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db", synchronous="NORMAL")
    handled: list[BaseException] = []

    async def reads_another_run(ctx: Order) -> None:
        raise RunDecodeError("other", "run 'other': its row is corrupted")

    async def handle(ctx: Order, error: Exception) -> None:
        handled.append(error)

    part = Cadence("part", Order()).then("reads", reads_another_run)
    flow = (
        Cadence("reader", Order())
        .then("first", reads_another_run)
        .child("kid", part, lambda order, done: None)
        .sync("both", [reads_another_run, lambda ctx: None])
        .then("last", lambda ctx: None)
        .on_error(handle, stop=False)
    )
    await flow.run(Order(), run_id="reader-1", store=store)  # passed over, each of them
    assert [type(e).__name__ for e in handled] == ["BeatError"] * 3
    strict = Cadence("reader", Order()).then("first", reads_another_run)
    with pytest.raises(BeatError, match="run 'other'"):
        await strict.run(Order(), run_id="reader-2", store=store)
    record = await store.get("reader-2")
    assert record is not None
    assert (record.status, record.attempts) == ("failed", 1)  # this run's failure, counted
    await store.aclose()
