"""What a durable step costs on SQLite, next to a plain step and a bare SQLite commit.

    .venv/bin/python benchmarks/durable.py [--runs N] [--backend asyncio|trio] [--postgres DSN]

Method. Ten-step cadences (each beat `ctx.x += 1` and a 200-byte string field, so a commit
writes a realistic small row) run `--runs` times with a new run id each, in one event loop,
durable at `synchronous=NORMAL` and `FULL`, and without a store. The per-step figure is the
run's time divided by its commits (ten: nine checkpoints and the finish; the claim is counted
too, so it is slightly pessimistic). The floor is a bare `UPDATE ... ; COMMIT` of the same bytes
in the same database file (WAL, same `synchronous`), from plain sqlite3 in one thread: what
any durable step must pay at least. Durable calls run on the store's writer thread. At FULL
the two alternate run by run (fsync times here swing with other jobs' I/O). The script
prints; it checks nothing. About 10-20 s.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import anyio
import anyio.to_thread

from cadence import Cadence, Context
from cadence.durable import SQLiteStore, Synchronous

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


async def durable(runs: int, folder: Path, synchronous: str, *, offload: bool = True) -> float:
    level = cast("Synchronous", synchronous)
    store = SQLiteStore(folder / f"d-{synchronous}.db", synchronous=level, offload=offload)
    c = flow()
    tag = uuid.uuid4().hex  # new ids every round: a finished id would return without running
    await c.run(run_id=f"warm-{tag}", store=store)
    start = time.perf_counter()
    for i in range(runs):
        await c.run(run_id=f"{tag}-{i}", store=store)
    elapsed = time.perf_counter() - start
    await store.aclose()
    return elapsed / (runs * STEPS)


def bare(commits: int, folder: Path, synchronous: str) -> float:
    """Commit the same bytes with plain sqlite3, in the durable runs' own file (same WAL state).

    A fresh file's WAL grows with each commit, and an fsync that grows a file costs several
    times one that does not on this disk: the floor is measured on the file the durable runs
    use, between their rounds, so both pay the same file's costs.
    """
    connection = sqlite3.connect(folder / f"d-{synchronous}.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute(
        "CREATE TABLE IF NOT EXISTS bare (id TEXT PRIMARY KEY, position INT, context BLOB)"
    )
    connection.execute("INSERT OR REPLACE INTO bare VALUES ('r', 0, x'')")
    blob = b'{"x":1,"note":"' + b"n" * 200 + b'"}'
    start = time.perf_counter()
    for i in range(commits):
        connection.execute("UPDATE bare SET position = ?, context = ? WHERE id = 'r'", (i, blob))
    elapsed = time.perf_counter() - start
    connection.close()
    return elapsed / commits


async def full_pairs(pairs: int, folder: Path) -> tuple[float, float, float]:
    """Alternate one durable FULL run and ten bare fsync'd commits on the same file.

    fsync here swings from 0.3 to 8 ms with the other jobs' I/O, so separate rounds compare
    different disks; alternating run by run compares the same moment. Return the median per
    durable step, the median per bare commit, and the median of the pairs' ratios.
    """
    store = SQLiteStore(folder / "pairs.db", synchronous="FULL")
    c = flow()
    tag = uuid.uuid4().hex
    await c.run(run_id=f"warm-{tag}", store=store)
    connection = sqlite3.connect(folder / "pairs.db", isolation_level=None)
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute(
        "CREATE TABLE IF NOT EXISTS bare (id TEXT PRIMARY KEY, position INT, context BLOB)"
    )
    connection.execute("INSERT OR REPLACE INTO bare VALUES ('r', 0, x'')")
    blob = b'{"x":1,"note":"' + b"n" * 200 + b'"}'
    steps: list[float] = []
    commits: list[float] = []
    for i in range(pairs):
        start = time.perf_counter()
        await c.run(run_id=f"{tag}-{i}", store=store)
        steps.append((time.perf_counter() - start) / STEPS)
        start = time.perf_counter()
        for j in range(STEPS):
            connection.execute(
                "UPDATE bare SET position = ?, context = ? WHERE id = 'r'", (j, blob)
            )
        commits.append((time.perf_counter() - start) / STEPS)
    connection.close()
    await store.aclose()
    ratios = [a / b for a, b in zip(steps, commits, strict=True)]
    return statistics.median(steps), statistics.median(commits), statistics.median(ratios)


def dbos_per_step(runs: int, folder: Path, synchronous: str) -> float | str:
    """Run DBOS's ten-step workflow on SQLite (WAL, `synchronous`); seconds per step.

    DBOS (`pip install dbos`) is imported here only. Its steps checkpoint their outputs to its
    system database, a SQLite file set to the same journal mode and durability as cadence's.
    Returns why not, as text, when DBOS cannot be imported or run.
    """
    try:
        import sqlalchemy as sa  # noqa: PLC0415 # DBOS's own dependency, for its engine
        from dbos import DBOS, SetWorkflowID  # noqa: PLC0415 # optional, for the comparison
    except ImportError as exc:
        return f"not installed ({exc}); pip install dbos"
    path = folder / f"dbos-{synchronous}.db"
    engine = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
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

    store = PostgresStore(dsn)
    c = flow()
    tag = uuid.uuid4().hex
    await c.run(run_id=f"warm-{tag}", store=store)
    start = time.perf_counter()
    for i in range(runs):
        await c.run(run_id=f"{tag}-{i}", store=store)
    elapsed = time.perf_counter() - start
    await store.aclose()
    return elapsed / (runs * STEPS)


async def bare_postgres(commits: int, dsn: str) -> float:
    import psycopg  # noqa: PLC0415 # optional

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS bench_bare "
            "(id TEXT PRIMARY KEY, position INT, context BYTEA)"
        )
        await connection.execute(
            "INSERT INTO bench_bare VALUES ('r', 0, '') ON CONFLICT (id) DO NOTHING"
        )
        blob = b'{"x":1,"note":"' + b"n" * 200 + b'"}'
        start = time.perf_counter()
        for i in range(commits):
            await connection.execute(
                "UPDATE bench_bare SET position = %s, context = %s WHERE id = 'r'", (i, blob)
            )
        return (time.perf_counter() - start) / commits


async def main(runs: int, rounds: int, dsn: str | None = None, with_dbos: bool = True) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        rows: dict[str, list[float]] = {}
        for _ in range(rounds):
            rows.setdefault("plain step (no store)", []).append(await plain(runs * 20))
            rows.setdefault("durable step, NORMAL, offload=False", []).append(
                await durable(runs, folder, "NORMAL", offload=False)
            )
            for sync, n in (("NORMAL", runs), ("FULL", max(2, runs // 10))):
                rows.setdefault(f"durable step, {sync}", []).append(await durable(n, folder, sync))
                rows.setdefault(f"bare SQLite commit, {sync}", []).append(
                    bare(n * STEPS, folder, sync)
                )
            if dsn is not None:
                rows.setdefault("durable step, PostgreSQL", []).append(
                    await durable_postgres(runs, dsn)
                )
                rows.setdefault("bare UPDATE-and-COMMIT, PostgreSQL", []).append(
                    await bare_postgres(runs * STEPS, dsn)
                )
        best = {k: min(v) * 1e6 for k, v in rows.items()}
        print(f"{'case':<40} {'best us':>10} {'median us':>10}")
        for key, values in rows.items():
            print(f"{key:<40} {best[key]:>10.1f} {statistics.median(values) * 1e6:>10.1f}")
        over = best["durable step, NORMAL"] - best["plain step (no store)"]
        print(f"\nNORMAL: {over:.1f} us per durable step above the plain step (target <= 50 us)")
        inline = best["durable step, NORMAL, offload=False"] - best["plain step (no store)"]
        print(f"NORMAL, offload=False: {inline:.1f} us per durable step above the plain step")
        step, commit, ratio = await full_pairs(max(10, runs // 2), folder)
        print(
            f"FULL, alternating run by run: {step * 1e6:.0f} us per durable step, "
            f"{commit * 1e6:.0f} us per bare fsync'd commit of the same bytes: "
            f"{step / commit:.2f}x the medians, median of the pairs' ratios {ratio:.2f}x "
            "(target <= 1.2x; 11 commits per 10-step run make 1.1x the floor)"
        )
        if with_dbos:
            print("\nside by side, SQLite in WAL mode, per durable step (ten-step runs):")
            print(f"{'durability':<12} {'cadence us':>11} {'DBOS us':>10} {'DBOS / cadence':>15}")
            for sync, n in (("NORMAL", max(10, runs // 2)), ("FULL", max(5, runs // 10))):
                theirs = await anyio.to_thread.run_sync(dbos_per_step, n, folder, sync)
                ours = step if sync == "FULL" else best[f"durable step, {sync}"] / 1e6
                if isinstance(theirs, str):
                    print(f"{sync:<12} {ours * 1e6:>11.1f}  DBOS {theirs}")
                    continue
                print(
                    f"{sync:<12} {ours * 1e6:>11.1f} {theirs * 1e6:>10.1f} {theirs / ours:>14.1f}x"
                )
        if dsn is not None:
            pg = best["durable step, PostgreSQL"] / best["bare UPDATE-and-COMMIT, PostgreSQL"]
            print(f"PostgreSQL: {pg:.2f}x a bare UPDATE-and-COMMIT round trip (target <= 1.5x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--postgres", metavar="DSN", help="also measure PostgresStore (asyncio)")
    parser.add_argument("--no-dbos", action="store_true", help="skip the DBOS comparison")
    args = parser.parse_args()
    anyio.run(main, args.runs, args.rounds, args.postgres, not args.no_dbos, backend=args.backend)
