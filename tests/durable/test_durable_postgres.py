"""PostgresStore, enqueue and Worker against a real PostgreSQL server started by the test."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import itertools
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString, cast

import anyio
import pytest
import sniffio

from cadence import BeatError, Cadence, CadenceDefinitionError, Context
from cadence.durable import (
    Claim,
    LeaseLostError,
    NewRun,
    PlanChangedError,
    PostgresStore,
    RunDecodeError,
    RunRecord,
    SQLiteStore,
    StoreError,
    Worker,
    _postgres,
    enqueue,
)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(Path(__file__).parent))

from pg_worker import QUEUED, Job, make_beat  # noqa: E402 # the worker module beside this file

ODD = 'old "1", {x}\\y'  # a run id with a quote, a comma, braces and a backslash


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for version in ("17", "16", "15", "14"):
        candidate = Path(f"/usr/lib/postgresql/{version}/bin/{name}")
        if candidate.exists():
            return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Server:
    """A PostgreSQL server of the tests' own: its DSN, and `pg_ctl` to restart, stop, start it."""

    dsn: str
    control: list[str]  # pg_ctl with its data directory and options, as the server's user

    def restart(self, mode: str) -> None:  # pg_ctl's shutdown mode: "fast", "immediate"
        subprocess.run([*self.control, "-m", mode, "restart"], check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run([*self.control, "-m", "fast", "stop"], check=True, capture_output=True)

    def start(self) -> None:
        subprocess.run([*self.control, "start"], check=True, capture_output=True)


@contextlib.contextmanager
def _postgres_server() -> Generator[_Server]:
    """Start a server on 127.0.0.1 (the machine's `initdb`/`pg_ctl`), stop it after."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed")
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="cadence-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        as_user = [runuser, "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    data, log = base / "data", base / "log"
    port = _free_port()
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    control = [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w"]
    subprocess.run([*control, "start"], check=True, capture_output=True)
    try:
        yield _Server(f"postgresql://postgres@127.0.0.1:{port}/postgres", control)
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with _postgres_server() as started:
        yield started.dsn


_databases = itertools.count()


@pytest.fixture
def dsn(server: str) -> str:
    """A database of the test's own on the module's server: run ids never meet another test's."""
    import psycopg  # noqa: PLC0415 # the fixture's own connection

    name = f"cadence_{next(_databases)}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + f"/{name}"


async def _sql(dsn: str, statement: LiteralString) -> list[tuple[object, ...]]:
    """Run one statement on a connection of the test's own (on a thread: either backend)."""
    import psycopg  # noqa: PLC0415 # the test's own connection

    def run() -> list[tuple[object, ...]]:
        with psycopg.connect(dsn, autocommit=True) as connection:
            cursor = connection.execute(statement)
            return list(cursor.fetchall()) if cursor.description else []

    return await anyio.to_thread.run_sync(run)


def _one_step(cadence: str, **extra: bool) -> NewRun:
    """A new run of one step `a` of `cadence`, for the store's calls made by hand."""
    return NewRun(cadence, ("then a",), "f", b"{}", "a", **extra)


async def _work_until(
    worker: Worker, store: PostgresStore, run_id: str, status: str, *, then: float = 0.0
) -> None:
    """Run `worker` until run `run_id` is `status` (and `then` seconds more), then stop it."""
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(worker.run, handle_signals=False))
            while (record := await store.get(run_id)) is None or record.status != status:  # noqa: ASYNC110 # the store is the only signal
                await anyio.sleep(0.01)
            await anyio.sleep(then)
            worker.stop()


async def _in_the_stores_session(store: PostgresStore, sql: LiteralString) -> list[Any]:
    """Run `sql` on the store's own pooled connection (on its loop thread, under trio)."""
    fetch = store._fetch("", "asking", sql)  # pyright: ignore[reportPrivateUsage] # its session
    if sniffio.current_async_library() == "trio":
        return await store._on_loop_thread(fetch)  # pyright: ignore[reportPrivateUsage] # as above
    return await fetch


async def test_a_run_resumes_and_returns_its_result(dsn: str) -> None:
    store = PostgresStore(dsn)
    calls: list[str] = []
    failing = {"c"}

    def beat(name: str) -> Callable[[Job], Awaitable[None]]:
        inner = make_beat(name)

        async def run(ctx: Job) -> None:
            calls.append(name)
            if name in failing:
                raise RuntimeError(name)
            await inner(ctx)

        return run

    flow = Cadence("pg", Job())
    for name in "abcd":
        flow = flow.then(name, beat(name))
    with pytest.raises(BeatError):
        await flow.run(run_id="p1", store=store)
    record = await store.get("p1")
    assert record is not None
    assert (record.status, record.position, record.step) == ("failed", 2, "c")
    assert record.error is not None
    assert record.error.cause is not None
    assert record.error.cause.message == "c"
    failing.clear()
    calls.clear()
    result = await flow.run(run_id="p1", store=store)
    assert calls == ["c", "d"]
    assert result == Job(n=15, trail=["a", "b", "c", "d"])
    calls.clear()
    assert await flow.run(run_id="p1", store=store) == result
    assert calls == []
    renamed = Cadence("pg", Job()).then("a", beat("a")).then("bb", beat("b"))
    failing.add("bb")
    first_plan = Cadence("pg", Job()).then("a", beat("a")).then("b", beat("bb"))
    with pytest.raises(BeatError):
        await first_plan.run(run_id="p2", store=store)
    with pytest.raises(PlanChangedError, match="step 2 was 'then b' and is now 'then bb'"):
        await renamed.run(run_id="p2", store=store)
    refused = await store.get("p2")
    assert refused is not None
    assert (refused.status, refused.attempts, refused.owner) == ("failed", 1, None)  # as it was
    assert [r.run_id for r in await store.list_runs(status="completed")] == ["p1"]
    assert await store.cancel("p2")
    assert await store.delete("p2")
    await store.aclose()


def _handed_over(entries: list[tuple[str, str, str]], killed: set[str]) -> bool:
    """Check one run's log of (step, worker, start or end); return whether it changed worker.

    A run changes worker only when its worker was killed (never two live workers on it), and
    the taker goes on at the step in flight or the next one: a step the killed worker had
    committed never runs again, and one worker runs each step once.
    """
    order = [step.name for step in QUEUED.steps]
    owners = [pid for _, pid, _ in entries]
    switches = [a for a, b in itertools.pairwise(owners) if a != b]
    assert all(pid in killed for pid in switches), entries
    starts = [(order.index(step), pid) for step, pid, edge in entries if edge == "start"]
    for (step, pid), (next_step, next_pid) in itertools.pairwise(starts):
        assert next_step in ((step, step + 1) if pid != next_pid else (step + 1,)), entries
    assert starts[-1][0] == len(order) - 1, entries  # it ran to its last step
    return bool(switches)


async def test_workers_share_the_queue_and_recover_a_killed_workers_runs(
    dsn: str, tmp_path: Path, anyio_backend: str
) -> None:
    store = PostgresStore(dsn)
    count = 200
    for i in range(count):
        assert await enqueue(QUEUED, Job(n=i), run_id=f"q{i}", store=store)
    assert not await enqueue(QUEUED, Job(), run_id="q0", store=store)
    log = tmp_path / "log"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    worker = Path(__file__).with_name("pg_worker.py")
    workers = [  # started once, not awaited: the test only polls them
        subprocess.Popen(  # noqa: ASYNC220 # started once and polled, never awaited
            [sys.executable, str(worker), dsn, str(log), anyio_backend],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    doomed, survivors = workers[:2], workers[2:]
    deadline = time.monotonic() + 120
    steps = len(QUEUED.steps)
    for share, victim in zip((0.2, 0.4), doomed, strict=True):  # a fifth, then two fifths in
        while True:
            text = log.read_text() if log.exists() else ""
            if text.count(" end\n") >= share * count * steps and f" {victim.pid} " in text:
                break
            assert time.monotonic() < deadline
            await anyio.sleep(0.01)
        os.kill(victim.pid, signal.SIGKILL)  # mid-run: it holds runs with live leases
        victim.communicate(timeout=30)
    killed_pids = {str(victim.pid) for victim in doomed}
    try:
        while True:
            done = await store.list_runs(status="completed", cadence="queued", limit=1000)
            if len(done) == count:
                break
            assert time.monotonic() < deadline, f"{len(done)} of {count} completed"
            await anyio.sleep(0.1)
    finally:
        for process in survivors:
            process.send_signal(signal.SIGTERM)
        errors = [process.communicate(timeout=30)[1] for process in survivors]
    assert [p.returncode for p in survivors] == [0, 0], errors  # SIGTERM: a graceful stop

    for record in done:
        i = int(record.run_id[1:])
        expected = i
        for _ in range(5):
            expected = expected * 2 + 1
        assert record.context is not None
        assert f'"n":{expected},' in record.context.decode()
    lines = [line.split() for line in log.read_text().splitlines()]
    by_run: dict[str, list[tuple[str, str, str]]] = {}
    for run_id, step, pid, edge in lines:
        by_run.setdefault(run_id, []).append((step, pid, edge))
    resumed = sum(_handed_over(entries, killed_pids) for entries in by_run.values())
    assert resumed >= 2  # both killed workers' runs were taken over when their leases ran out
    await store.aclose()


async def test_a_worker_whose_lease_is_taken_tells_lease_lost(dsn: str) -> None:
    from cadence.durable import LeaseLostError  # noqa: PLC0415 # the test's own
    from cadence.events import CadenceEvent, LeaseLost, RunClaimed, RunFailed  # noqa: PLC0415 # as above

    store = PostgresStore(dsn, lease=0.3)
    events: list[CadenceEvent] = []

    async def steal(ctx: Job) -> None:
        await _sql(dsn, "UPDATE cadence_runs SET owner = 'thief' WHERE run_id = 'lost-1'")
        await anyio.sleep_forever()  # cancelled when the heartbeat finds the lease gone

    told = anyio.Event()

    def listener(event: CadenceEvent) -> None:
        events.append(event)
        if isinstance(event, LeaseLost):
            told.set()

    flow = Cadence("stealing", Job()).then("steal", steal).with_listener(listener)
    assert await enqueue(flow, Job(n=3), run_id="lost-1", store=store)
    worker = Worker(store, [flow], concurrency=1, idle=0.01)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(worker.run, handle_signals=False))
            await told.wait()
            worker.stop()  # returns once the run has ended
    claimed = events[0]
    assert isinstance(claimed, RunClaimed)
    assert (claimed.run_id, claimed.attempt, claimed.new) == ("lost-1", 1, True)
    lost = next(e for e in events if isinstance(e, LeaseLost))
    assert (lost.run_id, lost.cadence, lost.owner) == ("lost-1", "stealing", claimed.owner)
    assert isinstance(lost.error, LeaseLostError)
    assert "run 'lost-1': this caller lost the run (it is running, owned by thief)" in str(
        lost.error
    )
    assert "found by the heartbeat" in str(lost.error)
    # The run ends failed by the lost lease, told before it ends: not as a cancelled run.
    kinds = [type(e).__name__ for e in events]
    assert "RunCancelled" not in kinds
    assert kinds.index("LeaseLost") < kinds.index("RunFailed")
    failed = events[kinds.index("RunFailed")]
    assert isinstance(failed, RunFailed)
    assert isinstance(failed.error, LeaseLostError)
    record = await store.get("lost-1")
    assert record is not None
    assert (record.status, record.owner) == ("running", "thief")  # the thief's, untouched
    await store.aclose()


async def test_a_lease_lost_while_a_beats_own_tasks_fail_as_they_stop_is_a_lost_lease(
    dsn: str,
) -> None:
    from cadence.events import CadenceEvent, RunFailed  # noqa: PLC0415 # the test's own

    store = PostgresStore(dsn, lease=0.3)
    events: list[CadenceEvent] = []

    async def cleans_up_badly() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            raise ValueError("cleanup failed")  # a task failing as it is cancelled

    async def steal(ctx: Job) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(cleans_up_badly)
            await _sql(dsn, "UPDATE cadence_runs SET owner = 'thief' WHERE run_id = 'tg-1'")
            await anyio.sleep_forever()  # cancelled when the heartbeat finds the lease gone

    flow = Cadence("grouped", Job()).then("steal", steal).with_listener(events.append)
    with anyio.fail_after(30), pytest.raises(LeaseLostError, match="found by the heartbeat") as got:
        await flow.run(Job(), run_id="tg-1", store=store)
    # Caused by what the beat's tasks raised: their group as the beat's failure (asyncio), or
    # the group with the cancellation in it (trio).
    assert isinstance(got.value.__cause__, BeatError | BaseExceptionGroup)
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("LeaseLost") == 1
    assert kinds[-2:] == ["LeaseLost", "RunFailed"]
    failed = events[-1]
    assert isinstance(failed, RunFailed)
    assert isinstance(failed.error, LeaseLostError)
    record = await store.get("tg-1")
    assert record is not None
    assert (record.status, record.owner) == ("running", "thief")  # not marked failed by us
    await store.aclose()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_sigterm_or_sigint_hands_back_the_runs_still_running_after_the_grace(
    dsn: str, signum: signal.Signals
) -> None:
    from cadence.events import CadenceEvent, RunClaimed  # noqa: PLC0415 # the test's own

    store = PostgresStore(dsn)  # a 30 s lease: only the hand-back lets another take it now
    entered = anyio.Event()
    calls: list[str] = []

    async def stuck(ctx: Job) -> None:
        calls.append("stuck")
        entered.set()
        await anyio.sleep_forever()  # never finishes: the grace runs out

    ran = anyio.Event()

    async def quick(ctx: Job) -> None:
        calls.append("quick")
        ctx.n += 100
        ran.set()

    events: list[CadenceEvent] = []
    first = Cadence("handback", Job()).then("a", make_beat("a")).then("b", stuck)
    assert await enqueue(first, Job(n=1), run_id="hb-1", store=store)
    worker = Worker(store, [first], concurrency=2, idle=0.01, grace=0.05)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)  # handles SIGTERM and SIGINT (Ctrl-C) itself
            await entered.wait()
            os.kill(os.getpid(), signum)
    record = await store.get("hb-1")
    assert record is not None
    assert (record.status, record.owner, record.position, record.step) == ("pending", None, 1, "b")
    assert calls == ["stuck"]

    second = (
        Cadence("handback", Job())
        .then("a", make_beat("a"))
        .then("b", quick)
        .with_listener(events.append)
    )
    other = Worker(store, [second], concurrency=1, idle=0.01)
    with anyio.fail_after(20):  # well inside the 30 s lease: the run was handed back
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(other.run, handle_signals=False))
            await ran.wait()
            other.stop()  # returns once the run in hand has finished
    done = await store.get("hb-1")
    assert done is not None
    assert done.status == "completed"
    assert calls == ["stuck", "quick"]  # "a" committed before the stop: not run again
    assert done.attempts == 2
    assert done.context is not None
    assert b'"n":103' in done.context  # a: 1 * 2 + 1, then quick: + 100
    claimed = next(e for e in events if isinstance(e, RunClaimed))
    assert (claimed.run_id, claimed.attempt, claimed.new, claimed.position) == ("hb-1", 2, False, 1)
    await store.aclose()


async def test_a_caller_waiting_on_a_run_that_fails_gets_the_failure(dsn: str) -> None:
    from cadence.durable import RunFailedError  # noqa: PLC0415 # the test's own

    store = PostgresStore(dsn, poll_interval=0.01)
    gate, entered = anyio.Event(), anyio.Event()
    calls: list[str] = []

    async def charge(ctx: Job) -> None:
        calls.append("charge")
        entered.set()
        await gate.wait()
        raise RuntimeError("card declined")

    flow = Cadence("waiting", Job()).then("a", make_beat("a")).then("charge", charge)
    outcomes: dict[str, BaseException] = {}

    async def call(name: str) -> None:
        try:
            await flow.run(Job(), run_id="w-1", store=store)
        except Exception as exc:  # recorded and asserted below
            outcomes[name] = exc

    async with anyio.create_task_group() as group:
        group.start_soon(call, "runner")
        await entered.wait()
        group.start_soon(call, "waiter")  # finds the run busy and waits for it
        await anyio.sleep(0.1)
        gate.set()
    assert calls == ["charge"]  # the waiter did not run it again
    assert isinstance(outcomes["runner"], BeatError)
    waited = outcomes["waiter"]
    assert type(waited) is RunFailedError
    assert waited.step == "charge"
    assert waited.run_id == "w-1"
    assert "run 'w-1' of cadence 'waiting' failed at step 'charge'" in str(waited)
    assert "RuntimeError: card declined" in str(waited)
    record = await store.get("w-1")
    assert record is not None
    assert (record.status, record.attempts, record.owner) == ("failed", 1, None)
    gate, calls[:] = anyio.Event(), []
    gate.set()
    with pytest.raises(BeatError):  # a later call retries it: failed runs stay resumable
        await flow.run(Job(), run_id="w-1", store=store)
    assert calls == ["charge"]
    await store.aclose()


async def test_a_direct_run_keeps_its_lease_through_a_long_step(dsn: str) -> None:
    store = PostgresStore(dsn, lease=0.3)
    rival = PostgresStore(dsn, lease=0.3)
    seen: list[str] = []

    async def slow(ctx: Job) -> None:
        # Four leases long: without a heartbeat the rival would take the run over.
        new = NewRun("long", ("then slow",), "x", b"{}", "slow")
        for _ in range(12):
            await anyio.sleep(0.1)
            seen.append((await rival.claim("long-1", rival.new_owner(), new)).outcome)
        found = await _sql(
            dsn, "SELECT lease_until > now() FROM cadence_runs WHERE run_id = 'long-1'"
        )
        assert found == [(True,)]
        ctx.n = 7

    flow = Cadence("long", Job()).then("slow", slow)
    assert await flow.run(Job(), run_id="long-1", store=store) == Job(n=7)
    assert seen == ["busy"] * 12
    record = await store.get("long-1")
    assert record is not None
    assert (record.status, record.attempts) == ("completed", 1)
    await store.aclose()
    await rival.aclose()


class _Line:
    """A TCP line to the server that can be cut (nothing passes, nothing is refused) and mended.

    What a network partition looks like to a client: its sockets stay open and go silent.
    """

    def __init__(self, port: int) -> None:
        self._to = port
        self._open = threading.Event()
        self._open.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._open.clear()

    def mend(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._open.set()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._to))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with source, sink:
            while True:
                try:
                    data = source.recv(65536)
                except OSError:
                    return
                self._open.wait()  # a cut line holds what it got
                if not data:
                    return
                try:
                    sink.sendall(data)
                except OSError:
                    return


async def test_a_run_cut_off_from_the_database_stops_before_another_caller_takes_it(
    dsn: str,
) -> None:
    """A lease the heartbeat cannot renew is given up in time: the step never runs twice at once."""
    port = int(dsn.rsplit(":", 1)[1].split("/", 1)[0])
    line = _Line(port)
    store = PostgresStore(dsn.replace(f":{port}/", f":{line.port}/"), lease=1.0)
    rival = PostgresStore(dsn, lease=1.0)
    seen: list[tuple[str, float]] = []
    started = anyio.Event()

    async def charge(ctx: Job) -> None:
        seen.append(("start", time.monotonic()))
        started.set()
        try:
            await anyio.sleep(3 if len(seen) == 1 else 0.5)  # the first caller's is long
        except anyio.get_cancelled_exc_class():
            seen.append(("stopped", time.monotonic()))
            raise
        seen.append(("end", time.monotonic()))
        ctx.n += 1

    flow = Cadence("cut", Job()).then("charge", charge)
    lost: list[BaseException] = []

    async def first() -> None:
        try:
            await flow.run(Job(), run_id="cut-1", store=store)
        except LeaseLostError as exc:
            lost.append(exc)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            group.start_soon(first)
            await started.wait()
            line.cut()  # the first caller's heartbeat now goes nowhere
            assert await flow.run(Job(), run_id="cut-1", store=rival) == Job(n=1)
            line.mend()
    kinds = [kind for kind, _ in seen]
    assert kinds == ["start", "stopped", "start", "end"]
    assert seen[1][1] < seen[2][1]  # stopped before the other caller began it
    assert seen[1][1] - seen[0][1] < 1.0  # within the lease
    assert len(lost) == 1
    record = await rival.get("cut-1")
    assert record is not None
    assert (record.status, record.attempts) == ("completed", 2)
    await store.aclose()
    await rival.aclose()
    line.close()


async def test_a_checkpoint_renews_only_a_lease_half_spent_and_updates_its_row_in_place(
    dsn: str,
) -> None:
    store = PostgresStore(dsn, lease=30.0)
    seen: list[tuple[object, ...]] = []
    query: LiteralString = (
        "SELECT lease_until, extract(epoch FROM lease_until - now()) FROM cadence_runs "
        "WHERE run_id = 'lease-1'"
    )

    async def look(ctx: Job) -> None:
        [row] = await _sql(dsn, query)
        seen.append(row)
        if len(seen) == 3:  # twelve of the thirty seconds left: just over half spent
            await _sql(
                dsn,
                "UPDATE cadence_runs SET lease_until = now() + interval '12 seconds' "
                "WHERE run_id = 'lease-1'",
            )
        ctx.n += 1

    flow = Cadence("lease", Job())
    for name in "abcde":
        flow = flow.then(name, look)
    assert await flow.run(Job(), run_id="lease-1", store=store) == Job(n=5)
    await store.aclose()  # its sessions end, and report their statistics as they do
    claimed, first, second, renewed, kept = seen
    assert claimed[0] == first[0] == second[0]  # checkpoints left a fresh lease as it was
    assert float(str(renewed[1])) > 25  # the next checkpoint renewed the one set to 12 s
    assert kept[0] == renewed[0]
    # Of the five updates (four checkpoints, the finish) and the test's own, the three
    # checkpoints that kept the lease changed no indexed column: updated in place (HOT).
    counts: LiteralString = (
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'cadence_runs'"
    )
    with anyio.fail_after(20):
        while (found := await _sql(dsn, counts)) != [] and found[0][0] != 6:  # noqa: ASYNC110 # the server's statistics: nothing to wait on but them
            await anyio.sleep(0.1)
    assert found == [(6, 3)]


async def test_a_claim_takes_an_expired_run_of_its_cadences_first_then_the_oldest_pending(
    dsn: str,
) -> None:
    store = PostgresStore(dsn)

    for run_id in ("a1", "b1", "c1", "a2", "b2"):
        assert await store.enqueue_row(run_id, _one_step(run_id[0]))

    async def claimed(*, skip: tuple[str, ...] = ()) -> str | None:
        owner = store.new_owner()
        record = await store.claim_next(["a", "b"], owner, skip=skip)
        store.done(owner)  # its connection back to the pool: the run stays claimed
        return None if record is None else record.run_id

    assert await claimed() == "a1"
    assert await claimed() == "b1"
    assert await claimed(skip=("a2",)) == "b2"
    assert await claimed(skip=("a2",)) is None  # c1 is another cadence's
    await _sql(  # a1, b1 and b2's workers died: their leases ran out, in that order
        dsn,
        "UPDATE cadence_runs SET lease_until = now() - interval '1 second' * "
        "CASE run_id WHEN 'a1' THEN 3 WHEN 'b2' THEN 2 ELSE 1 END "
        "WHERE run_id IN ('a1', 'b1', 'b2')",
    )
    # Expired runs first (work in progress whose owner died), earliest lease first.
    assert await claimed() == "a1"
    assert await claimed() == "b2"  # expired before b1 (by lease, not by age)
    assert await claimed() == "b1"  # before a2, pending and older
    assert await claimed() == "a2"
    assert await claimed() is None  # the fresh leases hold
    found = await _sql(dsn, "SELECT run_id, attempts FROM cadence_runs ORDER BY run_id")
    assert found == [("a1", 2), ("a2", 1), ("b1", 2), ("b2", 2), ("c1", 0)]
    await store.aclose()


async def test_a_worker_looks_for_expired_leases_until_it_finds_none_then_now_and_then(
    dsn: str,
) -> None:
    looked: list[tuple[float, bool]] = []  # when each claim began, and whether it looked

    class Spied(PostgresStore):
        async def _claim_next(
            self, cadences: Sequence[str], owner: str, *, skip: Sequence[str], expired: bool
        ) -> tuple[RunRecord | None, bool]:
            looked.append((anyio.current_time(), expired))
            return await super()._claim_next(cadences, owner, skip=skip, expired=expired)

    store = Spied(dsn, lease=0.9)  # a look every 0.3 s
    for run_id in ("dead-1", "dead-2", "back-1"):
        assert await enqueue(QUEUED, Job(), run_id=run_id, store=store)
        assert await store.claim_next(["queued"], "a-worker-that-died") is not None
    await store.release("back-1", "a-worker-that-died")  # handed back: pending, attempts 1
    await _sql(  # the other two were held by a worker that died: their leases ran out
        dsn,
        "UPDATE cadence_runs SET lease_until = now() - interval '1 second' * "
        "CASE run_id WHEN 'dead-1' THEN 2 ELSE 1 END WHERE run_id LIKE 'dead-%'",
    )
    for i in range(4):
        assert await enqueue(QUEUED, Job(), run_id=f"fresh-{i}", store=store)
    looked.clear()  # the claims above are the test's own
    worker = Worker(store, [QUEUED], concurrency=1, idle=0.01)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(worker.run, handle_signals=False))
            while len(await store.list_runs(status="completed")) < 7:  # noqa: ASYNC110 # the store's rows: nothing to wait on but them
                await anyio.sleep(0.05)
            await anyio.sleep(max(0.0, looked[2][0] + 0.8 - anyio.current_time()))  # idle
            worker.stop()
    order = [r.run_id for r in sorted(await store.list_runs(), key=lambda r: r.updated_at)]
    assert order[:3] == ["dead-1", "dead-2", "back-1"]  # the oldest first
    # Two runs taken over, the look that took a handed-back run (attempts 2, but no expired
    # lease), then pending runs only, and again a look every third of the lease.
    flags = [expired for _, expired in looked]
    assert flags[:4] == [True, True, True, False]
    looks = [at for at, expired in looked[2:] if expired]
    assert len(looks) >= 2  # looked again while idle
    assert all(b - a >= 0.25 for a, b in itertools.pairwise(looks))  # never on every claim
    store.done("a-worker-that-died")
    await store.aclose()
    assert not store._sockets  # pyright: ignore[reportPrivateUsage] # none left watched


def _queue_rows(dsn: str, cadences: int, runs: int) -> None:
    """Queue `runs` pending rows for each of `cadences` cadences (`c0`...), straight in SQL,
    and as many running ones whose lease ran out (their worker died), made later."""
    import psycopg  # noqa: PLC0415 # the test's own connection

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO cadence_runs (run_id, cadence, status, position, plan, fingerprint, "
            "attempts, owner, lease_until, created_at) SELECT 'r' || i, 'c' || (i %% %s), "
            "CASE WHEN i <= %s THEN 'pending' ELSE 'running' END, 0, '[]', 'f', 0, "
            "CASE WHEN i > %s THEN 'dead' END, "
            "CASE WHEN i > %s THEN now() - interval '1 minute' + i * interval '1 ms' END, "
            "now() + i * interval '1 microsecond' FROM generate_series(1, %s) AS i",
            (cadences, cadences * runs, cadences * runs, cadences * runs, 2 * cadences * runs),
        )


async def test_a_claim_reads_and_locks_one_run_however_many_are_queued(dsn: str) -> None:
    import psycopg  # noqa: PLC0415 # the test's own connections

    store = PostgresStore(dsn)
    assert await store.get("any") is None  # the schema
    await store.aclose()
    names = [f"c{i}" for i in range(20)]

    def claim_and_look() -> tuple[list[int], list[int]]:
        _queue_rows(dsn, 20, 250)  # 5000 of each, and no statistics: the planner's worst case
        values = (names, [], [], names, [], [], "worker", 30.0)
        with psycopg.connect(dsn) as claiming, psycopg.connect(dsn, autocommit=True) as other:
            plan = claiming.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + _postgres._CLAIM_NEXT.query,  # pyright: ignore[reportPrivateUsage] # the statement under test
                values,
            ).fetchone()
            assert plan is not None
            claiming.rollback()
            claiming.execute(_postgres._CLAIM_NEXT.query, values)  # pyright: ignore[reportPrivateUsage] # as above
            free = [  # while the claim's transaction holds its locks
                int(row[0])
                for status in ("pending", "running")
                if (
                    row := other.execute(
                        "SELECT count(*) FROM (SELECT FROM cadence_runs WHERE status = %s "
                        "FOR UPDATE SKIP LOCKED) AS free",
                        (status,),
                    ).fetchone()
                )
                is not None
            ]
            claiming.rollback()

        def rows(node: dict[str, Any]) -> list[int]:
            read = [int(node["Actual Rows"]) * int(node.get("Actual Loops", 1))]
            return read + [n for child in node.get("Plans", []) for n in rows(child)]

        return rows(plan[0][0]["Plan"]), free

    read, free = await anyio.to_thread.run_sync(claim_and_look)
    assert max(read) <= 20  # one step into each cadence's index: no node read either kind
    # The claimed (oldest, pending) run and the expired one its look found are locked, not
    # each cadence's oldest of either kind.
    assert free == [4999, 4999]


async def test_a_cancelled_run_is_kept_until_its_owner_lets_go_of_its_lease(dsn: str) -> None:
    store = PostgresStore(dsn)
    claim = await store.claim("held-1", "owner-1", _one_step("c"))
    assert claim.outcome == "created"
    leased: LiteralString = "SELECT status, owner, lease_until IS NULL FROM cadence_runs"
    assert await _sql(dsn, leased) == [("running", "owner-1", False)]
    assert await store.cancel("held-1")
    # Its owner may still be in its step: deleted now, a later call could start it anew.
    assert await _sql(dsn, leased) == [("cancelled", "owner-1", False)]
    assert not await store.delete("held-1")
    assert await store.prune(datetime.timedelta(0)) == 0
    await store.release("held-1", "owner-1")  # the owner, stopped, lets go of it
    assert await _sql(dsn, leased) == [("cancelled", None, True)]
    assert await store.delete("held-1")
    store.done("owner-1")
    await store.aclose()


async def test_a_run_cancelled_in_its_step_is_let_go_of_as_it_stops(dsn: str) -> None:
    from cadence.durable import RunCancelledError  # noqa: PLC0415 # the test's own

    store = PostgresStore(dsn)  # a lease of 30 s: its heartbeat does not look meanwhile
    cancelled, go_on = anyio.Event(), anyio.Event()

    async def wait(ctx: Job) -> None:
        assert await store.cancel("cx-2")
        cancelled.set()
        await go_on.wait()

    flow = Cadence("let-go", Job()).then("wait", wait).then("after", lambda ctx: None)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:

            async def look() -> None:
                await cancelled.wait()
                assert not await store.delete("cx-2")
                go_on.set()

            group.start_soon(look)
            with pytest.raises(RunCancelledError, match="run 'cx-2' was cancelled"):
                await flow.run(Job(), run_id="cx-2", store=store)
    assert await _sql(dsn, "SELECT status, owner FROM cadence_runs") == [("cancelled", None)]
    assert await store.delete("cx-2")
    await store.aclose()


async def test_the_schema_is_migrated_from_its_first_version(dsn: str) -> None:
    store = PostgresStore(dsn)
    assert await enqueue(QUEUED, Job(n=1), run_id="old-pending", store=store)
    assert await enqueue(QUEUED, Job(), run_id="old-cancelled", store=store)
    assert await store.cancel("old-cancelled")
    await store.aclose()
    # The database as the first schema left it: the table and its first index, version 1, a
    # cancelled run still holding the lease it had (the first schema did not clear it).
    await _sql(
        dsn,
        "DROP INDEX cadence_runs_queue; DROP INDEX cadence_runs_held; "
        "CREATE INDEX cadence_runs_claim ON cadence_runs (cadence, status, created_at); "
        "ALTER TABLE cadence_runs RESET "
        "(fillfactor, autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold); "
        "UPDATE cadence_runs SET lease_until = now() WHERE run_id = 'old-cancelled'; "
        "UPDATE cadence_meta SET value = '1' WHERE key = 'schema_version'",
    )
    store = PostgresStore(dsn)
    assert await QUEUED.run(Job(), run_id="old-pending", store=store) == Job(
        n=63, trail=["a", "b", "c", "d", "e"]
    )
    await store.aclose()
    indexes = await _sql(
        dsn, "SELECT indexname FROM pg_indexes WHERE tablename = 'cadence_runs' ORDER BY 1"
    )
    assert indexes == [("cadence_runs_held",), ("cadence_runs_pkey",), ("cadence_runs_queue",)]
    assert await _sql(dsn, "SELECT value FROM cadence_meta") == [(str(_postgres.SCHEMA_VERSION),)]
    assert await _sql(dsn, "SELECT reloptions FROM pg_class WHERE relname = 'cadence_runs'") == [
        (
            [
                "fillfactor=70",
                "autovacuum_vacuum_scale_factor=0",
                "autovacuum_vacuum_threshold=10000",
            ],
        )
    ]
    assert await _sql(
        dsn, "SELECT lease_until FROM cadence_runs WHERE run_id = 'old-cancelled'"
    ) == [(None,)]


async def test_a_schema_newer_than_the_store_is_refused_by_name(dsn: str) -> None:
    store = PostgresStore(dsn)
    assert await store.get("any") is None
    await store.aclose()
    await _sql(dsn, "UPDATE cadence_meta SET value = '99' WHERE key = 'schema_version'")
    store = PostgresStore(dsn)
    known = _postgres.SCHEMA_VERSION
    with pytest.raises(StoreError, match=f"schema version 99; this cadence knows up to {known}"):
        await store.get("any")
    await store.aclose()


async def test_the_claim_tells_a_new_run_from_a_taken_over_one(dsn: str) -> None:
    store = PostgresStore(dsn, lease=0.05)
    new = NewRun("claims", ("then a",), "f", b'{"n":1,"trail":[]}', "a")
    first = await store.claim("c-1", "owner-1", new)
    assert (first.outcome, first.record.attempts, first.record.owner) == ("created", 1, "owner-1")
    assert first.previous is None
    assert (await store.claim("c-1", "owner-2", new)).outcome == "busy"
    await anyio.sleep(0.2)  # the lease runs out (nobody renews it)
    taken = await store.claim("c-1", "owner-2", new)
    assert (taken.outcome, taken.record.attempts, taken.record.owner) == ("claimed", 2, "owner-2")
    assert taken.previous == "running"
    await store.finish("c-1", "owner-2", status="failed", context=None, error=None)
    waiting = _one_step("claims", resume_failed=False)
    assert (await store.claim("c-1", "owner-3", waiting)).outcome == "failed"
    again = await store.claim("c-1", "owner-3", new)
    assert (again.outcome, again.previous, again.record.attempts) == ("claimed", "failed", 3)
    await store.release("c-1", "owner-3", undo="failed")
    undone = await store.get("c-1")
    assert undone is not None
    assert (undone.status, undone.attempts, undone.owner) == ("failed", 2, None)
    store.done("owner-1")
    store.done("owner-2")
    store.done("owner-3")
    await store.aclose()


async def test_a_worker_survives_a_corrupted_row_and_a_changed_plan(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresStore(dsn)
    ran = anyio.Event()

    async def last(ctx: Job) -> None:
        ctx.n += 1
        ran.set()

    flow = Cadence("mixed", Job()).then("a", make_beat("a")).then("last", last)
    older = Cadence("mixed", Job()).then("a", make_beat("a")).then("gone", last)
    assert await enqueue(flow, Job(), run_id="bad-1", store=store)
    assert await enqueue(older, Job(), run_id=ODD, store=store)  # refused ids go as text[]
    assert await enqueue(flow, Job(n=4), run_id="good-1", store=store)
    await _sql(dsn, "UPDATE cadence_runs SET plan = 'not json' WHERE run_id = 'bad-1'")
    # Two at once: a claim made while ODD is being handed back must not take it again.
    worker = Worker(store, [flow], concurrency=2, idle=0.01)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(worker.run, handle_signals=False))
            await ran.wait()  # good-1, queued last, ran: the worker got past the other two
            await anyio.sleep(0.2)  # time to claim ODD again, were it not refused
            worker.stop()
    good, old = await store.get("good-1"), await store.get(ODD)
    assert good is not None
    assert old is not None
    # ODD is as it was queued: pending, never attempted, claimed once by this worker.
    assert (good.status, old.status, old.attempts, old.owner) == ("completed", "pending", 0, None)
    handed_back = [r for r in caplog.records if r.getMessage().startswith(f"run {ODD!r} handed")]
    assert len(handed_back) == 1
    assert good.context is not None
    assert b'"n":10' in good.context  # 4 * 2 + 1, then + 1
    [(status, owner, error)] = await _sql(
        dsn, "SELECT status, owner, error FROM cadence_runs WHERE run_id = 'bad-1'"
    )
    assert (status, owner) == ("failed", None)
    assert "run 'bad-1': its row in PostgreSQL is corrupted" in str(error)
    await store.aclose()


async def test_more_runs_at_once_than_the_pool_has_connections_all_complete(dsn: str) -> None:
    store = PostgresStore(dsn, min_size=1, max_size=2)  # one run holds a connection at most
    flow = Cadence("crowd", Job())
    for name in "abc":
        flow = flow.then(name, make_beat(name))
    results: dict[int, Job] = {}

    async def one(i: int) -> None:
        results[i] = await flow.run(Job(n=i), run_id=f"crowd-{i}", store=store)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for i in range(6):
                group.start_soon(one, i)
    assert results == {
        i: Job(n=((i * 2 + 1) * 2 + 1) * 2 + 1, trail=["a", "b", "c"]) for i in range(6)
    }
    assert len(await store.list_runs(status="completed", cadence="crowd")) == 6
    assert not store._sockets  # pyright: ignore[reportPrivateUsage] # let go with their runs
    await store.aclose()


@dataclass
class _Paced(Context):
    long: bool = False
    n: int = 0


async def test_the_connections_long_runs_held_go_back_to_the_pool_as_they_end(dsn: str) -> None:
    """Runs waiting in the pool get the connections of runs that end, not its timeout (30 s)."""
    store = PostgresStore(dsn, lease=30.0, max_size=3)

    async def step(ctx: _Paced) -> None:
        await anyio.sleep(0.3 if ctx.long else 0.01)
        ctx.n += 1

    flow = Cadence("paced", context_type=_Paced).then("a", step)
    assert await store.get("opens-the-pool") is None
    done: list[str] = []

    async def one(name: str, *, long: bool, after: float) -> None:
        await anyio.sleep(after)
        assert (await flow.run(_Paced(long=long), run_id=name, store=store)).n == 1
        done.append(name)

    with anyio.fail_after(4):  # a connection parked until a later call: the pool's wait
        async with anyio.create_task_group() as group:
            for name in ("long-1", "long-2"):  # each holds one of the 3 connections
                group.start_soon(functools.partial(one, name, long=True, after=0))
            for i in range(100):  # waiting in the pool as the long ones finish
                group.start_soon(functools.partial(one, f"short-{i}", long=False, after=0.29))
    assert len(done) == 102
    assert not store._orphans  # pyright: ignore[reportPrivateUsage] # none parked
    await store.aclose()


async def test_a_default_worker_runs_eight_at_once_each_on_a_connection_of_its_own(
    dsn: str,
) -> None:
    store = PostgresStore(dsn)  # the default pool: max_size 10
    entered: list[int] = []
    finished: list[int] = []
    eight, ten, gate = anyio.Event(), anyio.Event(), anyio.Event()

    async def hold(ctx: Job) -> None:
        entered.append(ctx.n)
        if len(entered) == 8:
            eight.set()
        await gate.wait()

    async def done(ctx: Job) -> None:
        finished.append(ctx.n)
        if len(finished) == 10:
            ten.set()

    flow = Cadence("eight", Job()).then("hold", hold).then("done", done)
    for i in range(10):
        assert await enqueue(flow, Job(n=i), run_id=f"eight-{i}", store=store)
    worker = Worker(store, [flow], idle=0.01)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(worker.run, handle_signals=False))
            with anyio.fail_after(10):
                await eight.wait()
            await anyio.sleep(0.3)  # room for a ninth, were it allowed
            assert len(entered) == 8
            assert len(store._held) == 8  # pyright: ignore[reportPrivateUsage] # one each
            gate.set()
            await ten.wait()
            worker.stop()  # the runs in hand finish
    assert sorted(entered) == sorted(finished) == list(range(10))
    assert len(await store.list_runs(status="completed", cadence="eight")) == 10
    await store.aclose()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the store's pool, reached by hand
async def test_a_pool_with_no_connection_to_give_in_time_is_a_store_error(dsn: str) -> None:
    store = PostgresStore(dsn, min_size=1, max_size=1)
    assert await store.get("none") is None  # the pool is open
    pool = store._pool  # pyright: ignore[reportPrivateUsage] # its checkout timeout, shortened
    assert pool is not None
    pool.timeout = 0.3
    taken = await pool.getconn()  # the one connection: none left for the store
    try:
        flow = Cadence("spent", Job()).then("a", make_beat("a"))
        with pytest.raises(
            StoreError, match=r"run 'sp-1': claiming the run failed in Postgre"
        ) as spent:
            await flow.run(Job(), run_id="sp-1", store=store)
        assert "every connection of the pool is in use" in str(spent.value)
        assert "raise max_size" in str(spent.value)
        with pytest.raises(StoreError, match=r"claiming a queued run failed in PostgreSQL"):
            await store.claim_next(["spent"], store.new_owner())
    finally:
        await pool.putconn(taken)
    await store.aclose()


async def test_a_run_cancelled_during_a_long_step_stops_as_cancelled(dsn: str) -> None:
    from cadence.durable import RunCancelledError  # noqa: PLC0415 # the test's own

    store = PostgresStore(dsn, lease=0.3)  # the heartbeat, every 0.1 s, finds it first
    entered = anyio.Event()

    async def long(ctx: Job) -> None:
        entered.set()
        await anyio.sleep_forever()  # stopped by the heartbeat's finding

    flow = Cadence("cancelled", Job()).then("long", long)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:

            async def cancel() -> None:
                await entered.wait()
                assert await store.cancel("cx-1")

            group.start_soon(cancel)
            with pytest.raises(RunCancelledError, match="run 'cx-1' was cancelled"):
                await flow.run(Job(), run_id="cx-1", store=store)
    record = await store.get("cx-1")
    assert record is not None
    assert record.status == "cancelled"
    await store.aclose()


async def test_a_worker_logs_a_run_cancelled_under_it_as_stopped_not_failed(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresStore(dsn, lease=0.3)  # the heartbeat, every 0.1 s, finds it
    entered = anyio.Event()

    async def long(ctx: Job) -> None:
        entered.set()
        await anyio.sleep_forever()

    flow = Cadence("wcancel", Job()).then("long", long)
    assert await enqueue(flow, Job(), run_id="wc-1", store=store)
    worker = Worker(store, [flow], idle=0.01)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(worker.run, handle_signals=False))
            await entered.wait()
            assert await store.cancel("wc-1")
            while not any("stopped" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110 # the log is the signal
                await anyio.sleep(0.01)
            worker.stop()
    told = [r for r in caplog.records if "wc-1" in r.getMessage()]
    assert all((r.levelname, r.exc_info) == ("WARNING", None) for r in told)  # no "failed"
    stopped = [r.getMessage() for r in told if "stopped" in r.getMessage()]
    assert stopped == ["run 'wc-1' stopped: run 'wc-1' was cancelled"]  # told once
    await store.aclose()


async def test_a_server_that_cannot_be_reached_is_a_clear_error_at_once() -> None:
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{_free_port()}/postgres")
    flow = Cadence("nowhere", Job()).then("a", make_beat("a"))
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"run 'n-1': PostgreSQL is unavailable: .*refused"):
        await flow.run(Job(), run_id="n-1", store=store)
    assert time.monotonic() - started < 5  # not the pool's 10 s of retries
    await store.aclose()


@dataclass
class _Holds(Context):
    line: socket.socket | None = None  # a resource not marked Shared[...]


def test_a_worker_refuses_a_cadence_whose_child_context_cannot_be_stored() -> None:
    holds = Cadence("holds", _Holds()).then("a", lambda ctx: None)
    flow = Cadence("outer", Job()).then("a", make_beat("a")).child("h", holds, lambda p, c: None)
    with pytest.raises(CadenceDefinitionError, match=r"_Holds: field 'line' cannot be"):
        Worker(PostgresStore("postgresql://unused"), [flow])


def test_the_pinned_psycopg_runs_statements_through_libpq() -> None:
    assert _postgres._LIBPQ  # pyright: ignore[reportPrivateUsage] # else every commit is dearer
    assert PostgresStore("postgresql://unused")._libpq  # pyright: ignore[reportPrivateUsage] # as above


@pytest.mark.parametrize("way", ["unprepared", "cursors"])
async def test_a_store_that_prepares_nothing_runs_and_works_the_queue(
    dsn: str, way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = {"min_size": 1, "max_size": 1}  # one session: the one the statements below ask
    if way == "cursors":  # a psycopg without the lower layer: prepared through its cursors
        monkeypatch.setattr(_postgres, "_LIBPQ", False)
        store = PostgresStore(dsn, **one)
    else:
        store = PostgresStore(dsn, prepare=False, **one)  # as behind PgBouncer (transactions)
    flow = Cadence(way, Job())
    for name in "ab":
        flow = flow.then(name, make_beat(name))
    assert await flow.run(Job(n=1), run_id=f"{way}-0", store=store) == Job(n=7, trail=["a", "b"])
    for i in range(1, 4):
        assert await enqueue(flow, Job(n=i), run_id=f"{way}-{i}", store=store)
    worker = Worker(store, [flow], concurrency=2, idle=0.01)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(worker.run, handle_signals=False))
            while True:
                done = await store.list_runs(status="completed", cadence=way)
                if len(done) == 4:
                    break
                await anyio.sleep(0.02)
            worker.stop()
    for i in range(1, 4):
        record = await store.get(f"{way}-{i}")
        assert record is not None
        assert record.context is not None
        assert f'"n":{(i * 2 + 1) * 2 + 1},' in record.context.decode()
        assert (record.attempts, record.created_at <= record.updated_at) == (1, True)
    prepared = await _in_the_stores_session(store, "SELECT count(*) FROM pg_prepared_statements")
    assert (prepared[0][0] > 0) == (way == "cursors")  # prepare=False prepares nothing
    await store.aclose()


async def test_a_run_cancelled_while_its_claim_is_told_is_handed_back_at_once(dsn: str) -> None:
    from cadence.events import CadenceEvent, RunClaimed  # noqa: PLC0415 # the test's own

    store = PostgresStore(dsn)  # a 30 s lease: only a hand-back lets the next caller in now
    telling = anyio.Event()

    async def slow_listener(event: CadenceEvent) -> None:
        if isinstance(event, RunClaimed):
            telling.set()
            await anyio.sleep_forever()  # cancelled while the claim is being told

    flow = Cadence("told", Job()).then("a", make_beat("a"))
    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:

            async def first() -> None:
                await flow.with_listener(slow_listener).run(Job(n=1), run_id="told-1", store=store)

            group.start_soon(first)
            await telling.wait()
            group.cancel_scope.cancel()
        record = await store.get("told-1")
        assert record is not None
        assert (record.status, record.owner, record.position) == ("pending", None, 0)
        assert await flow.run(Job(n=1), run_id="told-1", store=store) == Job(n=3, trail=["a"])
    done = await store.get("told-1")
    assert done is not None
    assert (done.status, done.attempts) == ("completed", 2)
    await store.aclose()


async def test_a_caller_cancelled_during_a_store_call_stops_waiting_at_once(dsn: str) -> None:
    import psycopg  # noqa: PLC0415 # the test's own connection

    store = PostgresStore(dsn)
    flow = Cadence("blocked", Job()).then("a", make_beat("a"))
    assert await enqueue(flow, Job(), run_id="blocked-1", store=store)
    locker = psycopg.connect(dsn)  # holds the run's row: the store's UPDATE waits for it
    try:
        locker.execute("SELECT 1 FROM cadence_runs WHERE run_id = 'blocked-1' FOR UPDATE")
        start = time.monotonic()
        with anyio.move_on_after(0.3) as scope:
            await store.cancel("blocked-1")
        assert scope.cancelled_caught
        assert time.monotonic() - start < 3
    finally:
        locker.rollback()
        locker.close()
    record = await store.get("blocked-1")  # the store goes on, on the same loop (or thread)
    assert record is not None
    assert record.status in ("pending", "cancelled")  # the UPDATE may have been sent already
    assert await flow.run(Job(), run_id="plain-1", store=store) == Job(n=1, trail=["a"])
    await store.aclose()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_under_trio_a_call_finished_on_the_loop_is_not_lost_to_a_cancel(dsn: str) -> None:
    store = PostgresStore(dsn)
    await store.list_runs()  # the loop thread and the pool are up
    owner, new = store.new_owner(), _one_step("kept")
    claims: list[str] = []
    with anyio.CancelScope() as scope:

        async def cancel_late() -> None:
            time.sleep(0.5)  # noqa: ASYNC251 # blocks trio's thread: the loop's claim ends meanwhile
            scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(cancel_late)
            claims.append((await store.claim("kept-1", owner, new)).outcome)
            await anyio.sleep_forever()  # the cancel lands here, after the claim returned
    assert claims == ["created"]  # the claim the server made reached its caller
    record = await store.get("kept-1")
    assert record is not None
    assert (record.status, record.owner) == ("running", owner)
    await store.release("kept-1", owner)
    store.done(owner)
    await store.aclose()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_under_trio_aclose_ends_the_calls_still_running(dsn: str) -> None:
    import psycopg  # noqa: PLC0415 # the test's own connection

    from cadence.durable import StoreError  # noqa: PLC0415 # as above

    store = PostgresStore(dsn)
    await store.list_runs()
    locker = psycopg.connect(dsn)  # holds the table: the store's next read waits
    locker.execute("LOCK TABLE cadence_runs IN ACCESS EXCLUSIVE MODE")
    errors: list[BaseException] = []
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:

                async def read() -> None:
                    try:
                        await store.get("any")
                    except StoreError as exc:
                        errors.append(exc)

                group.start_soon(read)
                await anyio.sleep(0.3)
                await store.aclose()
    finally:
        locker.rollback()
        locker.close()
    assert [str(e) for e in errors] == [
        "PostgresStore was closed while a call ran: the event loop thread "
        "'cadence-postgres' stopped"
    ]
    assert await store.list_runs() == []  # a later call opens the store again
    await store.aclose()


async def test_a_commit_cancelled_mid_statement_is_cleaned_up_before_the_hand_back(
    dsn: str,
) -> None:
    # The connection of a commit cancelled mid-statement is dropped (the pool closes it),
    # and the release must not wait for it: on either backend.
    import threading  # noqa: PLC0415 # the test's own

    import psycopg  # noqa: PLC0415 # as above

    store = PostgresStore(dsn)
    owner, new = store.new_owner(), _one_step("mid")
    assert (await store.claim("mid-1", owner, new)).outcome == "created"
    locker = psycopg.connect(dsn)  # holds the row: the checkpoint's UPDATE waits for it
    locker.execute("SELECT 1 FROM cadence_runs WHERE run_id = 'mid-1' FOR UPDATE")
    unlock = threading.Timer(1.5, locker.rollback)  # while the hand-back below waits
    unlock.start()
    try:
        with anyio.move_on_after(0.3) as scope:
            await store.checkpoint("mid-1", owner, position=1, step=None, context=b"{}")
        assert scope.cancelled_caught

        async def other() -> None:  # hands dropped connections back to the pool meanwhile
            await anyio.sleep(0.4)
            assert await store.get("other") is None

        with anyio.fail_after(10):  # the cancelled commit's connection is not in use here
            async with anyio.create_task_group() as group:
                group.start_soon(other)
                with anyio.CancelScope(shield=True):
                    await store.release("mid-1", owner)
    finally:
        unlock.join()
        locker.close()
    store.done(owner)
    record = await store.get("mid-1")
    assert record is not None
    assert (record.status, record.owner) == ("pending", None)
    assert record.position in (0, 1)  # a commit cancelled once sent may still land
    await store.aclose()


def test_a_store_used_under_trio_refuses_another_loop_until_closed(dsn: str) -> None:
    from cadence.durable import StoreError  # noqa: PLC0415 # the test's own

    store = PostgresStore(dsn)
    assert anyio.run(store.list_runs, backend="trio") == []  # its loop thread now runs
    with pytest.raises(StoreError, match="give each event loop its own store"):
        anyio.run(store.list_runs, backend="asyncio")
    anyio.run(store.aclose, backend="trio")

    async def on_asyncio() -> None:  # one loop: the pool belongs to the loop that opened it
        assert await store.list_runs() == []
        await store.aclose()

    anyio.run(on_asyncio, backend="asyncio")


@pytest.mark.parametrize("then", ["asyncio", "trio"])
def test_a_store_whose_loop_ended_opens_anew_on_the_next_loop(dsn: str, then: str) -> None:
    """As each of a test's clients runs its own loop: the first loop's pool ended with it."""
    store = PostgresStore(dsn, min_size=1, max_size=4)
    flow = Cadence("loops", Job()).then("a", make_beat("a")).then("b", make_beat("b"))

    async def runs(tag: str, count: int) -> list[int]:
        with anyio.fail_after(30):  # the pool's tasks died with the first loop: it cannot grow
            async with anyio.create_task_group() as group:
                for i in range(count):  # at once: the pool must grow
                    run = functools.partial(flow.run, Job(), run_id=f"{tag}-{i}", store=store)
                    group.start_soon(run)
        return [r.attempts for r in await store.list_runs(cadence="loops") if r.run_id[0] == tag]

    assert anyio.run(runs, "1", 1, backend="asyncio") == [1]
    assert anyio.run(runs, "2", 6, backend=then) == [1] * 6
    anyio.run(store.aclose, backend=then)


@pytest.mark.parametrize("other", ["asyncio", "trio"])
def test_a_store_in_use_on_a_running_loop_refuses_another_by_name(dsn: str, other: str) -> None:
    from cadence.durable import StoreError  # noqa: PLC0415 # the test's own

    store = PostgresStore(dsn)
    opened, leave = threading.Event(), threading.Event()

    async def first_loop() -> None:
        assert await store.get("first") is None
        opened.set()
        await anyio.to_thread.run_sync(leave.wait)
        await store.aclose()

    thread = threading.Thread(target=anyio.run, args=(first_loop,))
    thread.start()
    try:
        assert opened.wait(30)
        with pytest.raises(StoreError) as caught:
            anyio.run(store.get, "second", backend=other)
        assert caught.value.run_id == "second"
        assert str(caught.value).startswith("run 'second': this PostgresStore is in use on")
        assert "give each event loop its own store" in str(caught.value)
    finally:
        leave.set()
        thread.join(30)
    assert anyio.run(store.get, "third", backend=other) is None  # closed there: free again
    anyio.run(store.aclose, backend=other)


def test_two_loops_first_calls_at_once_give_the_store_to_one(dsn: str) -> None:
    """The other is refused by name: it neither waits on the first loop's lock nor its pool."""
    from cadence.durable import StoreError  # noqa: PLC0415 # the test's own

    store = PostgresStore(dsn)
    start = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def on_a_loop_of_its_own(name: str) -> None:
        async def call() -> None:
            start.wait()
            with anyio.fail_after(20):
                outcomes[name] = await store.get(name)

        try:
            anyio.run(call)
        except StoreError as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=on_a_loop_of_its_own, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    refused = [v for v in outcomes.values() if isinstance(v, StoreError)]
    assert sum(v is None for v in outcomes.values()) == 1  # one of them got the store
    assert len(refused) == 1
    assert "is in use on another event loop" in str(refused[0])
    anyio.run(store.aclose)  # both loops ended: any loop may close it


def test_a_claim_that_lands_after_aclose_keeps_no_connection_of_the_closed_pool(
    dsn: str,
) -> None:
    """Its finish, once a new pool opened, writes and hands nothing of the old pool to it."""

    async def main() -> None:
        import psycopg  # noqa: PLC0415 # the test's own

        store = PostgresStore(dsn)
        new = _one_step("late")
        assert await store.enqueue_row("late-1", new)
        locker = await psycopg.AsyncConnection.connect(dsn)
        await locker.execute("SELECT 1 FROM cadence_runs WHERE run_id = 'late-1' FOR UPDATE")
        owner = store.new_owner()
        claims: list[Claim] = []

        async def claim() -> None:
            claims.append(await store.claim("late-1", owner, new))

        async with anyio.create_task_group() as group:
            group.start_soon(claim)
            await anyio.sleep(0.3)  # the claim waits on the row lock
            await store.aclose()  # its pool closes under the claim
            await locker.rollback()
            await locker.close()
        assert [c.outcome for c in claims] == ["claimed"]
        assert await store.get("other") is None  # opens a new pool
        await store.finish("late-1", owner, status="completed", context=None, error=None)
        record = await store.get("late-1")
        assert record is not None
        assert record.status == "completed"
        assert not store._orphans  # pyright: ignore[reportPrivateUsage] # none left behind
        await store.aclose()

    anyio.run(main)


@pytest.mark.parametrize("probed", [True, False])
async def test_a_call_cancelled_while_the_pool_opens_closes_that_pool(
    monkeypatch: pytest.MonkeyPatch, probed: bool
) -> None:
    """Cancelled in the first, lone connection (`probed`) or, past it, in the pool's."""
    opened: list[_postgres.AsyncConnectionPool[Any]] = []

    async def through(self: PostgresStore, run_id: str) -> None:
        return

    if not probed:
        monkeypatch.setattr(PostgresStore, "_probe", through)

    class Recorded(_postgres.AsyncConnectionPool):  # type: ignore[type-arg] # psycopg's own
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            opened.append(self)

    monkeypatch.setattr(_postgres, "AsyncConnectionPool", Recorded)
    with socket.socket() as silent:  # takes connections and never answers them
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        store = PostgresStore(f"postgresql://nobody@127.0.0.1:{port}/none")
        with anyio.move_on_after(1) as scope:
            await store.get("any")
        assert scope.cancelled_caught
        with anyio.fail_after(20):  # no pool left opening, or its workers, to wait on
            await store.aclose()
    assert len(opened) == (0 if probed else 1)
    assert all(pool.closed for pool in opened)  # the pool the cancelled call was opening


@pytest.mark.parametrize(
    ("backend", "childs"), [("asyncio", "asyncio"), ("trio", "trio"), ("trio", "asyncio")]
)
def test_a_forked_child_opens_sessions_of_its_own_and_leaves_the_parents_alone(
    dsn: str, backend: str, childs: str
) -> None:
    """A pre-forking server's master used the store: each child talks on its own sessions."""
    import gc  # noqa: PLC0415 # the child's own clean-up
    import traceback  # noqa: PLC0415 # as above

    from anyio.from_thread import start_blocking_portal  # noqa: PLC0415 # the parent's loop

    async def sessions() -> int:  # the store's, on the test's own database
        rows = await _sql(
            dsn,
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'forked' AND datname = current_database()",
        )
        return cast("int", rows[0][0])

    store = PostgresStore(f"{dsn}?application_name=forked", min_size=1, max_size=2)
    with start_blocking_portal(backend) as portal:  # the parent's loop, on a thread of its own
        assert portal.call(store.list_runs) == []
        assert portal.call(sessions) == 1
        readable, writable = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its own loop, on the thread that forked
            os.close(readable)
            report = "ok"
            try:

                async def child() -> int:
                    with anyio.fail_after(10):
                        assert await store.list_runs() == []
                        opened = await sessions()
                        await store.aclose()
                        return opened

                opened = anyio.run(child, backend=childs)
                if opened != 2:
                    report = f"{opened} sessions of the store, not the parent's and its own"
                del store  # and what it inherited: the parent's sessions must outlive that
                gc.collect()
            except BaseException:  # told to the parent, which asserts
                report = traceback.format_exc()
            finally:
                os.write(writable, report.encode())
                os._exit(0)
        os.close(writable)
        with os.fdopen(readable, "rb") as pipe:
            if not select.select([pipe], [], [], 30)[0]:  # it would wait forever on a dead loop
                os.kill(pid, signal.SIGKILL)
            report = pipe.read().decode() or "the child hung"
        os.waitpid(pid, 0)
        assert report == "ok"
        deadline = time.monotonic() + 10
        while portal.call(sessions) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # the child's own session ends with it
        assert portal.call(sessions) == 1  # the parent's outlived the child
        assert portal.call(store.list_runs) == []  # and still answers
        portal.call(store.aclose)


@pytest.mark.parametrize("prepare", [True, False], ids=["prepared", "unprepared"])
@pytest.mark.parametrize("at", ["a", "b"])  # the claim's commit is the last before a; b's, a's
async def test_a_run_whose_session_the_server_ends_goes_on_with_another(
    dsn: str, at: str, *, prepare: bool
) -> None:
    """The server ends the run's session between two statements: no spin, and no failure.

    In the first step, and with `prepare=False`, the session's socket is not watched (only a
    prepared commit watches it): its end is read as the next commit takes it.
    """
    store = PostgresStore(f"{dsn}?application_name=ended", min_size=1, prepare=prepare)
    ended: dict[str, float] = {}

    def ending(name: str) -> Callable[[Job], Awaitable[None]]:
        async def end_the_session(ctx: Job) -> None:
            if not ended:
                await _sql(
                    dsn,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'ended' AND datname = current_database()",
                )
                before = time.process_time()
                await anyio.sleep(0.5)  # the server's farewell and EOF reach the socket
                ended["cpu"] = time.process_time() - before
            await make_beat(name)(ctx)

        return end_the_session

    beats = {name: ending(name) if name == at else make_beat(name) for name in "abc"}
    flow = Cadence("ended", Job()).then("a", beats["a"]).then("b", beats["b"])
    flow = flow.then("c", beats["c"])
    with anyio.fail_after(30):
        # The commit after the step runs on a pooled connection: the run goes on (it failed,
        # and the step ran again, after every server restart or failover).
        assert await flow.run(run_id="e1", store=store) == Job(n=7, trail=["a", "b", "c"])
        assert ended["cpu"] < 0.25  # a loop spinning on the closed socket would burn the 0.5 s
        record = await store.get("e1")
        assert record is not None
        assert (record.status, record.attempts) == ("completed", 1)
    await store.aclose()


@pytest.mark.parametrize("mode", ["fast", "immediate"])  # a restart; a crash and recovery
async def test_after_a_server_restart_no_call_fails_on_a_pooled_session_it_ended(
    mode: str,
) -> None:
    """The server restarts under idle pooled sessions: the next calls take new ones.

    Each ended session failed one call after the restart (a pool's worth of failed runs).
    """
    with _postgres_server() as pg:
        store = PostgresStore(pg.dsn, min_size=4)
        flow = Cadence("restarted", Job()).then("a", make_beat("a")).then("b", make_beat("b"))
        done = Job(n=3, trail=["a", "b"])
        try:
            assert await flow.run(run_id="before", store=store) == done
            pool = store._pool  # pyright: ignore[reportPrivateUsage] # its idle sessions
            assert pool is not None
            assert pool.get_stats()["pool_available"] == 4
            await anyio.to_thread.run_sync(pg.restart, mode)
            with anyio.fail_after(10):  # no backoff between ended sessions either
                assert [r.run_id for r in await store.list_runs()] == ["before"]
                for i in range(5):
                    assert await flow.run(run_id=f"after-{i}", store=store) == done
                await enqueue(flow, Job(), run_id="queued", store=store)
                await _work_until(Worker(store, cadences=[flow]), store, "queued", "completed")
        finally:
            await store.aclose()


async def test_a_pooled_session_the_server_wrote_to_unasked_is_kept(dsn: str) -> None:
    """A notification waiting on an idle session's socket is no ended session: it is kept."""
    store = PostgresStore(dsn, min_size=1, max_size=1)
    try:
        [(pid,)] = await _in_the_stores_session(store, "SELECT pg_backend_pid()")
        await _in_the_stores_session(store, "LISTEN cadence_kept")
        await _sql(dsn, "NOTIFY cadence_kept")
        await anyio.sleep(0.2)  # the notification reaches the idle session's socket
        assert await store.list_runs() == []
        assert await _in_the_stores_session(store, "SELECT pg_backend_pid()") == [(pid,)]
    finally:
        await store.aclose()


def test_the_cli_lists_a_stores_runs_and_refuses_a_database_no_store_wrote(dsn: str) -> None:
    from click.testing import CliRunner  # noqa: PLC0415 # the CLI's tests only here

    from cadence.cli.runs import runs  # noqa: PLC0415 # as above

    runner = CliRunner()
    refused = runner.invoke(runs, ["list", "--dsn", dsn])
    assert refused.exit_code == 2, refused.output
    assert "the database holds no cadence runs (no cadence_runs table)" in refused.output
    tables = anyio.run(_sql, dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert tables == []  # nothing created in it

    async def one_run() -> None:
        store = PostgresStore(dsn)
        flow = Cadence("listed", Job()).then("a", make_beat("a"))
        await flow.run(run_id="cli-1", store=store)
        await store.aclose()

    anyio.run(one_run)
    listed = runner.invoke(runs, ["list", "--dsn", dsn])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines() == ["cli-1\tlisted\tcompleted\t1/1 -\t1"]
    unreachable = runner.invoke(runs, ["list", "--dsn", "postgresql://app@127.0.0.1:1/app"])
    assert unreachable.exit_code == 2
    assert "PostgreSQL is unavailable" in unreachable.output


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the pool's own backoff: either loop
async def test_after_a_long_outage_the_store_works_as_soon_as_the_server_is_back() -> None:
    """The pool's retries back off for 5 s at most: after a minute they were 16 s apart."""
    with _postgres_server() as pg:
        store = PostgresStore(pg.dsn, lease=3, min_size=2, max_size=4)
        try:
            assert await store.get("x") is None
            await anyio.to_thread.run_sync(pg.stop)
            outage = time.monotonic() + 20  # psycopg_pool's retries: 1, 3, 7, 15, 31 s on
            while time.monotonic() < outage:  # callers keep calling
                with pytest.raises(StoreError, match="PostgreSQL is unavailable") as failed:
                    await store.get("x")
                assert "max_size" not in str(failed.value)
                await anyio.sleep(1)
            await anyio.to_thread.run_sync(pg.start)
            with anyio.fail_after(4):
                assert await store.get("x") is None
        finally:
            await store.aclose()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # as above
async def test_a_call_waiting_through_an_outage_gets_a_connection_once_the_server_is_back() -> None:
    """It waits up to a lease (30 s) in turns, each asking a pool that gave up to retry."""
    with _postgres_server() as pg:
        store = PostgresStore(pg.dsn)
        try:
            assert await store.get("x") is None
            await anyio.to_thread.run_sync(pg.stop)
            async with anyio.create_task_group() as group:
                got: list[RunRecord | None] = []

                async def call() -> None:
                    got.append(await store.get("x"))

                group.start_soon(call)
                await anyio.sleep(8)  # the pool gives up retrying after 5 s
                await anyio.to_thread.run_sync(pg.start)
                back = time.monotonic()
            assert got == [None]
            assert time.monotonic() - back < 8  # it failed at 30 s, the server back since 8
        finally:
            await store.aclose()


async def test_the_longest_run_id_every_store_takes_fits_postgresqls_key_index(dsn: str) -> None:
    store = PostgresStore(dsn)
    longest = os.urandom(512).hex()  # 1024 bytes that do not compress
    flow = Cadence("long", Job()).then("a", make_beat("a"))
    assert await flow.run(run_id=longest, store=store) == Job(n=1, trail=["a"])
    record = await store.get(longest)
    assert record is not None
    assert record.status == "completed"
    await store.aclose()


async def test_a_context_bigger_than_the_sockets_buffer_is_committed_whole(dsn: str) -> None:
    store = PostgresStore(dsn)
    big = "x" * 8_000_000  # more than a socket takes at once: the statement waits to send it
    failing = [True]

    async def grow(ctx: Job) -> None:
        ctx.trail.append(big)

    async def fail_once(ctx: Job) -> None:
        if failing and failing.pop():
            raise RuntimeError("once")
        ctx.n += 1

    flow = Cadence("big", Job()).then("grow", grow).then("fail", fail_once)
    with anyio.fail_after(30):
        with pytest.raises(BeatError):
            await flow.run(run_id="big1", store=store)
        assert await flow.run(run_id="big1", store=store) == Job(n=1, trail=[big])
        assert await store.list_runs(status="running") == []  # after the runs' hand-backs
    assert not store._sockets  # pyright: ignore[reportPrivateUsage] # each let go with its run
    await store.aclose()


async def test_the_stores_connections_carry_tcp_timeouts_unless_the_dsn_sets_its_own(
    dsn: str,
) -> None:
    """A network partition fails a call within a lease, not after the kernel's 15 minutes."""
    store = PostgresStore(f"{dsn}?keepalives_idle=7", lease=12.0)
    await Cadence("tcp", Job()).then("a", make_beat("a")).run(Job(), run_id="t-1", store=store)

    async def parameters() -> dict[str, str]:
        pool = store._pool  # pyright: ignore[reportPrivateUsage] # the store's own connections
        assert pool is not None
        async with pool.connection() as connection:
            return connection.info.get_parameters()

    if sniffio.current_async_library() == "trio":
        given = await store._on_loop_thread(parameters())  # pyright: ignore[reportPrivateUsage] # as above
    else:
        given = await parameters()
    assert given["keepalives"] == "1"
    assert given["keepalives_idle"] == "7"  # the DSN's own
    assert (given["keepalives_interval"], given["keepalives_count"]) == ("2", "2")
    assert given["tcp_user_timeout"] == "12000"  # a lease
    assert "-c lock_timeout=12000" in given["options"]  # a lease too
    pool = store._pool  # pyright: ignore[reportPrivateUsage] # as above
    assert pool is not None
    assert pool.timeout == 12.0  # a call waits a lease for a connection, not the pool's 30 s
    await store.aclose()
    own = PostgresStore(f"{dsn}?options=-c%20lock_timeout%3D777", lease=12.0)
    await own.list_runs()
    [(kept,)] = await _in_the_stores_session(own, "SHOW lock_timeout")
    assert kept == "777ms"  # the DSN's own
    await own.aclose()


async def test_a_run_whose_row_another_session_holds_locked_stops_within_leases(
    dsn: str,
) -> None:
    import psycopg  # noqa: PLC0415 # the test's own connection

    store = PostgresStore(dsn, lease=1.0)
    holding, let_go = threading.Event(), threading.Event()

    def hold_the_row() -> None:  # a session left open with the run's row locked
        with psycopg.connect(dsn) as connection:
            connection.execute("SELECT 1 FROM cadence_runs WHERE run_id = 'lk-1' FOR UPDATE")
            holding.set()
            let_go.wait(30)

    holder = threading.Thread(target=hold_the_row)

    async def locked_out(ctx: Job) -> None:
        if not holder.is_alive() and not holding.is_set():
            holder.start()
            await anyio.to_thread.run_sync(holding.wait)

    flow = Cadence("locked", Job()).then("a", locked_out).then("b", make_beat("b"))
    started = time.monotonic()
    try:
        with anyio.fail_after(30), pytest.raises(StoreError):
            await flow.run(Job(), run_id="lk-1", store=store)
        assert time.monotonic() - started < 15  # a lease or a few: not for as long as it is held
    finally:
        let_go.set()
        holder.join()
    await flow.run(Job(), run_id="lk-1", store=store)  # resumed once the lock is let go
    record = await store.get("lk-1")
    assert record is not None
    assert record.status == "completed"
    await store.aclose()


def test_a_pool_with_no_connection_to_give_says_why(dsn: str) -> None:
    from psycopg_pool import AsyncConnectionPool  # noqa: PLC0415 # the store's pool, by hand

    nowhere = f"postgresql://postgres@127.0.0.1:{_free_port()}/postgres"

    async def why(conninfo: str) -> str:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(  # Any: its rows
            conninfo, open=False, min_size=1, max_size=4
        )
        return await _postgres._why_no_connection(pool)  # pyright: ignore[reportPrivateUsage] # its words

    down, behind = asyncio.run(why(nowhere)), asyncio.run(why(dsn))  # psycopg's async: asyncio
    assert down.startswith("PostgreSQL is unavailable:")
    assert "refused" in down
    # The server answers, and the pool holds none of its connections (none in use): after an
    # outage, the pool retrying still.
    assert (
        behind == "the server answers again: the pool has not reconnected yet (a later call will)"
    )
    wait = _postgres._pool_wait  # pyright: ignore[reportPrivateUsage] # as above
    assert (wait(0.3), wait(12.0), wait(300.0)) == (5.0, 12.0, 30.0)


@dataclass
class _Scored(Context):
    score: float = 0.0


async def test_a_worker_runs_a_queued_run_whatever_its_cadences_template_holds(dsn: str) -> None:
    """The template is not stored for a claimed run: a NaN in it refuses nothing."""
    store = PostgresStore(dsn)
    done = anyio.Event()

    async def score(ctx: _Scored) -> None:
        ctx.score += 1.5
        done.set()

    queued = Cadence("scored", _Scored()).then("score", score)
    assert await enqueue(queued, _Scored(score=1.0), run_id="sc-1", store=store)
    served = Cadence("scored", _Scored(score=float("nan"))).then("score", score)
    worker = Worker(store, [served], idle=0.01)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(worker.run, handle_signals=False))
            await done.wait()
            worker.stop()
    record = await store.get("sc-1")
    assert record is not None
    assert (record.status, record.attempts, record.context) == ("completed", 1, b'{"score":2.5}')
    with pytest.raises(
        CadenceDefinitionError,
        match=r"needs run_id, a non-empty string of at most 1024 bytes .*; got str ''",
    ):
        await enqueue(queued, _Scored(), run_id="", store=store)
    assert await store.list_runs() == [record]
    await store.aclose()


async def test_a_worker_fails_a_run_whose_step_leaves_a_value_it_cannot_store_once(
    dsn: str,
) -> None:
    """Failed, not handed back: a worker would claim it again and run its step for ever."""
    store = PostgresStore(dsn)
    calls: list[float] = []

    async def score(ctx: _Scored) -> None:
        calls.append(ctx.score)
        ctx.score = float("inf")

    flow = Cadence("unstorable", _Scored()).then("score", score).then("after", score)
    assert await enqueue(flow, _Scored(score=1.0), run_id="inf-1", store=store)
    # 0.3 s more: time to claim it again, were it handed back
    await _work_until(Worker(store, [flow], idle=0.01), store, "inf-1", "failed", then=0.3)
    record = await store.get("inf-1")
    assert record is not None
    assert (record.status, record.attempts, record.position) == ("failed", 1, 0)
    assert record.error is not None
    assert "field _Scored.score holds inf" in record.error.message
    assert calls == [1.0]
    await store.aclose()


async def test_the_lease_is_renewed_from_the_claim_on_while_observers_hear_of_it(
    dsn: str,
) -> None:
    """A slow listener of `RunClaimed` holds the run longer than a lease: no one takes it."""
    from cadence.events import RunClaimed  # noqa: PLC0415 # as above

    store, rival = PostgresStore(dsn, lease=1.0), PostgresStore(dsn, lease=1.0)
    ran: list[str] = []
    told = anyio.Event()

    async def step(ctx: Job) -> None:
        ran.append("s")
        ctx.n += 1

    async def slow(event: object) -> None:
        if isinstance(event, RunClaimed):
            told.set()
            await anyio.sleep(2.5)

    flow = Cadence("slow", Job()).then("s", step)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(
                functools.partial(flow.with_listener(slow).run, Job(), run_id="sl-1", store=store)
            )
            await told.wait()
            await anyio.sleep(1.5)  # past the claim's lease, were it not renewed meanwhile
            assert await flow.run(Job(), run_id="sl-1", store=rival) == Job(n=1)  # waited
    assert ran == ["s"]
    record = await rival.get("sl-1")
    assert record is not None
    assert (record.status, record.attempts) == ("completed", 1)
    await store.aclose()
    await rival.aclose()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_second_signal_cuts_the_grace_short_and_hands_the_runs_back(
    dsn: str, signum: signal.Signals, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresStore(dsn)
    entered = anyio.Event()

    async def stuck(ctx: Job) -> None:
        entered.set()
        await anyio.sleep_forever()

    flow = Cadence("rushed", Job()).then("a", make_beat("a")).then("b", stuck)
    assert await enqueue(flow, Job(), run_id="ru-1", store=store)
    worker = Worker(store, [flow], idle=0.01, grace=60)
    started = time.monotonic()
    with anyio.fail_after(30):  # not the 60 s grace
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await entered.wait()
            os.kill(os.getpid(), signum)
            with anyio.fail_after(5):
                while not worker.stopping:  # noqa: ASYNC110 # the worker's own flag, no event
                    await anyio.sleep(0.01)
            await anyio.sleep(0.1)  # in its grace now
            os.kill(os.getpid(), signum)
    assert time.monotonic() - started < 30
    record = await store.get("ru-1")
    assert record is not None
    assert (record.status, record.owner, record.position) == ("pending", None, 1)
    [told] = [r.getMessage() for r in caplog.records if "handing back" in r.getMessage()]
    waited = float(told.rsplit(" after ", 1)[1].removesuffix(" s"))
    assert waited < 10  # how long the grace really lasted, not the 60 s it was given
    await store.aclose()


async def test_a_timestamp_postgresql_stores_but_python_cannot_read_is_a_corrupted_row(
    dsn: str,
) -> None:
    store = PostgresStore(dsn)
    flow = Cadence("forever", Job()).then("a", make_beat("a"))
    assert await enqueue(flow, Job(), run_id="inf-1", store=store)
    assert await enqueue(flow, Job(), run_id="inf-2", store=store)
    await _sql(dsn, "UPDATE cadence_runs SET created_at = 'infinity' WHERE run_id = 'inf-1'")
    await _sql(dsn, "UPDATE cadence_runs SET updated_at = '-infinity' WHERE run_id = 'inf-2'")
    assert await enqueue(flow, Job(n=1), run_id="inf-3", store=store)
    corrupted = "its row in PostgreSQL is corrupted"
    with pytest.raises(RunDecodeError, match=rf"run 'inf-1': {corrupted}"):
        await store.get("inf-1")
    listed = {record.run_id: record for record in await store.list_runs(cadence="forever")}
    assert listed.keys() == {"inf-1", "inf-2", "inf-3"}  # one bad row hides no other
    assert [listed[i].error is not None for i in ("inf-1", "inf-2", "inf-3")] == [1, 1, 0]
    await _work_until(Worker(store, [flow], idle=0.01), store, "inf-3", "completed")
    rows = await _sql(
        dsn,
        "SELECT run_id, status, owner, error FROM cadence_runs "
        "WHERE run_id IN ('inf-1', 'inf-2') ORDER BY run_id",
    )
    assert [(run_id, status, owner) for run_id, status, owner, _ in rows] == [
        ("inf-1", "failed", None),  # marked failed by the worker, which went on
        ("inf-2", "completed", None),  # its claim wrote its updated_at anew
    ]
    assert corrupted in str(rows[0][3])
    await store.aclose()


async def test_a_worker_whose_database_is_down_at_start_stops_with_a_clear_error() -> None:
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{_free_port()}/postgres")
    flow = Cadence("nowhere", Job()).then("a", make_beat("a"))
    with anyio.fail_after(10), pytest.raises(StoreError, match="PostgreSQL is unavailable"):
        await Worker(store, [flow]).run(handle_signals=False)
    await store.aclose()


async def test_a_worker_whose_claims_fail_logs_each_in_a_line_and_backs_off(
    dsn: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PostgresStore(dsn)
    flow = Cadence("flaky", Job()).then("a", make_beat("a"))
    assert await enqueue(flow, Job(), run_id="fl-1", store=store)
    claim_next = store._claim_next  # pyright: ignore[reportPrivateUsage] # made to fail
    failed_at: list[float] = []

    async def failing(*args: Any, **kwargs: Any) -> tuple[RunRecord | None, bool]:  # Any: passed on
        if len(failed_at) < 4:
            failed_at.append(time.monotonic())
            raise StoreError(  # libpq's message spans lines: the log's is one
                "",
                "claiming a queued run failed in PostgreSQL: server closed the connection "
                "unexpectedly\n\tThis probably means the server terminated abnormally\n",
            )
        return await claim_next(*args, **kwargs)

    monkeypatch.setattr(store, "_claim_next", failing)
    await _work_until(Worker(store, [flow], idle=0.05), store, "fl-1", "completed")
    waits = [b - a for a, b in itertools.pairwise(failed_at)]
    assert waits[0] >= 0.09  # 0.05 s doubled, then doubled again: not a claim every 0.05 s
    assert waits[2] >= 0.35
    told = [r for r in caplog.records if "claim" in r.getMessage()]
    assert [r.exc_info for r in told] == [None] * 5  # one line each, no traceback
    assert [r.getMessage() for r in told] == [
        *(
            f"claiming a run failed (attempt {n}): claiming a queued run failed in PostgreSQL: "
            "server closed the connection unexpectedly This probably means the server "
            "terminated abnormally"
            for n in range(1, 5)
        ),
        "claiming runs again after 4 failed claims",
    ]
    await store.aclose()


async def test_a_queue_refuses_a_context_of_another_class_and_a_store_without_a_queue(
    dsn: str, tmp_path: Path
) -> None:
    @dataclass
    class Refund(Context):
        n: int = 0

    store = PostgresStore(dsn)
    flow = Cadence("typed", Job()).then("a", make_beat("a"))
    wrong: Any = Refund()  # Any: what an untyped caller hands in
    with pytest.raises(
        CadenceDefinitionError, match=r"cadence 'typed' runs over Job, got a .*Refund: "
    ):
        await enqueue(flow, wrong, run_id="ty-1", store=store)
    assert await store.get("ty-1") is None
    sqlite: Any = SQLiteStore(tmp_path / "runs.db")  # Any: as above
    with pytest.raises(TypeError, match="enqueue: store must be a PostgresStore"):
        await enqueue(flow, Job(), run_id="ty-2", store=sqlite)
    with pytest.raises(TypeError, match="Worker: store must be a PostgresStore"):
        Worker(sqlite, [flow])
    with pytest.raises(ValueError, match=r"list_runs: limit must be a count .* got -1"):
        await store.list_runs(limit=-1)  # PostgreSQL's own refusal was a StoreError
    await store.aclose()
