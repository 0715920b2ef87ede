"""Durable runs on a real SQLite file: resume, results, concurrency, plan changes, inspection."""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from cadence import (
    AtomicList,
    BeatError,
    Cadence,
    CadenceDefinitionError,
    CadenceHooks,
    Context,
    ImmutableContext,
    Shared,
)
from cadence.durable import (
    ErrorInfo,
    Migration,
    NewRun,
    PlanChangedError,
    RunCancelledError,
    RunDecodeError,
    RunEncodeError,
    RunFailedError,
    RunIdTakenError,
    SQLiteStore,
    StoreError,
    idempotency_key,
)

pytestmark = pytest.mark.anyio


class Client:
    """A resource: never stored, handed in again on resume."""

    def __init__(self) -> None:
        self.calls: list[str] = []


@dataclass
class Order(Context):
    total: int = 0
    items: list[str] = field(default_factory=list)
    log: AtomicList[str] = field(default_factory=AtomicList)
    client: Shared[Client | None] = None


@dataclass(frozen=True)
class Frozen(ImmutableContext):
    n: int = 0


class Boom(Exception):
    """A beat failed."""


class Beats:
    """Beats that count their calls and record their idempotency keys."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.keyed = True
        self.keys: list[str] = []
        self.fail_at: str | None = None
        self.gate: anyio.Event | None = None
        self.entered: anyio.Event | None = None

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if self.keyed:
            self.keys.append(idempotency_key())
        if self.fail_at == name:
            raise Boom(f"{name} failed")

    async def add(self, ctx: Order) -> None:
        self._enter("add")
        ctx.total += 10
        ctx.items.append("add")

    async def wait(self, ctx: Order) -> None:
        self._enter("wait")
        if self.entered is not None:
            self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        ctx.total *= 2

    async def left(self, ctx: Order) -> None:
        self._enter("left")
        ctx.log.append("left")

    def right(self, ctx: Order) -> None:
        self._enter("right")
        ctx.log.append("right")

    async def last(self, ctx: Order) -> None:
        self._enter("last")
        ctx.total += 1
        if ctx.client is not None and self.keyed:
            ctx.client.calls.append(idempotency_key())

    def flow(self, *first: str) -> Cadence[Order]:
        """The checkout: `add`, `wait`, `par`, `last`; `first` renames or reorders the first two.

        `double` is `wait` renamed.
        """
        beats = {"add": self.add, "wait": self.wait, "double": self.wait}
        checkout = Cadence("checkout", Order())
        for name in first or ("add", "wait"):
            checkout = checkout.then(name, beats[name])
        return checkout.sync("par", [self.left, self.right]).then("last", self.last)


async def failed_in_wait(store: SQLiteStore, run_id: str) -> Beats:
    """Run the checkout as `run_id` until its step `wait` fails; return its beats, failing still."""
    beats = Beats()
    beats.fail_at = "wait"
    with pytest.raises(BeatError):
        await beats.flow().run(Order(), run_id=run_id, store=store)
    return beats


EXPECTED = Order(total=21, items=["add"], log=AtomicList(["left", "right"]))


@pytest.fixture(params=[True, False], ids=["offload", "inline"])
def store(tmp_path: Path, request: pytest.FixtureRequest) -> SQLiteStore:
    offload = bool(request.param)
    return SQLiteStore(
        tmp_path / "runs.db", synchronous="NORMAL", poll_interval=0.005, offload=offload
    )


async def test_an_uninterrupted_run_equals_the_plain_run(store: SQLiteStore) -> None:
    beats = Beats()
    beats.keyed = False
    plain = await beats.flow().run(Order())
    beats.keyed = True
    durable = await beats.flow().run(Order(), run_id="r1", store=store)
    assert durable == plain == EXPECTED
    record = await store.get("r1")
    assert record is not None
    assert (record.status, record.position, record.step, record.attempts) == (
        "completed",
        4,
        None,
        1,
    )
    assert record.plan == ("then add", "then wait", "sync par[left, right]", "then last")
    assert record.context == b'{"total":21,"items":["add"],"log":["left","right"]}'


async def test_a_failed_run_resumes_at_the_failed_step(store: SQLiteStore) -> None:
    beats = Beats()
    beats.fail_at = "left"
    with pytest.raises(BeatError, match="left failed"):
        await beats.flow().run(Order(), run_id="r2", store=store)
    record = await store.get("r2")
    assert record is not None
    assert (record.status, record.position, record.step) == ("failed", 2, "par")
    assert record.error is not None
    assert record.error.type == "cadence._errors.BeatError"
    assert record.error.cause is not None
    assert record.error.cause.type.endswith("Boom")
    assert record.error.cause.message == "left failed"

    beats.fail_at = None
    beats.calls.clear()
    result = await beats.flow().run(Order(), run_id="r2", store=store)
    assert result == EXPECTED
    assert sorted(beats.calls) == ["last", "left", "right"]  # add and wait are not run again
    record = await store.get("r2")
    assert record is not None
    assert (record.status, record.attempts, record.error) == ("completed", 2, None)


async def test_a_cancelled_caller_hands_the_run_back(store: SQLiteStore) -> None:
    beats = Beats()
    beats.gate = anyio.Event()
    beats.entered = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: beats.flow().run(Order(), run_id="r3", store=store))
        await beats.entered.wait()
        group.cancel_scope.cancel()
    record = await store.get("r3")
    assert record is not None
    assert (record.status, record.position, record.step) == ("pending", 1, "wait")
    assert record.context == b'{"total":10,"items":["add"],"log":[]}'

    beats.gate, beats.entered = None, None
    beats.calls.clear()
    assert await beats.flow().run(Order(), run_id="r3", store=store) == EXPECTED
    assert beats.calls.count("add") == 0
    assert beats.calls.count("wait") == 1  # the step in flight runs again


async def test_a_caller_cancelled_while_its_claim_is_told_hands_the_run_back(
    store: SQLiteStore,
) -> None:
    from cadence.events import CadenceEvent, RunClaimed  # noqa: PLC0415 # the test's own

    beats = Beats()
    telling = anyio.Event()

    async def slow_listener(event: CadenceEvent) -> None:
        if isinstance(event, RunClaimed):
            telling.set()
            await anyio.sleep_forever()  # cancelled while the claim is being told

    async with anyio.create_task_group() as group:
        flow = beats.flow().with_listener(slow_listener)
        group.start_soon(lambda: flow.run(Order(), run_id="r3b", store=store))
        await telling.wait()
        group.cancel_scope.cancel()
    record = await store.get("r3b")
    assert record is not None
    assert (record.status, record.owner, record.position) == ("pending", None, 0)
    assert beats.calls == []
    assert await beats.flow().run(Order(), run_id="r3b", store=store) == EXPECTED


async def test_a_finished_run_returns_its_result_without_running(store: SQLiteStore) -> None:
    beats = Beats()
    client = Client()
    first = await beats.flow().run(Order(client=client), run_id="r4", store=store)
    beats.calls.clear()
    again_client = Client()
    given = Order(total=999, client=again_client)
    again = await beats.flow().run(given, run_id="r4", store=store)
    assert beats.calls == []
    assert again is given  # a mutable context is updated in place
    assert dataclasses.replace(again, client=None) == dataclasses.replace(first, client=None)
    assert again.client is again_client  # the resource is the caller's, never stored
    assert client.calls == ["r4:last"]


async def test_shared_fields_come_from_the_resuming_caller(store: SQLiteStore) -> None:
    beats = Beats()
    beats.fail_at = "last"
    with pytest.raises(BeatError):
        await beats.flow().run(Order(client=Client()), run_id="r5", store=store)
    beats.fail_at = None
    fresh = Client()
    result = await beats.flow().run(Order(client=fresh), run_id="r5", store=store)
    assert result.client is fresh
    assert fresh.calls == ["r5:last"]


async def test_two_callers_of_one_run_id_run_it_once(store: SQLiteStore) -> None:
    beats = Beats()
    beats.gate = anyio.Event()
    beats.entered = anyio.Event()
    results: list[Order] = []

    async def call() -> None:
        results.append(await beats.flow().run(Order(), run_id="r6", store=store))

    async with anyio.create_task_group() as group:
        group.start_soon(call)
        await beats.entered.wait()
        group.start_soon(call)  # finds the run owned by a live caller and waits for it
        await anyio.sleep(0.05)
        assert len(results) == 0
        beats.gate.set()
    assert results == [EXPECTED, EXPECTED]
    assert beats.calls == ["add", "wait", "left", "right", "last"]


@dataclass
class Reading(Context):
    value: float = 0.0
    sent: bool = False


async def test_a_value_the_store_cannot_hold_fails_the_run_naming_the_field(
    store: SQLiteStore,
) -> None:
    calls: list[str] = []
    broken = [True]

    async def measure(ctx: Reading) -> None:
        calls.append("measure")
        ctx.value = math.nan if broken[0] else 1.5

    async def send(ctx: Reading) -> None:
        calls.append("send")
        ctx.sent = True

    flow = (
        Cadence("meter", Reading())
        .then("measure", measure)
        .then("send", send)
        .on_error(lambda ctx, error: calls.append(f"handled {error}"), stop=False)
    )
    with pytest.raises(RunEncodeError, match=r"run 'm-1': field Reading.value holds nan"):
        await flow.run(Reading(), run_id="m-1", store=store)
    assert calls == ["measure"]  # stopped as itself: no handler saw it, no later step ran
    record = await store.get("m-1")
    assert record is not None
    # Failed, not handed back: no retry could store it (a worker would run the step for ever).
    assert (record.status, record.position, record.attempts) == ("failed", 0, 1)
    assert record.error is not None
    assert record.error.type.endswith("RunEncodeError")
    broken[0] = False  # the beat mended: a later call resumes the failed run at that step
    done = await flow.run(Reading(), run_id="m-1", store=store)
    assert (done.value, done.sent) == (1.5, True)
    assert calls == ["measure", "measure", "send"]


async def test_a_caller_waiting_on_a_run_that_fails_gets_the_failure(store: SQLiteStore) -> None:
    beats = Beats()
    beats.gate = anyio.Event()
    beats.entered = anyio.Event()
    outcomes: dict[str, BaseException] = {}

    async def call(name: str) -> None:
        try:
            await flow.run(Order(), run_id="r6f", store=store)
        except Exception as exc:  # recorded and asserted below
            outcomes[name] = exc

    async def wait(ctx: Order) -> None:  # fails once the waiter waits: after the gate opens
        assert beats.entered is not None
        assert beats.gate is not None
        beats.entered.set()
        await beats.gate.wait()
        beats.calls.append("wait")
        raise Boom("wait failed")

    flow = Cadence("checkout", Order()).then("add", beats.add).then("wait", wait)
    async with anyio.create_task_group() as group:
        group.start_soon(call, "runner")
        await beats.entered.wait()
        group.start_soon(call, "waiter")  # finds the run owned by a live caller and waits
        await anyio.sleep(0.05)
        beats.gate.set()
    assert beats.calls == ["add", "wait"]  # the waiter did not run the failed step again
    assert isinstance(outcomes["runner"], BeatError)
    waited = outcomes["waiter"]
    assert type(waited) is RunFailedError
    assert waited.step == "wait"
    assert "run 'r6f' of cadence 'checkout' failed at step 'wait'" in str(waited)
    assert "Boom: wait failed" in str(waited)
    record = await store.get("r6f")
    assert record is not None
    assert (record.status, record.owner, record.step) == ("failed", None, "wait")
    assert record.error is not None
    assert "Boom: wait failed" in str(record.error)
    assert record.attempts == 1  # the waiter's claim found it failed and took nothing over


async def test_a_waiters_claim_of_a_failed_run_takes_nothing_over(store: SQLiteStore) -> None:
    await failed_in_wait(store, "wf")
    new = NewRun("checkout", (), "f", b"{}", "add", resume_failed=False)
    claim = await store.claim("wf", store.new_owner(), new)
    assert claim.outcome == "failed"
    record = await store.get("wf")
    assert record is not None
    assert (record.status, record.owner, record.attempts) == ("failed", None, 1)


async def test_a_new_runs_claim_returns_the_record_as_stored(store: SQLiteStore) -> None:
    """A new run id is created in one statement, its record built from what was written."""
    new = NewRun("checkout", ("then add", "then wait"), "f", b'{"n":1}', "add")
    owner = store.new_owner()
    assert await store.get("opens") is None
    connection = store._connection  # pyright: ignore[reportPrivateUsage] # traced below
    assert connection is not None
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    claim = await store.claim("fresh", owner, new)
    connection.set_trace_callback(None)
    assert [s.split()[0] for s in statements if not s.startswith("PRAGMA")] == ["INSERT"]
    assert (claim.outcome, claim.previous) == ("created", None)
    assert claim.record == await store.get("fresh")
    assert (claim.record.status, claim.record.owner, claim.record.attempts) == (
        "running",
        owner,
        1,
    )
    again = await store.claim("fresh", store.new_owner(), new)  # the row is there: the full claim
    assert (again.outcome, again.previous) == ("busy", "running")
    await store.release("fresh", owner)


async def test_idempotency_keys_are_deterministic_and_per_step(store: SQLiteStore) -> None:
    beats = Beats()
    beats.fail_at = "last"
    with pytest.raises(BeatError):
        await beats.flow().run(Order(), run_id="r7", store=store)
    first = list(beats.keys)
    assert first == ["r7:add", "r7:wait", "r7:par.left", "r7:par.right", "r7:last"]
    beats.fail_at = None
    beats.keys.clear()
    await beats.flow().run(Order(), run_id="r7", store=store)
    assert beats.keys == ["r7:last"]  # the same key for the step run again


async def test_idempotency_keys_of_names_holding_dots_do_not_meet_a_paths(
    store: SQLiteStore,
) -> None:
    keys: list[str] = []

    def key(ctx: Order) -> None:
        keys.append(idempotency_key())

    def named(name: str) -> Callable[[Order], None]:
        def beat(ctx: Order) -> None:
            keys.append(idempotency_key())

        beat.__name__ = name
        return beat

    inner = Cadence("inner", Order()).then("label", key)
    flow = (
        Cadence("dots", Order())
        .child("ship", inner, context=lambda ctx: Order(), merge=lambda ctx, sub: ctx)
        .then("ship.label", key)
        .sync("notify", [named("email"), named("a:b%")])
        .then("notify.email", key)
    )
    await flow.run(run_id="o", store=store)
    assert sorted(keys) == [  # the branches in either order
        "o:notify%2Eemail",
        "o:notify.a%3Ab%25",
        "o:notify.email",
        "o:ship%2Elabel",
        "o:ship.label",
    ]


async def test_idempotency_key_outside_a_durable_run_is_an_error() -> None:
    with pytest.raises(Exception, match="durable run"):
        idempotency_key()

    async def needs_key(ctx: Order) -> None:
        ctx.items.append(idempotency_key("x"))

    with pytest.raises(BeatError, match="durable run"):
        await Cadence("plain", Order()).then("k", needs_key).run()


async def test_a_changed_plan_is_refused_naming_the_difference(store: SQLiteStore) -> None:
    beats = Beats()
    beats.fail_at = "left"
    with pytest.raises(BeatError):
        await beats.flow().run(Order(), run_id="r8", store=store)
    failed = await store.get("r8")
    assert failed is not None
    assert failed.error is not None
    beats.fail_at = None
    renamed = beats.flow("add", "double")
    with pytest.raises(PlanChangedError, match=r"step 2 was 'then wait' and is now 'then double'"):
        await renamed.run(Order(), run_id="r8", store=store)
    removed = Cadence("checkout", Order()).then("add", beats.add).then("wait", beats.wait)
    with pytest.raises(PlanChangedError, match=r"step 3 'sync par\[left, right\]' was removed"):
        await removed.run(Order(), run_id="r8", store=store)
    reordered = beats.flow("wait", "add")
    with pytest.raises(PlanChangedError, match="step 1 was 'then add' and is now 'then wait'"):
        await reordered.run(Order(), run_id="r8", store=store)
    record = await store.get("r8")
    assert record is not None
    # Each refusal undid its claim: still failed, with its error, its attempts uncounted.
    assert (record.status, record.position, record.attempts) == ("failed", 2, 1)
    assert record.error == failed.error

    beats.calls.clear()
    result = await renamed.run(
        Order(), run_id="r8", store=store, migration=Migration(renamed={"wait": "double"})
    )
    assert result == EXPECTED
    assert sorted(beats.calls) == ["last", "left", "right"]
    record = await store.get("r8")
    assert record is not None
    assert record.plan[1] == "then double"


async def test_a_migration_refuses_to_pass_over_a_moved_step_the_run_had_not_run(
    store: SQLiteStore,
) -> None:
    beats = await failed_in_wait(store, "moved")  # add done, wait failed
    beats.fail_at = None
    moved = beats.flow("wait", "add")
    with pytest.raises(
        PlanChangedError,
        match=r"had not completed step 'wait', which this plan moved before step 'add'",
    ):
        await moved.run(Order(), run_id="moved", store=store, migration=Migration())
    record = await store.get("moved")
    assert record is not None
    assert (record.status, record.position, record.attempts) == ("failed", 1, 1)

    beats.calls.clear()
    result = await moved.run(
        Order(), run_id="moved", store=store, migration=Migration(skip={"wait"})
    )
    assert sorted(beats.calls) == ["last", "left", "right"]  # wait passed over, as asked
    assert result.total == 11


async def test_a_migration_reads_step_names_that_hold_brackets_whole(store: SQLiteStore) -> None:
    failing = [True]
    ran: list[str] = []

    def beat(name: str) -> Callable[[Order], None]:
        def run(ctx: Order) -> None:
            ran.append(name)
            if name == "fetch[b]" and failing:
                failing.clear()
                raise ConnectionError("down")
            ctx.items.append(name)

        run.__name__ = name
        return run

    def flow(*names: str) -> Cadence[Order]:
        cadence = Cadence("brackets", Order())
        for name in names:
            cadence = cadence.then(name, beat(name))
        return cadence.sync("par(1)", [idle("x[1]"), idle("y")])

    def idle(name: str) -> Callable[[Order], None]:
        def run(ctx: Order) -> None:
            ran.append(name)

        run.__name__ = name
        return run

    with pytest.raises(BeatError):
        await flow("fetch[a]", "fetch[b]", "send").run(run_id="br", store=store)
    ran.clear()
    changed = flow("fetch[a]", "fetch[b]", "send", "audit")  # a step added after them
    result = await changed.run(run_id="br", store=store, migration=Migration())
    assert ran[:3] == ["fetch[b]", "send", "audit"]  # fetch[b] had not completed: it runs
    assert result.items == (await changed.run()).items


async def test_store_cancel_stops_the_run_at_its_next_checkpoint(store: SQLiteStore) -> None:
    beats = Beats()

    async def cancel_me(ctx: Order) -> None:
        assert await store.cancel("r9")
        ctx.total = -1

    flow = beats.flow().then("cancel", cancel_me).then("after", beats.add)
    with pytest.raises(RunCancelledError, match="'r9' was cancelled"):
        await flow.run(Order(), run_id="r9", store=store)
    assert "after" not in [k.split(":")[1] for k in beats.keys]
    with pytest.raises(RunCancelledError):
        await flow.run(Order(), run_id="r9", store=store)
    record = await store.get("r9")
    assert record is not None
    assert record.status == "cancelled"


async def test_a_run_cancelled_in_its_step_is_kept_until_its_caller_lets_it_go(
    store: SQLiteStore,
) -> None:
    cancelled, go_on = anyio.Event(), anyio.Event()

    async def wait(ctx: Order) -> None:
        assert await store.cancel("r10")
        cancelled.set()
        await go_on.wait()

    flow = Cadence("kept", Order()).then("wait", wait).then("after", lambda ctx: None)
    async with anyio.create_task_group() as group:

        async def look() -> None:
            await cancelled.wait()
            # Deleted now, a later run("r10") would start it anew beside the step still going.
            assert not await store.delete("r10")
            assert await store.prune(datetime.timedelta(0)) == 0
            go_on.set()

        group.start_soon(look)
        with pytest.raises(RunCancelledError, match="'r10' was cancelled"):
            await flow.run(Order(), run_id="r10", store=store)
    record = await store.get("r10")
    assert record is not None
    assert (record.status, record.owner) == ("cancelled", None)  # let go of as it stopped
    assert await store.delete("r10")


@pytest.mark.parametrize("kind", ["sync", "child"])
async def test_a_run_cancelled_inside_a_sync_or_child_step_stays_cancelled(
    store: SQLiteStore, kind: str
) -> None:
    handled: list[Exception] = []

    async def cancel(ctx: Order) -> None:
        assert await store.cancel("r11")

    async def idle(ctx: Order) -> None:
        await anyio.sleep(0.5)

    flow = Cadence("cancelled", Order())
    if kind == "sync":
        flow = flow.sync("par", [cancel, idle])
    else:
        inner = Cadence("inner", Order()).then("cancel", cancel).then("idle", idle)
        flow = flow.child("sub", inner, context=lambda ctx: Order(), merge=lambda ctx, sub: ctx)
    flow = flow.then("after", idle).on_error(lambda ctx, exc: handled.append(exc), stop=False)
    with pytest.raises(RunCancelledError, match="'r11' was cancelled"):
        await flow.run(run_id="r11", store=store)
    assert handled == []  # no handler recovers a cancelled run, nor does it run on
    record = await store.get("r11")
    assert record is not None
    assert (record.status, record.owner) == ("cancelled", None)


async def test_inspecting_deleting_and_pruning_runs(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = SQLiteStore(tmp_path / "runs.db", clock=lambda: now[0])
    beats = Beats()
    await beats.flow().run(Order(), run_id="old", store=store)
    now[0] += 3600
    beats.fail_at = "wait"
    with pytest.raises(BeatError):
        await beats.flow().run(Order(), run_id="failed", store=store)
    assert [r.run_id for r in await store.list_runs()] == ["failed", "old"]
    assert [r.run_id for r in await store.list_runs(status="failed")] == ["failed"]
    assert await store.list_runs(cadence="other") == []
    old = await store.get("old")
    assert old is not None
    assert old.created_at == datetime.datetime.fromtimestamp(1_000_000.0, tz=datetime.UTC)
    assert await store.prune(datetime.timedelta(minutes=30)) == 1
    assert await store.get("old") is None
    assert await store.delete("failed")
    assert not await store.delete("failed")
    assert await store.list_runs() == []
    await store.aclose()


async def test_a_corrupted_row_is_an_error_naming_the_run(store: SQLiteStore) -> None:
    beats = await failed_in_wait(store, "bad")
    with sqlite3.connect(store.path) as connection:
        connection.execute("UPDATE cadence_runs SET context = 'not json' WHERE run_id = 'bad'")
    with pytest.raises(RunDecodeError, match="run 'bad': the stored context does not decode"):
        await beats.flow().run(Order(), run_id="bad", store=store)
    record = await store.get("bad")
    assert record is not None
    assert (record.status, record.attempts) == ("failed", 1)  # as it was: fix the row, resume
    with sqlite3.connect(store.path) as connection:
        connection.execute("UPDATE cadence_runs SET plan = '{' WHERE run_id = 'bad'")
    with pytest.raises(RunDecodeError, match=r"run 'bad': its row .* is corrupted"):
        await store.get("bad")
    await Beats().flow().run(Order(), run_id="good", store=store)
    listed = {record.run_id: record for record in await store.list_runs()}
    assert listed.keys() == {"bad", "good"}  # one corrupted row hides nothing, stops nothing
    assert listed["good"].error is None
    bad = listed["bad"]
    assert (bad.status, bad.plan, bad.attempts) == ("failed", (), 1)
    assert bad.error is not None
    assert re.search(r"run 'bad': its row .* is corrupted", bad.error.message)
    with pytest.raises(RunDecodeError, match=r"run 'bad': its row .* is corrupted"):
        await beats.flow().run(Order(), run_id="bad", store=store)
    with sqlite3.connect(store.path) as connection:
        status = connection.execute(
            "SELECT status FROM cadence_runs WHERE run_id = 'bad'"
        ).fetchone()
    assert status == ("failed",)  # the claim was rolled back: no caller is left waiting


@pytest.mark.parametrize("position", [-1, 99])
async def test_a_stored_position_outside_the_plan_is_a_corrupted_row(
    store: SQLiteStore, position: int
) -> None:
    beats = await failed_in_wait(store, "far")
    with sqlite3.connect(store.path) as connection:
        connection.execute("UPDATE cadence_runs SET position = ? WHERE run_id = 'far'", (position,))
    beats.fail_at = None
    calls = len(beats.calls)
    outside = rf"run 'far': its row .* is corrupted: position {position} is outside its plan"
    with pytest.raises(RunDecodeError, match=outside):
        await beats.flow().run(Order(), run_id="far", store=store)
    assert len(beats.calls) == calls  # no step ran, none was skipped


async def test_a_listing_refuses_a_status_it_does_not_know_and_a_negative_limit(
    store: SQLiteStore,
) -> None:
    await Beats().flow().run(Order(), run_id="one", store=store)
    wrong: Any = "done"  # Any: an untyped caller's
    with pytest.raises(ValueError, match=r"list_runs: status must be one of cancelled, .*'done'"):
        await store.list_runs(status=wrong)
    with pytest.raises(ValueError, match=r"list_runs: limit must be a count .* got -5"):
        await store.list_runs(limit=-5)  # SQLite's LIMIT -5 lists every run
    assert [r.run_id for r in await store.list_runs(status="completed", limit=1)] == ["one"]
    assert await store.list_runs(limit=0) == []


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("context", 2**36),  # bytes(n) was n zero bytes: a MemoryError
        ("context", 3),  # three zero bytes, read as a context
        ("plan", "[" * 100_000),  # a RecursionError
        ("error", "[" * 100_000),
        ("created_at", 1e20),  # past time_t
        ("created_at", math.inf),
    ],
    ids=["huge-int-context", "int-context", "deep-plan", "deep-error", "late", "infinite"],
)
async def test_a_column_holding_what_no_store_writes_is_a_corrupted_row(
    store: SQLiteStore, column: str, value: object
) -> None:
    beats = await failed_in_wait(store, "odd")
    await Beats().flow().run(Order(), run_id="good", store=store)
    with sqlite3.connect(store.path) as connection:
        connection.execute(f"UPDATE cadence_runs SET {column} = ? WHERE run_id = 'odd'", (value,))  # noqa: S608 # the test's own column names
    corrupted = r"run 'odd': its row .* is corrupted"
    with pytest.raises(RunDecodeError, match=corrupted):
        await store.get("odd")
    with pytest.raises(RunDecodeError, match=corrupted):
        await beats.flow().run(Order(), run_id="odd", store=store)
    listed = {record.run_id: record for record in await store.list_runs()}
    assert listed.keys() == {"odd", "good"}  # the bad row hides no other
    odd = listed["odd"]
    assert odd.error is not None
    assert re.search(corrupted, odd.error.message)
    if column == "created_at":  # listed as far as it reads: the rest as at the epoch
        assert odd.created_at == datetime.datetime.fromtimestamp(0, tz=datetime.UTC)


@pytest.mark.parametrize("pid", ["0", "-1", "99999999999999999999"])
async def test_a_running_row_whose_owner_names_no_process_is_taken_over(
    store: SQLiteStore, pid: str
) -> None:
    """Not waited on for ever (kill(0) signals a process group), nor an OverflowError."""
    beats = await failed_in_wait(store, "orphan")
    host = store.new_owner().split(":")[0]
    with sqlite3.connect(store.path) as connection:
        connection.execute(
            "UPDATE cadence_runs SET status = 'running', owner = ? WHERE run_id = 'orphan'",
            (f"{host}:{pid}::nonce",),
        )
    beats.fail_at = None
    with anyio.fail_after(5):
        assert await beats.flow().run(Order(), run_id="orphan", store=store) == EXPECTED
    with sqlite3.connect(store.path) as connection:
        connection.execute(
            "UPDATE cadence_runs SET status = 'cancelled', owner = ?", (f"{host}:{pid}::n",)
        )
    assert await store.prune(datetime.timedelta(0)) == 1  # no owner alive keeps it


async def test_a_context_suppressed_by_raise_from_none_is_not_stored(store: SQLiteStore) -> None:
    async def charge(ctx: Order) -> None:
        try:
            raise ConnectionError("token=sk_live_hidden rejected")
        except ConnectionError:
            raise Boom("card declined") from None

    flow = Cadence("pay", Order()).then("charge", charge)
    with pytest.raises(BeatError):
        await flow.run(Order(), run_id="pay-1", store=store)
    record = await store.get("pay-1")
    assert record is not None
    assert record.error is not None
    chain: list[tuple[str, str]] = []
    error: ErrorInfo | None = record.error
    while error is not None:
        chain.append((error.type.rsplit(".", 1)[-1], error.message))
        error = error.cause
    assert chain[-1] == ("Boom", "card declined")  # where Python's own traceback stops
    assert "sk_live_hidden" not in repr(chain)


async def test_a_refused_resume_leaves_the_run_as_it_found_it(store: SQLiteStore) -> None:
    beats = Beats()
    beats.gate, beats.entered = anyio.Event(), anyio.Event()
    flow = beats.flow()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: flow.run(Order(), run_id="back", store=store))
        await beats.entered.wait()
        group.cancel_scope.cancel()  # stopped in step 2: handed back, pending
    beats.gate = None
    other = Cadence("other", Order()).then("add", beats.add)
    with pytest.raises(RunIdTakenError, match="belongs to cadence 'checkout', not 'other'"):
        await other.run(Order(), run_id="back", store=store)
    renamed = Cadence("checkout", Order()).then("plus", beats.add)
    with pytest.raises(PlanChangedError, match="step 1 was 'then add' and is now 'then plus'"):
        await renamed.run(Order(), run_id="back", store=store)
    record = await store.get("back")
    assert record is not None
    assert (record.status, record.position, record.attempts) == ("pending", 1, 1)
    assert record.owner is None
    assert await flow.run(Order(), run_id="back", store=store) == EXPECTED
    record = await store.get("back")
    assert record is not None
    assert (record.status, record.attempts) == ("completed", 2)
    assert beats.calls == ["add", "wait", "wait", "left", "right", "last"]


async def test_misuse_is_refused_clearly(store: SQLiteStore, tmp_path: Path) -> None:
    beats = Beats()
    with pytest.raises(CadenceDefinitionError, match="needs a store"):
        await beats.flow().run(Order(), run_id="x")
    with pytest.raises(CadenceDefinitionError, match="needs run_id"):
        await beats.flow().run(Order(), store=store)
    await beats.flow().run(Order(), run_id="taken", store=store)
    other = Cadence("other", Order()).then("add", beats.add)
    with pytest.raises(RunIdTakenError, match="belongs to cadence 'checkout', not 'other'"):
        await other.run(Order(), run_id="taken", store=store)
    missing = SQLiteStore(tmp_path / "no" / "such" / "dir.db")
    with pytest.raises(StoreError, match="run 'y': claiming the run failed in SQLite store"):
        await beats.flow().run(Order(), run_id="y", store=missing)


@pytest.mark.parametrize(
    ("run_id", "fault"),
    [
        ("order\x00-1", "'order\\x00-1', which holds a NUL character"),
        ("\udcff", "which UTF-8 cannot encode"),  # a path's undecodable byte
        ("é" * 513, "(513 characters), 1026 bytes in UTF-8"),
    ],
    ids=["nul", "surrogate", "too-long"],
)
async def test_a_run_id_no_store_could_hold_is_refused_before_the_run(
    store: SQLiteStore, run_id: str, fault: str
) -> None:
    """PostgreSQL's text holds no NUL and its key index about 2700 bytes: refused in every store."""
    beats = Beats()
    rule = "a non-empty string of at most 1024 bytes (UTF-8) without NUL"
    with pytest.raises(
        CadenceDefinitionError, match=re.escape(f"needs run_id, {rule}; got")
    ) as refused:
        await beats.flow().run(Order(), run_id=run_id, store=store)
    assert fault in str(refused.value)
    assert beats.calls == []
    assert await store.list_runs() == []
    assert await beats.flow().run(Order(), run_id="é" * 512, store=store) == EXPECTED  # 1024 bytes


async def test_a_schema_newer_than_the_store_is_refused_by_name(store: SQLiteStore) -> None:
    from cadence.durable._sqlite import SCHEMA_VERSION  # noqa: PLC0415 # the test's own

    assert await store.get("any") is None  # the schema is made, at this cadence's version
    await store.aclose()
    with sqlite3.connect(store.path) as connection:
        found = connection.execute("SELECT value FROM cadence_meta").fetchall()
        connection.execute("UPDATE cadence_meta SET value = '99'")
    assert found == [(str(SCHEMA_VERSION),)]
    newer = SQLiteStore(store.path)
    with pytest.raises(
        StoreError, match=f"schema version 99; this cadence knows up to {SCHEMA_VERSION}"
    ):
        await Beats().flow().run(Order(), run_id="any", store=newer)
    await newer.aclose()


async def test_immutable_contexts_and_handled_errors(store: SQLiteStore) -> None:
    calls: list[str] = []

    def bump(ctx: Frozen) -> Frozen:
        calls.append("bump")
        return ctx.with_field("n", ctx.n + 1)

    def broken(ctx: Frozen) -> None:
        calls.append("broken")
        raise Boom

    flow = (
        Cadence("frozen", Frozen())
        .then("one", bump)
        .then("broken", broken)
        .then("two", bump)
        .on_error(lambda ctx, err: None, stop=False)
    )
    result = await flow.run(run_id="f1", store=store)
    assert result == Frozen(n=2)
    assert calls == ["bump", "broken", "bump"]
    calls.clear()
    assert await flow.run(run_id="f1", store=store) == Frozen(n=2)
    assert calls == []


def test_run_sync_takes_a_store(store: SQLiteStore) -> None:
    beats = Beats()
    assert beats.flow().run_sync(Order(), run_id="s1", store=store) == EXPECTED
    beats.calls.clear()
    assert beats.flow().run_sync(Order(), backend="trio", run_id="s1", store=store) == EXPECTED
    assert beats.calls == []


@dataclass
class Leaf(Context):
    seen: list[str] = field(default_factory=list)


def leaf_beat(name: str, calls: list[str], failing: set[str]) -> Callable[[Leaf], Awaitable[None]]:
    """A beat that records `name@key`, fails if `name` is in `failing`, else adds `name`."""

    async def run(ctx: Leaf) -> None:
        calls.append(f"{name}@{idempotency_key()}")
        if name in failing:
            raise Boom(name)
        ctx.seen.append(name)

    return run


def into(parent: Leaf, child: Leaf) -> None:
    """Merge a child's `seen` into its parent's."""
    parent.seen.extend(child.seen)


class RecordingStore(SQLiteStore):
    """A SQLiteStore that keeps the `inner` of every checkpoint it commits."""

    inners: list[bytes | None]

    async def checkpoint(self, run_id: str, owner: str, **fields: Any) -> None:
        self.inners.append(fields.get("inner"))
        await super().checkpoint(run_id, owner, **fields)


async def test_a_migration_keeps_a_childs_stored_progress(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "runs.db")
    store.inners = []
    calls: list[str] = []
    failing = {"b"}

    def beat(name: str) -> Callable[[Leaf], Awaitable[None]]:
        return leaf_beat(name, calls, failing)

    inner = Cadence("inner", Leaf()).then("a", beat("a")).then("b", beat("b"))

    def flow(first: str) -> Cadence[Leaf]:
        return Cadence("outer", Leaf()).then(first, beat("t")).child("in", inner, into)

    with pytest.raises(BeatError):
        await flow("t").run(run_id="m1", store=store)
    record = await store.get("m1")
    assert record is not None
    assert record.inner is not None  # the child's step a, committed
    failing.clear()
    calls.clear()
    store.inners.clear()
    migrated = Migration(renamed={"t": "t2"})
    result = await flow("t2").run(run_id="m1", store=store, migration=migrated)
    assert result.seen == ["t", "a", "b"]
    assert calls == ["b@m1:in.b"]
    assert store.inners[0] == record.inner  # the migration's commit kept it: a crash after
    # it resumes the child at b, not at a


async def test_a_migration_gives_a_childs_stored_progress_to_that_child_alone(
    store: SQLiteStore,
) -> None:
    calls: list[str] = []
    failing = {"b"}

    def beat(name: str) -> Callable[[Leaf], Awaitable[None]]:
        return leaf_beat(name, calls, failing)

    inner = Cadence("inner", Leaf()).then("a", beat("a")).then("b", beat("b"))

    def flow(*steps: str) -> Cadence[Leaf]:
        c = Cadence("outer", Leaf())
        for name in steps:
            c = c.then(name, beat(name)) if len(name) == 1 else c.child(name, inner, into)
        return c

    for run_id in ("moved", "added"):  # each fails in child xx after its step a
        with pytest.raises(BeatError):
            await flow("t", "xx", "yy").run(run_id=run_id, store=store)
    failing.clear()
    calls.clear()
    # yy now comes where xx was: xx's stored progress is not yy's.
    result = await flow("t", "yy", "xx").run(run_id="moved", store=store, migration=Migration())
    assert calls == ["a@moved:yy.a", "b@moved:yy.b", "a@moved:xx.a", "b@moved:xx.b"]
    assert result.seen == ["t", "a", "b", "a", "b"]
    calls.clear()
    # A step added before xx moves it along: its progress goes with it.
    result = await flow("s", "t", "xx", "yy").run(
        run_id="added", store=store, migration=Migration()
    )
    assert calls == ["b@added:xx.b", "a@added:yy.a", "b@added:yy.b"]
    assert result.seen == ["t", "a", "b", "a", "b"]


async def test_a_child_whose_merge_fails_does_not_run_its_last_step_again(
    store: SQLiteStore,
) -> None:
    calls: list[str] = []
    failing: set[str] = set()
    merges: list[str] = []

    def beat(name: str) -> Callable[[Leaf], Awaitable[None]]:
        return leaf_beat(name, calls, failing)

    def merge(parent: Leaf, child: Leaf) -> None:
        merges.append("merge")
        if len(merges) == 1:
            raise Boom("merge")
        into(parent, child)

    inner = Cadence("inner", Leaf()).then("a", beat("a")).then("b", beat("b"))
    flow = Cadence("outer", Leaf()).child("kid", inner, merge).then("t", beat("t"))
    with pytest.raises(Exception, match="merge"):
        await flow.run(run_id="merge-1", store=store)
    assert calls == ["a@merge-1:kid.a", "b@merge-1:kid.b"]
    calls.clear()
    result = await flow.run(run_id="merge-1", store=store)
    assert calls == ["t@merge-1:t"]  # the child's steps both committed: only its merge again
    assert merges == ["merge", "merge"]
    assert result.seen == ["a", "b", "t"]


def test_a_migrations_skip_is_a_set_of_names_not_a_string() -> None:
    with pytest.raises(TypeError, match="skip takes a set of step names, got 'wait'"):
        Migration(skip="wait")  # type: ignore[arg-type]
    assert Migration(skip={"wait"}).skip == frozenset({"wait"})


@pytest.mark.parametrize(
    "wrong",
    [
        {"renamed": lambda name: name},
        {"renamed": [("add", "plus")]},
        {"renamed": {"add": 1}},
        {"skip": 3},
        {"skip": [1]},
    ],
)
def test_a_migration_of_the_wrong_shape_from_untyped_code_is_refused_at_once(
    wrong: dict[str, Any],
) -> None:
    with pytest.raises(TypeError, match=r"Migration: (renamed maps old step names|skip takes)"):
        Migration(**wrong)
    assert Migration(renamed={"add": "plus"}).renamed == {"add": "plus"}


@dataclass
class Unstorable(Context):
    client: Client | None = None  # a resource not marked Shared[...]


async def test_a_child_whose_context_cannot_be_stored_is_refused_before_anything_runs(
    store: SQLiteStore,
) -> None:
    ran: list[str] = []

    async def charge(ctx: Leaf) -> None:
        ran.append("charge")

    async def call(ctx: Unstorable) -> None:
        ran.append("call")

    deep = Cadence("deep", Unstorable()).then("call", call)
    mid = Cadence("mid", Leaf()).then("charge", charge).child("deep", deep, lambda p, c: None)
    flow = Cadence("top", Leaf()).then("charge", charge).child("mid", mid, lambda p, c: None)
    with pytest.raises(CadenceDefinitionError, match=r"Unstorable: field 'client' cannot be"):
        await flow.run(run_id="kid", store=store)
    assert ran == []
    assert await store.get("kid") is None


async def test_an_untyped_child_whose_context_cannot_be_stored_stops_the_run_as_it_starts(
    store: SQLiteStore,
) -> None:
    ran: list[str] = []
    handled: list[Exception] = []

    async def charge(ctx: Leaf) -> None:
        ran.append("charge")

    async def call(ctx: Unstorable) -> None:
        ran.append("call")

    untyped = Cadence("untyped").then("call", call)  # no context type declared
    flow = (
        Cadence("top", Leaf())
        .then("charge", charge)
        .child("sub", untyped, context=lambda p: Unstorable(), merge=lambda p, c: p)
        .then("after", charge)
        .on_error(lambda ctx, exc: handled.append(exc), stop=False)
    )
    with pytest.raises(CadenceDefinitionError, match=r"Unstorable: field 'client' .* step 'sub'"):
        await flow.run(run_id="kid2", store=store)
    assert (ran, handled) == (["charge"], [])  # not passed over by the handler
    record = await store.get("kid2")
    assert record is not None
    assert (record.status, record.step) == ("failed", "sub")


async def test_a_child_commits_after_each_of_its_steps(store: SQLiteStore) -> None:
    calls: list[str] = []
    failing = {"deep.b"}

    def beat(name: str) -> Callable[[Leaf], Awaitable[None]]:
        return leaf_beat(name, calls, failing)

    deep = Cadence("deep", Leaf()).then("a", beat("deep.a")).then("b", beat("deep.b"))
    mid = (
        Cadence("mid", Leaf())
        .then("x", beat("mid.x"))
        .child("deep", deep, into)
        .then("y", beat("mid.y"))
    )
    flow = Cadence("top", Leaf()).then("t", beat("t")).child("mid", mid, into)
    with pytest.raises(BeatError, match=r"deep\.b"):
        await flow.run(run_id="c1", store=store)
    assert calls == ["t@c1:t", "mid.x@c1:mid.x", "deep.a@c1:mid.deep.a", "deep.b@c1:mid.deep.b"]
    record = await store.get("c1")
    assert record is not None
    assert (record.position, record.step) == (1, "mid")
    assert record.inner == b'[[1,{"seen":["mid.x"]}],[1,{"seen":["deep.a"]}]]'

    failing.clear()
    calls.clear()
    result = await flow.run(run_id="c1", store=store)
    assert calls == ["deep.b@c1:mid.deep.b", "mid.y@c1:mid.y"]  # only what had not completed
    assert result.seen == ["t", "mid.x", "deep.a", "deep.b", "mid.y"]
    record = await store.get("c1")
    assert record is not None
    assert (record.status, record.position, record.inner) == ("completed", 2, None)


async def test_inline_commits_at_full_wait_for_the_disk_on_the_loop_when_asked(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "x.db", synchronous="FULL", offload=False)
    on_thread: list[str] = []
    real = store._work  # pyright: ignore[reportPrivateUsage] # the thread's side of a call

    def spy(fn: Any) -> Any:
        on_thread.append(threading.current_thread().name)
        return real(fn)

    store._work = spy  # type: ignore[method-assign] # pyright: ignore[reportPrivateUsage] # spied
    beats = Beats()
    assert await beats.flow().run(Order(), run_id="full-inline", store=store) == EXPECTED
    # Only the first call (which connects) went to the writer thread; the commits ran here.
    assert on_thread == [f"cadence-sqlite {store.path.name}"]
    record = await store.get("full-inline")
    assert record is not None
    assert record.status == "completed"
    await store.aclose()


async def test_an_inline_store_waits_on_a_thread_while_another_process_writes(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "runs.db", synchronous="NORMAL", offload=False)
    beats = Beats()
    flow = beats.flow()
    await flow.run(Order(), run_id="warm", store=store)  # opens the connection
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock

    async def release_later() -> None:
        await anyio.sleep(0.05)
        other.execute("COMMIT")

    async with anyio.create_task_group() as group:
        group.start_soon(release_later)  # the loop stays free: the run waits on a thread
        result = await flow.run(Order(), run_id="blocked", store=store)
    other.close()
    assert result == EXPECTED


class Recorder(CadenceHooks[Order]):
    """Hooks that record what they see."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def before_cadence(self, cadence_name: str, context: Order) -> None:
        self.seen.append(f"start {cadence_name} total={context.total}")

    def after_cadence(
        self, cadence_name: str, context: Order, duration: float, error: BaseException | None = None
    ) -> None:
        self.seen.append(f"end {cadence_name} {type(error).__name__ if error else 'ok'}")

    def after_beat(
        self, beat_name: str, context: Order, duration: float, error: BaseException | None = None
    ) -> None:
        self.seen.append(beat_name)


async def test_hooks_see_a_resumed_run_as_one_run_from_where_it_went_on(
    store: SQLiteStore,
) -> None:
    beats = Beats()
    hooks = Recorder()
    flow = beats.flow().with_hooks(hooks)
    beats.fail_at = "left"
    with pytest.raises(BeatError):
        await flow.run(Order(), run_id="h1", store=store)
    assert hooks.seen == [
        "start checkout total=0",
        "add",
        "wait",
        "par.left",
        "par.right",
        "end checkout BeatError",
    ]
    hooks.seen.clear()
    beats.fail_at = None
    await flow.run(Order(), run_id="h1", store=store)
    # The resumed run starts on the committed context and reports only the steps it runs.
    assert hooks.seen == [
        "start checkout total=20",
        "par.left",
        "par.right",
        "last",
        "end checkout ok",
    ]
    hooks.seen.clear()
    await flow.run(Order(), run_id="h1", store=store)
    assert hooks.seen == []  # a finished run runs nothing, hooks included


async def test_a_store_lost_mid_run_fails_the_run_and_leaves_it_resumable(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    beats = Beats()
    real = store.checkpoint
    lost = {"on": True}

    async def flaky_checkpoint(run_id: str, owner: str, **kwargs: Any) -> None:
        if lost["on"] and kwargs["position"] == 2:
            raise StoreError(run_id, f"run {run_id!r}: the disk is full")
        await real(run_id, owner, **kwargs)

    async def broken_release(run_id: str, owner: str) -> None:
        raise StoreError(run_id, "still unavailable")

    monkeypatch.setattr(store, "checkpoint", flaky_checkpoint)
    monkeypatch.setattr(store, "release", broken_release)
    with pytest.raises(StoreError, match="the disk is full"):
        await beats.flow().run(Order(), run_id="lost", store=store)
    record = await store.get("lost")
    assert record is not None
    assert (record.status, record.position) == ("running", 1)  # the last commit, whole
    monkeypatch.undo()
    beats.calls.clear()
    # Same process: the failed attempt is over, so its run is taken over at once.
    assert await beats.flow().run(Order(), run_id="lost", store=store) == EXPECTED
    assert beats.calls == ["wait", "left", "right", "last"]


async def test_a_field_a_beat_deleted_stays_deleted_across_a_resume(store: SQLiteStore) -> None:
    failing = [True]

    async def drop(ctx: Order) -> None:
        del ctx.items

    async def flaky(ctx: Order) -> None:
        if failing:
            failing.clear()
            raise ConnectionError("down")
        ctx.total = 2

    flow = Cadence("drops", Order()).then("drop", drop).then("flaky", flaky)
    with pytest.raises(BeatError):
        await flow.run(run_id="r12", store=store)
    resumed = await flow.run(run_id="r12", store=store)  # from the commit after `drop`
    stored = await flow.run(run_id="r12", store=store)  # finished: its stored result
    for result in (resumed, stored):
        assert not hasattr(result, "items")
        assert result.total == 2


@dataclass
class Notes(Context):
    log: AtomicList[str] = field(default_factory=AtomicList[str])
    seen: dict[str, int] = field(default_factory=dict[str, int])


async def test_a_child_sharing_its_parents_containers_goes_on_sharing_them_on_resume(
    store: SQLiteStore,
) -> None:
    failing = [True]

    async def start(ctx: Notes) -> None:
        ctx.log.append("parent")

    async def one(ctx: Notes) -> None:
        ctx.log.append("one")
        ctx.seen["one"] = 1

    async def two(ctx: Notes) -> None:
        if failing:
            failing.clear()
            raise ConnectionError("down")
        ctx.log.append("two")

    inner = Cadence("inner", context_type=Notes).then("one", one).then("two", two)
    flow = (
        Cadence("shares", Notes())
        .then("start", start)
        .child(
            "sub",
            inner,
            context=lambda p: Notes(log=p.log, seen=p.seen),  # the parent's own containers
            merge=lambda p, sub: p,  # nothing to merge: the child wrote into them
        )
    )
    with pytest.raises(BeatError):
        await flow.run(run_id="r13", store=store)
    resumed = await flow.run(run_id="r13", store=store)  # inside the child, at `two`
    plain = await flow.run()
    assert (list(resumed.log), resumed.seen) == (list(plain.log), plain.seen)
    assert list(resumed.log) == ["parent", "one", "two"]
