"""What a durable step costs on SQLite, next to a plain step, the floor, and DBOS.

    .venv/bin/python benchmarks/durable.py [--runs N] [--backend asyncio|trio] [--postgres DSN]

Method. Ten-step cadences (each beat `ctx.x += 1` and a 200-byte string field, so a commit
writes a realistic small row) run `--runs` times with a new run id each, in one event loop,
durable at `synchronous=NORMAL` and `FULL`, and without a store. The per-step figure is the
run's time divided by its ten steps (the claim, nine checkpoints and the finish are in it).

The floor replays what the store writes for a run (`Floor`): the same bytes, read back from a
durable run's row, in a table with the same schema and indexes, in the same database file,
from plain sqlite3 in one thread: one claim INSERT not fsync'd and ten commits of one UPDATE
each, fsync'd at FULL. What a durable step costs above it is cadence's own work. At NORMAL the
store commits on the event loop (they never wait: see docs/durable.md); at FULL each commit is
handed to the store's writer thread, so the FULL rows alternate, run by run, a durable run,
the floor, and the floor with each commit handed to the same thread (fsync times here swing
with other jobs' I/O). DBOS (`pip install dbos`) runs its ten-step workflow on SQLite at the
same settings; `strace -f -c` counts the fsyncs per step of cadence, the floor and DBOS at
FULL in fresh processes. The script prints; it checks nothing. About 30-60 s.

`--throughput` starts its own PostgreSQL on 127.0.0.1 and prints ten-step runs per second on
1, 2 and 4 `Worker` processes next to `pgbench`'s TPS for a one-row INSERT (the ceiling), the
CPU each side spent per run, 4 workers again with twice as many runs at once each (a worker's
default is 8), one run at a time against bare UPDATE-and-COMMITs, and the same
runs under trio (the store on its own asyncio loop thread) against asyncio. About 5 minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.to_thread

from cadence import Cadence, Context
from cadence.durable import SQLiteStore, Synchronous

if TYPE_CHECKING:
    from collections.abc import Callable

    from cadence.durable import PostgresStore

STEPS = 10


@dataclass
class Ctx(Context):
    x: int = 0
    note: str = "n" * 200


async def bump(ctx: Ctx) -> None:
    ctx.x += 1


def flow() -> Cadence[Ctx]:
    c = Cadence("bench", Ctx())
    for i in range(STEPS):
        c = c.then(f"s{i}", bump)
    return c


async def plain(runs: int) -> float:
    c = flow()
    start = time.perf_counter()
    for _ in range(runs):
        await c.run()
    return (time.perf_counter() - start) / (runs * STEPS)


async def durable(
    runs: int, folder: Path, synchronous: str, *, offload: bool | None = None
) -> float:
    level = cast("Synchronous", synchronous)
    store = SQLiteStore(folder / f"d-{synchronous}.db", synchronous=level, offload=offload)
    return await per_durable_step(runs, store)


async def per_durable_step(runs: int, store: SQLiteStore | PostgresStore) -> float:
    """Seconds per step of `runs` ten-step durable runs on `store` (after one warm-up run)."""
    c = flow()
    tag = uuid.uuid4().hex  # new ids every round: a finished id would return without running
    await c.run(run_id=f"warm-{tag}", store=store)
    start = time.perf_counter()
    for i in range(runs):
        await c.run(run_id=f"{tag}-{i}", store=store)
    elapsed = time.perf_counter() - start
    await store.aclose()
    return elapsed / (runs * STEPS)


class Floor:
    """Replay a durable run's own writes with plain sqlite3, in one thread: the physical floor.

    Per ten-step run, what `SQLiteStore` commits, the same bytes (the plan, fingerprint and
    context read back from a real durable run's row) in a table with the same schema and
    indexes, in the same database file (so the same WAL state): one INSERT not fsync'd (the
    claim), then nine UPDATEs of position, step and context and one finishing UPDATE, each
    its own commit, fsync'd at FULL. A run commits ten times at the store's level, as a
    durable run does: whatever a durable step costs above it is cadence's own work.
    """

    def __init__(self, path: Path, synchronous: str) -> None:
        self.synchronous = synchronous
        self.connection = sqlite3.connect(path, isolation_level=None)
        connection = self.connection
        connection.execute(f"PRAGMA synchronous={synchronous}")
        schema = connection.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'cadence_runs'"
        ).fetchone()[0]
        connection.execute(
            str(schema)
            .replace("cadence_runs", "bare_runs", 1)
            .replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)
        )
        connection.execute("CREATE INDEX IF NOT EXISTS bare_runs_status ON bare_runs (status)")
        connection.execute("CREATE INDEX IF NOT EXISTS bare_runs_created ON bare_runs (created_at)")
        row = connection.execute(
            "SELECT cadence, plan, fingerprint, context FROM cadence_runs "
            "WHERE status = 'completed' LIMIT 1"
        ).fetchone()
        self.cadence, self.plan, self.fingerprint, self.context = row
        self.owner = f"{socket.gethostname()}:{os.getpid()}:1234567:{uuid.uuid4().hex[:12]}"

    def commits(self) -> list[Callable[[], object]]:
        """Return one run's commits, in order, each a call of plain sqlite3."""
        connection, owner, context = self.connection, self.owner, self.context
        run: list[Callable[[], object]] = []
        run_id = uuid.uuid4().hex
        level = self.synchronous
        fsyncs = level in ("FULL", "EXTRA")

        def claim() -> None:
            if fsyncs:
                connection.execute("PRAGMA synchronous=NORMAL")  # the claim is not fsync'd
            connection.execute(
                "INSERT INTO bare_runs VALUES "
                "(?, ?, 'running', 0, 's0', ?, ?, ?, NULL, 1, ?, NULL, ?, ?)",
                (run_id, self.cadence, self.plan, self.fingerprint, context, owner, 0.0, 0.0),
            )
            if fsyncs:
                connection.execute(f"PRAGMA synchronous={level}")

        def checkpoint(position: int) -> Callable[[], object]:
            return lambda: connection.execute(
                "UPDATE bare_runs SET position = ?, step = ?, context = ?, inner = ?, "
                "updated_at = ? WHERE run_id = ? AND owner = ? AND status = 'running'",
                (position, f"s{position}", context, None, time.time(), run_id, owner),
            )

        def finish() -> object:
            return connection.execute(
                "UPDATE bare_runs SET status = 'completed', owner = NULL, context = ?, "
                "position = ?, updated_at = ? WHERE run_id = ? AND owner = ? "
                "AND status = 'running'",
                (context, STEPS, time.time(), run_id, owner),
            )

        run.append(claim)
        run.extend(checkpoint(position) for position in range(1, STEPS))
        run.append(finish)
        return run

    def run(self) -> None:
        """Commit one run's writes on this thread."""
        for commit in self.commits():
            commit()

    async def run_off_loop(self, store: SQLiteStore) -> None:
        """Commit one run's writes, each handed to the store's writer thread and awaited."""
        writer = store._writer  # pyright: ignore[reportPrivateUsage] # the same handoff
        for commit in self.commits():
            await writer.run(lambda call: call(), commit)

    def close(self) -> None:
        self.connection.close()


def bare(runs: int, folder: Path, synchronous: str) -> float:
    """Seconds per step of the floor, on the durable runs' own file, between their rounds."""
    floor = Floor(folder / f"d-{synchronous}.db", synchronous)
    start = time.perf_counter()
    for _ in range(runs):
        floor.run()
    elapsed = time.perf_counter() - start
    floor.close()
    return elapsed / (runs * STEPS)


async def full_pairs(pairs: int, folder: Path) -> tuple[float, float, float, float, float]:
    """Alternate durable FULL runs, the floor's run, and the floor's run off the event loop.

    fsync here swings from 0.3 to 8 ms with the other jobs' I/O, so separate rounds compare
    different disks; alternating run by run compares the same moment. The durable runs are
    the default store (commits on the writer thread) and one with `offload=False` (the event
    loop waits for each fsync, as a worker process may let it). The floor is also run with
    each commit handed to the store's writer thread, as any store that keeps an fsync off the
    event loop must: what that handoff costs around an fsync on this machine. Return the
    medians per step of the default store, the floor and the handed floor, the median of the
    pairs' ratios default / floor, and the median ratio inline / floor.
    """
    store = SQLiteStore(folder / "pairs.db", synchronous="FULL")
    inline = SQLiteStore(folder / "pairs.db", synchronous="FULL", offload=False)
    c = flow()
    tag = uuid.uuid4().hex
    await c.run(run_id=f"warm-{tag}", store=store)
    await c.run(run_id=f"warm-inline-{tag}", store=inline)
    floor = Floor(folder / "pairs.db", "FULL")
    floor.connection.close()
    floor.connection = sqlite3.connect(
        folder / "pairs.db", isolation_level=None, check_same_thread=False
    )
    floor.connection.execute("PRAGMA synchronous=FULL")
    floor.run()
    steps: list[float] = []
    commits: list[float] = []
    handed: list[float] = []
    inlined: list[float] = []
    for i in range(pairs):
        start = time.perf_counter()
        await c.run(run_id=f"{tag}-{i}", store=store)
        steps.append((time.perf_counter() - start) / STEPS)
        start = time.perf_counter()
        floor.run()
        commits.append((time.perf_counter() - start) / STEPS)
        start = time.perf_counter()
        await floor.run_off_loop(store)
        handed.append((time.perf_counter() - start) / STEPS)
        start = time.perf_counter()
        await c.run(run_id=f"inline-{tag}-{i}", store=inline)
        inlined.append((time.perf_counter() - start) / STEPS)
    floor.close()
    await store.aclose()
    await inline.aclose()
    ratios = [a / b for a, b in zip(steps, commits, strict=True)]
    inline_ratios = [a / b for a, b in zip(inlined, commits, strict=True)]
    median = statistics.median
    return median(steps), median(commits), median(handed), median(ratios), median(inline_ratios)


def dbos_per_step(runs: int, folder: Path, synchronous: str) -> float | str:
    """Run DBOS's ten-step workflow on SQLite (WAL, `synchronous`); seconds per step.

    DBOS (`pip install dbos`) is imported here only. Its steps checkpoint their outputs to its
    system database, a SQLite file set to the same journal mode and durability as cadence's.
    Returns why not, as text, when DBOS cannot be imported or run.
    """
    try:
        import sqlalchemy as sa  # noqa: PLC0415 # DBOS's own dependency, for its engine
        from dbos import DBOS, SetWorkflowID  # noqa: PLC0415 # optional, for the comparison
        from sqlalchemy import event  # noqa: PLC0415 # as above
    except ImportError as exc:
        return f"not installed ({exc}); pip install dbos"
    path = folder / f"dbos-{synchronous}.db"
    engine = sa.create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(connection: sqlite3.Connection, _record: object) -> None:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")

    DBOS(
        config={
            "name": "bench",
            "system_database_url": f"sqlite:///{path}",
            "system_database_engine": engine,
            "log_level": "WARNING",
        }
    )

    @DBOS.step()
    def step(x: int) -> int:
        return x + 1

    @DBOS.workflow()
    def workflow(x: int) -> int:
        for _ in range(STEPS):
            x = step(x)
        return x

    try:
        DBOS.launch()
        tag = uuid.uuid4().hex
        with SetWorkflowID(f"warm-{tag}"):
            workflow(0)
        start = time.perf_counter()
        for i in range(runs):
            with SetWorkflowID(f"{tag}-{i}"):
                workflow(0)
        return (time.perf_counter() - start) / (runs * STEPS)
    except Exception as exc:  # noqa: BLE001 # reported in the table instead
        return f"failed: {type(exc).__name__}: {exc}"
    finally:
        DBOS.destroy(destroy_registry=True)
        engine.dispose()


async def durable_postgres(runs: int, dsn: str) -> float:
    from cadence.durable import PostgresStore  # noqa: PLC0415 # optional: psycopg

    return await per_durable_step(runs, PostgresStore(dsn))


BARE_ROW = b'{"x":1,"note":"' + b"n" * 200 + b'"}'  # a bare commit's context: a step's size


async def _bare_table(connection: Any) -> None:  # Any: psycopg's connection, imported lazily
    """Create the one-row table bare UPDATE-and-COMMITs write to."""
    await connection.execute(
        "CREATE TABLE IF NOT EXISTS bench_bare (id TEXT PRIMARY KEY, position INT, context BYTEA)"
    )
    await connection.execute(
        "INSERT INTO bench_bare VALUES ('r', 0, '') ON CONFLICT (id) DO NOTHING"
    )


async def _bare_commits(connection: Any, commits: int) -> float:  # Any: as above
    """Return seconds per bare UPDATE-and-COMMIT of a step-sized row, over `commits` of them."""
    start = time.perf_counter()
    for i in range(commits):
        await connection.execute(
            "UPDATE bench_bare SET position = %s, context = %s WHERE id = 'r'", (i, BARE_ROW)
        )
    return (time.perf_counter() - start) / commits


async def bare_postgres(commits: int, dsn: str) -> float:
    import psycopg  # noqa: PLC0415 # optional

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        await _bare_table(connection)
        return await _bare_commits(connection, commits)


async def postgres_pairs(pairs: int, dsn: str) -> tuple[float, float, float]:
    """Alternate one durable ten-step run and ten bare UPDATE-and-COMMITs on PostgreSQL.

    The machine's other jobs swing a round trip by 2x from one second to the next, so
    separate rounds compare different machines; alternating run by run compares the same
    moment. Return the median per durable step, per bare commit, and of the pairs' ratios.
    """
    import psycopg  # noqa: PLC0415 # optional

    from cadence.durable import PostgresStore  # noqa: PLC0415 # optional: psycopg

    store = PostgresStore(dsn)
    c = flow()
    tag = uuid.uuid4().hex
    await c.run(run_id=f"warm-{tag}", store=store)
    steps: list[float] = []
    commits: list[float] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        await _bare_table(connection)
        for i in range(pairs):
            start = time.perf_counter()
            await c.run(run_id=f"{tag}-{i}", store=store)
            steps.append((time.perf_counter() - start) / STEPS)
            commits.append(await _bare_commits(connection, STEPS))
    await store.aclose()
    ratios = [a / b for a, b in zip(steps, commits, strict=True)]
    return statistics.median(steps), statistics.median(commits), statistics.median(ratios)


async def trio_and_asyncio(rounds: int, runs: int, dsn: str) -> tuple[float, float, float]:
    """Alternate rounds of durable runs on PostgreSQL under asyncio and under trio.

    Under trio the store runs psycopg on an asyncio loop thread of its own; each round's
    trio run has a thread of its own (this loop is asyncio's). Return the median seconds
    per durable step on each, and the median of the rounds' ratios trio / asyncio.
    """
    on_asyncio: list[float] = []
    on_trio: list[float] = []
    for _ in range(rounds):
        on_asyncio.append(await durable_postgres(runs, dsn))
        on_trio.append(
            await anyio.to_thread.run_sync(
                lambda: anyio.run(durable_postgres, runs, dsn, backend="trio")
            )
        )
    ratios = [t / a for a, t in zip(on_asyncio, on_trio, strict=True)]
    median = statistics.median
    return median(on_asyncio), median(on_trio), median(ratios)


# --------------------------------------------------------------------------- throughput
# ruff: noqa: S603, ASYNC220 # the benchmark runs its own server, pgbench and workers


def start_postgres(base: Path) -> tuple[str, Callable[[], None]]:
    """Start a PostgreSQL server (Debian's, as the `postgres` user) on 127.0.0.1 in `base`.

    Default durability: `fsync` and `synchronous_commit` on, as in production.
    """
    found = [Path(f"/usr/lib/postgresql/{v}/bin") for v in ("17", "16", "15")]
    bin_dir = next((d for d in found if (d / "pg_ctl").exists()), None)
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/pg_ctl)")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(base, "postgres")
    data = base / "data"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200"
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(base / "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            check=False,
            capture_output=True,
        )

    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


def pgbench(dsn: str, clients: int, seconds: int, folder: Path) -> float:
    """Return pgbench's TPS for a one-row INSERT (each its own commit) with `clients`."""
    import psycopg  # noqa: PLC0415 # optional

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS bench_insert (id bigserial, v int)")
    script = folder / "insert.sql"
    script.write_text("INSERT INTO bench_insert (v) VALUES (1);\n")
    found = [Path(f"/usr/lib/postgresql/{v}/bin/pgbench") for v in ("17", "16", "15")]
    binary = next((str(b) for b in found if b.exists()), "pgbench")
    done = subprocess.run(
        [
            binary,
            "-n",
            "-f",
            str(script),
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            "-T",
            str(seconds),
            dsn,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    line = next(t for t in done.stdout.splitlines() if t.startswith("tps"))
    return float(line.split("=")[1].split()[0])


def _cpu_ticks(pid: int) -> int:
    """Return a process's user and system CPU ticks so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _server_ticks(postmaster: int) -> int:
    """Return the CPU ticks of the benchmark's server so far: the postmaster, its backends,
    and (in the postmaster's own count) the backends that exited. Other servers on the
    machine are left out."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == postmaster:
            total += sum(int(f) for f in fields[11:15])  # its own time, and exited children's
        elif int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total


def _busy() -> tuple[int, int]:
    """Return the machine's busy and total CPU ticks so far (`/proc/stat`)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


async def worker_main(dsn: str, concurrency: int) -> None:
    """A worker process: open the store, say `ready`, wait for `go`, work until SIGTERM."""
    from cadence.durable import PostgresStore, Worker  # noqa: PLC0415 # optional: psycopg

    # A connection per run in hand (and one for the claims and the heartbeat), opened now.
    store = PostgresStore(dsn, min_size=concurrency + 2, max_size=concurrency + 2)
    await store.list_runs(limit=1)  # the pool is open and the schema made
    print("ready", flush=True)  # to the benchmark, which says go to every worker at once
    await anyio.to_thread.run_sync(sys.stdin.readline)
    await Worker(store, [flow()], concurrency=concurrency, idle=0.01).run()
    await store.aclose()


async def throughput(
    dsn: str, postmaster: int, workers: int, runs: int, concurrency: int
) -> tuple[float, float, float, float, float]:
    """Run `runs` queued ten-step runs on `workers` processes.

    Return runs per second, commits per run, the machine's CPU busy share, and the workers'
    and the PostgreSQL server's CPU seconds per run (the workers' start-up left out).
    """
    import psycopg  # noqa: PLC0415 # optional

    from cadence.durable import PostgresStore, enqueue  # noqa: PLC0415 # optional

    store = PostgresStore(dsn)
    c = flow()
    tag = uuid.uuid4().hex[:8]
    for i in range(runs):
        await enqueue(c, Ctx(), run_id=f"{tag}-{i}", store=store)
    await store.aclose()
    env = dict(os.environ)
    root = str(Path(__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    args = [sys.executable, __file__, "--worker", dsn, "--concurrency", str(concurrency)]
    procs = [
        subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(workers)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    # Whether a run is left, from the queue's partial indexes, read in order: the entries of
    # finished runs are marked dead as the scans pass them, so a poll stays cheap however many
    # runs finished (a count walked them all every time, 4 ms after 4000 runs).
    left = (
        "SELECT EXISTS (SELECT FROM cadence_runs WHERE status = 'pending') "
        "OR EXISTS (SELECT FROM cadence_runs WHERE lease_until IS NOT NULL AND status = 'running')"
    )
    commits = "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'"
    ticks = os.sysconf("SC_CLK_TCK")
    started = sum(_cpu_ticks(proc.pid) for proc in procs)  # imports and pools: not per run
    with psycopg.connect(dsn, autocommit=True) as connection:
        before = connection.execute(commits).fetchone()
        server0 = _server_ticks(postmaster)
        busy0, total0 = _busy()
        start = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        polls = 0
        while True:
            polls += 1
            row = connection.execute(left).fetchone()
            if row is not None and not row[0]:
                break
            await anyio.sleep(0.02)
        elapsed = time.perf_counter() - start
        busy1, total1 = _busy()
        server = (_server_ticks(postmaster) - server0) / ticks
    cpu = (sum(_cpu_ticks(proc.pid) for proc in procs) - started) / ticks  # the workers' own
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.communicate(timeout=30)
    await anyio.sleep(1.5)  # the workers' backends have reported their commits
    with psycopg.connect(dsn, autocommit=True) as connection:
        after = connection.execute(commits).fetchone()
    assert before is not None
    assert after is not None
    per_run = (after[0] - before[0] - polls - 3) / runs  # less this loop's reads (one commit each)
    busy = (busy1 - busy0) / max(1, total1 - total0)
    return runs / elapsed, per_run, busy, cpu / runs, server / runs


async def throughput_main(runs: int, concurrency: int) -> None:
    """Start a server, measure pgbench's ceiling and 1, 2, 4 workers, print the table.

    The ceiling is measured again right after the 4 workers (the machine's other jobs come
    and go), and the higher of the 4-client figures is the one compared with.
    """
    base = Path(tempfile.mkdtemp(prefix="cadence-bench-pg-"))
    dsn, stop = start_postgres(base)
    try:
        print(
            f"PostgreSQL on 127.0.0.1 (fsync on, synchronous_commit on), {os.cpu_count()} cores; "
            f"{runs} queued runs, {concurrency} at once per worker"
        )
        print(f"{'clients or workers':<34} {'1':>9} {'2':>9} {'4':>9}")
        ceilings = [pgbench(dsn, n, 3, base) for n in (1, 2, 4)]
        postmaster = int((base / "data" / "postmaster.pid").read_text().split()[0])
        results = [await throughput(dsn, postmaster, n, runs, concurrency) for n in (1, 2, 4)]
        doubled = await throughput(dsn, postmaster, 4, runs, concurrency * 2)
        again = pgbench(dsn, 4, 3, base)
        print(f"{'pgbench one-row INSERT, TPS':<34}" + "".join(f"{t:>10.0f}" for t in ceilings))
        line = "".join(f"{r[0]:>10.1f}" for r in results)
        print(f"{'ten-step runs/s':<34}{line}")
        print(f"{'commits per run':<34}" + "".join(f"{r[1]:>10.1f}" for r in results))
        print(f"{'machine CPU busy':<34}" + "".join(f"{r[2]:>10.0%}" for r in results))
        line = "".join(f"{r[3] * 1e3:>10.2f}" for r in results)
        print(f"{'worker CPU ms per run':<34}{line}")
        line = "".join(f"{r[4] * 1e3:>10.2f}" for r in results)
        print(f"{'PostgreSQL CPU ms per run':<34}{line}")
        cores = os.cpu_count() or 1
        line = "".join(f"{r[2] * cores - r[0] * (r[3] + r[4]):>10.2f}" for r in results)
        print(f"{'other jobs, cores busy':<34}{line}")
        step, floor, ratio = await postgres_pairs(150, dsn)
        print(
            f"\none run at a time, alternating run by run: {step * 1e6:.0f} us per durable step, "
            f"{floor * 1e6:.0f} us per bare UPDATE-and-COMMIT; median of the pairs' ratios "
            f"{ratio:.2f}x (target <= 1.5x; 11 commits per 10-step run make 1.1x)"
        )
        mine, theirs, slower = await trio_and_asyncio(5, 30, dsn)
        print(
            f"under trio (the store on a loop thread of its own): {theirs * 1e6:.0f} us per "
            f"durable step against asyncio's {mine * 1e6:.0f} us; median of 5 alternating "
            f"rounds' ratios {slower:.2f}x"
        )
        ceiling, (four, per_run, _, worker, server) = max(ceilings[2], again), results[2]
        print(
            f"\n4 workers: {four:.1f} runs/s; the ceiling / commits per run is "
            f"{ceiling:.0f} / {per_run:.1f} = {ceiling / per_run:.1f} runs/s "
            f"({four / (ceiling / per_run):.0%} of it; target >= 50%; 4 clients measured again "
            f"after the workers: {again:.0f} TPS)"
        )
        print(
            f"4 workers running {concurrency * 2} at once each: {doubled[0]:.1f} runs/s "
            f"({doubled[0] / (ceiling / doubled[1]):.0%} of the ceiling / commits; CPU per run "
            f"{doubled[3] * 1e3:.2f} ms in the workers, {doubled[4] * 1e3:.2f} in the server)"
        )
        print(
            f"a run costs {(worker + server) * 1e3:.2f} ms of CPU (workers and server): "
            f"{cores} cores wholly ours would allow at most {cores / (worker + server):.0f} runs/s"
        )
    finally:
        stop()
        shutil.rmtree(base, ignore_errors=True)


def fsyncs_per_step(case: str, synchronous: str) -> float | str:
    """Count a case's fsync and fdatasync calls per durable step with `strace -f -c`.

    The case runs in a fresh process twice, with 1 and 11 ten-step runs: the difference over
    100 steps leaves out opening, schema and warm-up. Returns why not, as text, without strace.
    """
    if not Path("/usr/bin/strace").exists():
        return "strace not installed (apt-get install strace)"
    counts: list[int] = []
    for runs in (1, 11):
        done = subprocess.run(
            [
                "/usr/bin/strace",
                "-f",
                "-qq",
                "-c",
                "-e",
                "trace=fsync,fdatasync",
                sys.executable,
                __file__,
                "--case",
                case,
                "--sync",
                synchronous,
                "--runs",
                str(runs),
            ],
            check=False,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        )
        calls = 0
        for line in done.stderr.splitlines():
            parts = line.split()
            if parts and parts[-1] in ("fsync", "fdatasync"):
                calls += int(parts[3])
        counts.append(calls)
    return (counts[1] - counts[0]) / (10 * STEPS)


async def case_main(case: str, runs: int, synchronous: str) -> None:
    """Run one case `runs` times in this process (for `fsyncs_per_step` to count)."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        if case == "dbos":
            print(dbos_per_step(runs, folder, synchronous))
            return
        await durable(runs if case == "cadence" else 1, folder, synchronous)
        if case == "floor":
            bare(runs, folder, synchronous)


async def main(runs: int, rounds: int, dsn: str | None = None, with_dbos: bool = True) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        rows: dict[str, list[float]] = {}
        for _ in range(rounds):
            rows.setdefault("plain step (no store)", []).append(await plain(runs * 20))
            for sync, n in (("NORMAL", runs), ("FULL", max(2, runs // 10))):
                rows.setdefault(f"durable step, {sync}", []).append(await durable(n, folder, sync))
                rows.setdefault(f"floor: same writes, plain sqlite3, {sync}", []).append(
                    bare(n, folder, sync)
                )
            rows.setdefault("durable step, NORMAL, offload=True", []).append(
                await durable(runs, folder, "NORMAL", offload=True)
            )
            if dsn is not None:
                rows.setdefault("durable step, PostgreSQL", []).append(
                    await durable_postgres(runs, dsn)
                )
                rows.setdefault("bare UPDATE-and-COMMIT, PostgreSQL", []).append(
                    await bare_postgres(runs * STEPS, dsn)
                )
        best = {k: min(v) * 1e6 for k, v in rows.items()}
        print(f"{'case (per step of a ten-step run)':<46} {'best us':>9} {'median us':>10}")
        for key, values in rows.items():
            print(f"{key:<46} {best[key]:>9.1f} {statistics.median(values) * 1e6:>10.1f}")
        plain_us = best["plain step (no store)"]
        over = best["durable step, NORMAL"] - plain_us
        print(
            f"\nNORMAL (default: commits on the event loop, they never wait): {over:.1f} us per "
            f"durable step above the plain step (target <= 50 us); the floor's own "
            f"{best['floor: same writes, plain sqlite3, NORMAL']:.1f} us are in it"
        )
        thread = best["durable step, NORMAL, offload=True"] - plain_us
        print(f"NORMAL, offload=True (the writer thread): {thread:.1f} us above the plain step")
        step, commit, handed, ratio, inline = await full_pairs(max(10, runs // 2), folder)
        print(
            f"FULL, alternating run by run: {step * 1e6:.0f} us per durable step, "
            f"{commit * 1e6:.0f} us per step of the floor (the same writes and fsyncs): "
            f"{step / commit:.2f}x the medians, median of the pairs' ratios {ratio:.2f}x "
            "(target <= 1.2x)"
        )
        print(
            f"  the floor with each commit handed to the writer thread (an fsync must not block "
            f"the event loop): {handed * 1e6:.0f} us per step, {handed / commit:.2f}x the floor; "
            f"cadence is {step / handed:.2f}x that"
        )
        print(
            f"FULL, offload=False (the event loop waits for each fsync: a worker's loop): "
            f"median of the pairs' ratios {inline:.2f}x the floor (target <= 1.2x)"
        )
        if with_dbos:
            print("\nside by side, SQLite in WAL mode, per durable step (ten-step runs):")
            print(
                f"{'durability':<11} {'floor us':>9} {'cadence us':>11} {'DBOS us':>9} "
                f"{'DBOS / cadence':>15} {'DBOS / floor':>13}"
            )
            floors = {"NORMAL": best["floor: same writes, plain sqlite3, NORMAL"] / 1e6}
            floors["FULL"] = commit
            dbos_full: float | None = None
            for sync, n in (("NORMAL", max(10, runs // 2)), ("FULL", max(5, runs // 10))):
                theirs = await anyio.to_thread.run_sync(dbos_per_step, n, folder, sync)
                ours = step if sync == "FULL" else best[f"durable step, {sync}"] / 1e6
                if isinstance(theirs, str):
                    print(f"{sync:<11} {ours * 1e6:>11.1f}  DBOS {theirs}")
                    continue
                if sync == "FULL":
                    dbos_full = theirs
                print(
                    f"{sync:<11} {floors[sync] * 1e6:>9.1f} {ours * 1e6:>11.1f} "
                    f"{theirs * 1e6:>9.1f} {theirs / ours:>14.1f}x {theirs / floors[sync]:>12.1f}x"
                )
            print("  no store beats the floor: DBOS / floor bounds DBOS / cadence.")
            if dbos_full is not None:
                print(
                    f"  at FULL: any store that keeps the fsync off the event loop pays at least "
                    f"the floor handed to a thread, {handed * 1e6:.0f} us, so it can be at most "
                    f"{dbos_full / handed:.1f}x faster than DBOS here (cadence: "
                    f"{dbos_full / step:.1f}x); both make an fsync per step, so the bound falls "
                    "as fsync time grows"
                )
                print(
                    f"  at FULL with offload=False (the loop waits for the fsync), about "
                    f"{dbos_full / (commit * inline):.1f}x faster than DBOS"
                )
            counts = {who: fsyncs_per_step(who, "FULL") for who in ("cadence", "floor", "dbos")}
            print(
                "fsync + fdatasync calls per step at FULL (strace -f -c, 100 steps): "
                + ", ".join(
                    f"{who} {n if isinstance(n, str) else f'{n:.2f}'}" for who, n in counts.items()
                )
            )
        if dsn is not None:
            pg = best["durable step, PostgreSQL"] / best["bare UPDATE-and-COMMIT, PostgreSQL"]
            print(f"PostgreSQL: {pg:.2f}x a bare UPDATE-and-COMMIT round trip, best rounds")
            step, floor, ratio = await postgres_pairs(max(20, runs), dsn)
            print(
                f"PostgreSQL, alternating run by run: {step * 1e6:.0f} us per durable step, "
                f"{floor * 1e6:.0f} us per bare UPDATE-and-COMMIT, median of the pairs' ratios "
                f"{ratio:.2f}x (target <= 1.5x)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--postgres", metavar="DSN", help="also measure PostgresStore (asyncio)")
    parser.add_argument("--no-dbos", action="store_true", help="skip the DBOS comparison")
    parser.add_argument(
        "--throughput", action="store_true", help="runs/s of 1, 2, 4 workers next to pgbench"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="runs at once per worker")
    parser.add_argument("--worker", metavar="DSN", help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=["cadence", "floor", "dbos"], help=argparse.SUPPRESS)
    parser.add_argument("--sync", default="FULL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        anyio.run(case_main, args.case, args.runs, args.sync)
    elif args.worker:
        anyio.run(worker_main, args.worker, args.concurrency)
    elif args.throughput:
        anyio.run(throughput_main, args.runs * 4, args.concurrency)
    else:
        anyio.run(
            main, args.runs, args.rounds, args.postgres, not args.no_dbos, backend=args.backend
        )
