"""A PostgreSQL worker process for tests/durable/test_durable_postgres.py.

    python pg_worker.py DSN LOG [BACKEND]

Runs `Worker` over the `queued` cadence until SIGTERM. Every beat appends `run step pid` to LOG.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from cadence import Cadence, Context
from cadence.durable import PostgresStore, Worker, idempotency_key

LOG = [os.devnull]  # set from the command line when run as the worker (never on import)


@dataclass
class Job(Context):
    n: int = 0
    trail: list[str] = field(default_factory=list[str])


def make_beat(name: str) -> Callable[[Job], Awaitable[None]]:
    """Return a beat that logs its start and end, then folds its name into the context."""

    async def run(ctx: Job) -> None:
        key = idempotency_key()
        fd = os.open(LOG[0], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{key.split(':')[0]} {name} {os.getpid()} start\n".encode())
            await anyio.sleep(0.01)
            os.write(fd, f"{key.split(':')[0]} {name} {os.getpid()} end\n".encode())
        finally:
            os.close(fd)
        ctx.n = ctx.n * 2 + 1
        ctx.trail.append(name)

    return run


QUEUED = Cadence("queued", Job())
for _name in ("a", "b", "c", "d", "e"):
    QUEUED = QUEUED.then(_name, make_beat(_name))


async def main(dsn: str) -> None:
    store = PostgresStore(dsn, lease=1.0, poll_interval=0.05)
    await Worker(store, [QUEUED], concurrency=4, idle=0.05).run()
    await store.aclose()


if __name__ == "__main__":
    LOG[0] = sys.argv[2]
    anyio.run(main, sys.argv[1], backend=sys.argv[3] if len(sys.argv) > 3 else "asyncio")
