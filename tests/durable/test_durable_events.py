"""Durability events: claims, resumes, lost leases and failed commits reach listeners."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from durable_tally import Tally, steal, tally  # tests/, beside conftest.py

from cadence import BeatError, Cadence, CadenceHooks
from cadence.durable import (
    LeaseLostError,
    Migration,
    PlanChangedError,
    SQLiteStore,
    StoreError,
)
from cadence.events import (
    BeatCompleted,
    BeatStarted,
    CadenceEvent,
    CheckpointFailed,
    DurableEvent,
    LeaseLost,
    RunClaimed,
    RunCompleted,
    RunFailed,
    RunResumed,
    RunStarted,
)

pytestmark = pytest.mark.anyio


def flow(
    events: list[CadenceEvent], fail_at: list[str], hook: list[Callable[[], None]]
) -> Cadence[Tally]:
    """The shared three steps, telling `events`."""
    return tally(fail_at, hook).with_listener(events.append)


def replanned(events: list[CadenceEvent], *steps: str) -> Cadence[Tally]:
    """The tally cadence under another plan: `steps`, each doing nothing, telling `events`."""
    cadence = Cadence("tally", context_type=Tally)
    for name in steps:
        cadence = cadence.then(name, lambda ctx: None)
    return cadence.with_listener(events.append)


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "runs.db", synchronous="NORMAL")


async def test_a_new_run_is_claimed_and_carries_the_durable_id(store: SQLiteStore) -> None:
    events: list[CadenceEvent] = []
    await flow(events, [], []).run(Tally(), run_id="order-1", store=store)
    claimed = events[0]
    assert isinstance(claimed, RunClaimed)
    assert (claimed.run_id, claimed.cadence, claimed.attempt, claimed.new) == (
        "order-1",
        "tally",
        1,
        True,
    )
    assert (claimed.position, claimed.step) == (0, "a")
    assert claimed.owner.split(":")[0]  # host:pid:start:nonce
    assert isinstance(events[1], RunStarted)
    assert isinstance(events[-1], RunCompleted)
    # every event of the run carries the durable run's id
    assert {e.run_id for e in events} == {"order-1"}
    assert not any(isinstance(e, RunResumed) for e in events)
    await store.aclose()


async def test_a_resumed_run_is_one_run_to_its_listeners(store: SQLiteStore) -> None:
    events: list[CadenceEvent] = []
    fail_at = ["b"]
    cadence = flow(events, fail_at, [])
    with pytest.raises(BeatError):
        await cadence.run(Tally(), run_id="order-2", store=store)
    assert isinstance(events[-1], RunFailed)
    first = len(events)
    result = await cadence.run(Tally(), run_id="order-2", store=store)
    assert result.done == ["a", "b", "c"]
    again = events[first:]
    kinds = [type(e) for e in again[:3]]
    assert kinds == [RunClaimed, RunResumed, RunStarted]
    claimed, resumed = again[0], again[1]
    assert isinstance(claimed, RunClaimed)
    assert (claimed.attempt, claimed.new) == (2, False)
    assert isinstance(resumed, RunResumed)
    assert (resumed.attempt, resumed.position, resumed.step, resumed.in_child) == (2, 1, "b", False)
    assert resumed.owner == claimed.owner
    # the completed step is not reported again; both attempts carry one id
    assert [e.beat for e in again if isinstance(e, BeatStarted)] == ["b", "c"]
    assert [e.beat for e in again if isinstance(e, BeatCompleted)] == ["b", "c"]
    assert {e.run_id for e in events} == {"order-2"}
    # a finished run is returned without a claim or a run
    done = len(events)
    assert (await cadence.run(Tally(), run_id="order-2", store=store)).done == ["a", "b", "c"]
    assert events[done:] == []
    await store.aclose()


async def test_a_run_taken_over_mid_run_tells_lease_lost(
    store: SQLiteStore, tmp_path: Path
) -> None:
    events: list[CadenceEvent] = []

    with pytest.raises(LeaseLostError, match="lost the run"):
        await flow(events, [], [steal(tmp_path / "runs.db")]).run(
            Tally(), run_id="order-3", store=store
        )
    lost = [e for e in events if isinstance(e, LeaseLost)]
    assert len(lost) == 1
    # As the run stands: its last commit, before step b, which was in flight then.
    assert (lost[0].run_id, lost[0].position, lost[0].step) == ("order-3", 1, "b")
    assert isinstance(lost[0].error, LeaseLostError)
    assert not any(isinstance(e, CheckpointFailed) for e in events)
    record = await store.get("order-3")
    assert record is not None
    assert (record.position, record.owner) == (1, "elsewhere:1:1:x")  # nothing overwritten
    await store.aclose()


class HeartbeatStore(SQLiteStore):
    """SQLite with a heartbeat of its own making: `lose()` gives the runs away and tells it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, synchronous="NORMAL")
        self.watched: dict[str, Callable[[], None]] = {}

    def watch(self, run_id: str, owner: str, lost: Callable[[], None]) -> None:
        self.watched[owner] = lost

    def unwatch(self, owner: str) -> None:
        self.watched.pop(owner, None)

    def lose(self) -> None:
        steal(self.path)()
        for lost in list(self.watched.values()):
            lost()


async def test_a_lease_lost_to_a_commit_and_the_heartbeat_at_once_is_told_once(
    tmp_path: Path,
) -> None:
    events: list[CadenceEvent] = []
    store = HeartbeatStore(tmp_path / "runs.db")

    async def loses(ctx: Tally) -> None:
        store.lose()  # the heartbeat's cancel reaches the other branch; this one commits
        ctx.done.append("loses")

    async def waits(ctx: Tally) -> None:
        await anyio.sleep(5)

    flow = (
        Cadence("both", context_type=Tally)
        .then("a", lambda ctx: None)
        .sync("b", [loses, waits])
        .with_listener(events.append)
    )
    with anyio.fail_after(10), pytest.raises(LeaseLostError):
        await flow.run(Tally(), run_id="order-9", store=store)
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("LeaseLost") == 1
    assert kinds[-1] == "RunFailed"
    await store.aclose()


class FailingStore(SQLiteStore):
    """A store whose commits fail from the `fail_from`-th on (a full disk, say)."""

    fail_from = 2
    commits = 0

    async def checkpoint(
        self, run_id: str, owner: str, **kwargs: object
    ) -> None:  # forwards the keywords
        self.commits += 1
        if self.commits >= self.fail_from:
            raise StoreError(run_id, f"run {run_id!r}: database or disk is full")
        await super().checkpoint(run_id, owner, **kwargs)  # type: ignore[arg-type] # pyright: ignore[reportArgumentType] # as given


async def test_a_failed_commit_tells_checkpoint_failed(tmp_path: Path) -> None:
    events: list[CadenceEvent] = []
    store = FailingStore(tmp_path / "runs.db", synchronous="NORMAL")
    with pytest.raises(StoreError, match="disk is full"):
        await flow(events, [], []).run(Tally(), run_id="order-4", store=store)
    failed = [e for e in events if isinstance(e, CheckpointFailed)]
    assert len(failed) == 1
    assert (failed[0].run_id, failed[0].position, failed[0].step) == ("order-4", 1, "b")
    assert "disk is full" in str(failed[0].error)
    assert not any(isinstance(e, LeaseLost) for e in events)
    # the run stays resumable from its last whole commit, and resuming it is told
    store.fail_from = 10**6
    events.clear()
    result = await flow(events, [], []).run(Tally(), run_id="order-4", store=store)
    assert result.done == ["a", "b", "c"]
    resumed = next(e for e in events if isinstance(e, RunResumed))
    assert (resumed.position, resumed.step) == (1, "b")
    await store.aclose()


class FinishFailingStore(SQLiteStore):
    """A store whose finishing commit fails once (a full disk as the run ends)."""

    fail = True

    async def finish(self, run_id: str, owner: str, **kwargs: Any) -> None:  # Any: forwarded
        if kwargs["status"] == "completed" and self.fail:
            self.fail = False
            raise StoreError(run_id, f"run {run_id!r}: database or disk is full")
        await super().finish(run_id, owner, **kwargs)


async def test_a_finish_that_fails_ends_the_run_failed_after_checkpoint_failed(
    tmp_path: Path,
) -> None:
    events: list[CadenceEvent] = []
    ended: list[BaseException | None] = []

    class Ends(CadenceHooks):
        def after_cadence(
            self, cadence_name: str, context: object, duration: float, error: Exception | None
        ) -> None:
            ended.append(error)

    store = FinishFailingStore(tmp_path / "runs.db", synchronous="NORMAL")
    cadence = flow(events, [], []).with_hooks(Ends())
    with pytest.raises(StoreError, match="disk is full"):
        await cadence.run(Tally(), run_id="order-5", store=store)
    kinds = [type(e).__name__ for e in events]
    assert "RunCompleted" not in kinds  # the result was not stored: the run did not complete
    assert kinds[-2:] == ["CheckpointFailed", "RunFailed"]  # told inside the run, then its end
    failed = events[-2]
    assert isinstance(failed, CheckpointFailed)
    assert (failed.position, failed.step) == (2, "c")  # its last commit: c ran, not stored
    assert len(ended) == 1
    assert isinstance(ended[0], StoreError)
    events.clear()
    assert (await cadence.run(Tally(), run_id="order-5", store=store)).done == ["a", "b", "c"]
    assert [e.beat for e in events if isinstance(e, BeatStarted)] == ["c"]  # in flight: again
    assert sum(isinstance(e, RunCompleted) for e in events) == 1
    await store.aclose()


async def test_a_refused_resume_tells_no_claim(store: SQLiteStore) -> None:
    events: list[CadenceEvent] = []
    with pytest.raises(BeatError):
        await flow(events, ["b"], []).run(Tally(), run_id="order-6", store=store)
    events.clear()
    renamed = replanned(events, "a", "b2", "c")
    with pytest.raises(PlanChangedError):
        await renamed.run(Tally(), run_id="order-6", store=store)
    assert events == []  # the claim was undone: nothing was claimed, nothing resumed
    record = await store.get("order-6")
    assert record is not None
    assert (record.status, record.attempts) == ("failed", 1)
    await store.aclose()


async def test_a_migrated_resume_tells_where_it_goes_on_in_the_new_plan(
    store: SQLiteStore,
) -> None:
    events: list[CadenceEvent] = []
    with pytest.raises(BeatError):
        await flow(events, ["c"], []).run(Tally(), run_id="order-7", store=store)
    events.clear()

    def did(name: str) -> Callable[[Tally], None]:
        return lambda ctx: ctx.done.append(name)

    grown = (
        Cadence("tally", context_type=Tally)
        .then("a", did("a"))
        .then("x", did("x"))
        .then("b", did("b"))
        .then("c2", did("c2"))
        .with_listener(events.append)
    )
    migration = Migration(renamed={"c": "c2"}, skip={"x"})
    result = await grown.run(Tally(), run_id="order-7", store=store, migration=migration)
    assert result.done == ["a", "b", "c2"]
    claimed, resumed = events[0], events[1]
    assert isinstance(claimed, RunClaimed)
    assert isinstance(resumed, RunResumed)
    # Three steps of the new plan are passed over (a, x, b), and c2 goes on: not the stored 2, c.
    assert (claimed.position, claimed.step) == (3, "c2")
    assert (resumed.position, resumed.step) == (3, "c2")
    await store.aclose()


class MigrationFailingStore(SQLiteStore):
    """A store whose commit of a run under a new plan fails (a full disk as it migrates)."""

    async def checkpoint(self, run_id: str, owner: str, **kwargs: Any) -> None:  # Any: forwarded
        if kwargs.get("plan") is not None:
            raise StoreError(run_id, f"run {run_id!r}: database or disk is full")
        await super().checkpoint(run_id, owner, **kwargs)


async def test_a_migration_whose_commit_fails_is_told_as_the_run_stands(tmp_path: Path) -> None:
    events: list[CadenceEvent] = []
    store = MigrationFailingStore(tmp_path / "runs.db", synchronous="NORMAL")
    with pytest.raises(BeatError):
        await flow(events, ["c"], []).run(Tally(), run_id="order-8", store=store)
    events.clear()
    grown = replanned(events, "a", "b", "c2")
    with pytest.raises(StoreError, match="disk is full"):
        await grown.run(
            Tally(), run_id="order-8", store=store, migration=Migration(renamed={"c": "c2"})
        )
    assert [type(e).__name__ for e in events] == ["RunClaimed", "RunResumed", "CheckpointFailed"]
    assert {(e.position, e.step) for e in events if isinstance(e, DurableEvent)} == {(2, "c")}
    record = await store.get("order-8")
    assert record is not None
    assert (record.status, record.attempts) == ("pending", 2)  # counted, as it was told
    await store.aclose()


async def test_an_async_listener_and_a_plain_run_are_unchanged(store: SQLiteStore) -> None:
    seen: list[CadenceEvent] = []

    async def listener(event: CadenceEvent) -> None:
        seen.append(event)

    cadence = Cadence("plain", context_type=Tally).then("a", lambda ctx: None)
    cadence = cadence.with_listener(listener)
    await cadence.run(Tally(), run_id="order-5", store=store)
    assert [type(e) for e in seen] == [
        RunClaimed,
        RunStarted,
        BeatStarted,
        BeatCompleted,
        RunCompleted,
    ]
    seen.clear()
    await cadence.run(Tally())  # no store: no durable events, a fresh run id
    assert [type(e) for e in seen] == [RunStarted, BeatStarted, BeatCompleted, RunCompleted]
    assert seen[0].run_id != "order-5"
    await store.aclose()
