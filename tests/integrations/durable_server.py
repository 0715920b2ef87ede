"""A checkout service on uvicorn whose route runs durably on SQLite, for a test to SIGKILL.

    python durable_server.py DATABASE FOLDER

It serves on a free port of 127.0.0.1 and writes the port to FOLDER/port once it listens.
`charge` appends to FOLDER/effects (flushed and fsync'd, as a payment API's record would be);
`ship` appends that it started, then waits until FOLDER/release exists, then appends that it
shipped. A test kills the server while `ship` waits and starts another on the same database.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import uvicorn
from fastapi import FastAPI, Header

from cadence import Cadence, Context
from cadence.durable import SQLiteStore, idempotency_key
from cadence.integrations.fastapi import CadenceRouter


@dataclass
class Order(Context):
    order_id: str = ""
    key: str = ""
    charge_key: str = ""
    shipped: bool = False


def main(database: str, folder: Path) -> None:
    effects = folder / "effects"

    def record(line: str) -> None:
        with effects.open("a") as file:
            file.write(line + "\n")
            file.flush()
            os.fsync(file.fileno())

    async def charge(ctx: Order) -> None:
        ctx.charge_key = idempotency_key()  # what a payment API would be given
        record(f"charge {ctx.order_id} {ctx.charge_key}")

    async def ship(ctx: Order) -> None:
        record(f"ship-started {ctx.order_id}")
        while not (folder / "release").exists():  # noqa: ASYNC110 # the test makes it
            await asyncio.sleep(0.01)
        record(f"shipped {ctx.order_id}")
        ctx.shipped = True

    checkout = Cadence[Order]("checkout").then("charge", charge).then("ship", ship)
    router = CadenceRouter()

    @router.cadence(
        "/orders/{order_id}",
        checkout,
        store=SQLiteStore(database),
        run_id=lambda ctx: f"order-{ctx.key}",
    )
    async def create(order_id: str, idempotency_key: Annotated[str, Header()]) -> Order:
        return Order(order_id=order_id, key=idempotency_key)

    app = FastAPI()
    app.include_router(router)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none", http="h11")
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110 # uvicorn has no event for it
            await asyncio.sleep(0.005)
        (folder / "port.tmp").write_text(str(sock.getsockname()[1]))
        (folder / "port.tmp").rename(folder / "port")
        await task

    asyncio.run(serve())


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
