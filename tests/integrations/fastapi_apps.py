"""The FastAPI app the integration tests serve, in-process and on a real uvicorn server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import uvicorn
import web_apps
from fastapi import FastAPI, Header, HTTPException, Query
from pydantic import BaseModel
from web_apps import SECRET, JobContext, OrderContext, Tier

from cadence import CircuitBreaker, MergeConflictError
from cadence.integrations import Problem
from cadence.integrations.fastapi import CadenceRouter
from cadence.resilience import Clock


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> Clock:
        return Clock(monotonic=lambda: self.now)


class OrderBody(BaseModel):
    quantity: int = 1
    tier: Tier = Tier.SILVER


def new_job() -> JobContext:
    return JobContext()


def make_app(clock: FakeClock | None = None, *, debug: bool = False) -> FastAPI:
    app = FastAPI(debug=debug)
    router = CadenceRouter(prefix="/v1")

    @router.cadence("/orders/{order_id}", web_apps.orders, tags=["orders"])
    async def create_order(
        order_id: str,
        body: OrderBody,
        customer: Annotated[str, Header(alias="x-customer")] = "",
    ) -> OrderContext:
        """Place an order."""
        if body.quantity <= 0:
            raise ValueError(f"quantity must be positive {SECRET}")
        return OrderContext(order_id, body.quantity, customer, body.tier)

    @router.cadence("/quick/{order_id}", web_apps.orders)
    def quick_order(
        order_id: str, quantity: Annotated[int, Query(ge=1, le=50)] = 1
    ) -> OrderContext:
        return OrderContext(order_id, quantity)  # a sync factory

    @router.cadence("/orders/{order_id}", web_apps.orders, methods=["GET"], status_code=201)
    async def read_order(order_id: str) -> OrderContext:
        if order_id == "missing":
            raise HTTPException(404, "no such order", headers={"X-Hint": "check the id"})
        return OrderContext(order_id)

    for path, cadence in [
        ("/failing", web_apps.failing),
        ("/slow", web_apps.slow),
        ("/conflicting", web_apps.conflicting),
        ("/group", web_apps.group_failing),
        ("/nested", web_apps.nested),
        ("/declining", web_apps.declining),
    ]:
        router.cadence(path, cadence, name=path.strip("/"))(new_job)

    router.cadence(
        "/declining-mapped",
        web_apps.declining,
        error_map={web_apps.PaymentDeclinedError: 402, MergeConflictError: 409},
    )(new_job)
    router.cadence(
        "/conflicting-mapped",
        web_apps.conflicting,
        error_map={
            MergeConflictError: lambda exc: Problem(
                409, detail="try again", type="urn:example:conflict"
            )
        },
    )(new_job)
    router.cadence("/failing-debug", web_apps.failing, debug=True)(new_job)

    if clock is not None:
        breaker = CircuitBreaker("fastapi-test", 2, 30.0, clock=clock.clock())
        router.cadence("/guarded", web_apps.guarded(breaker))(new_job)
        first = CircuitBreaker("first", 1, 10.0, clock=clock.clock())
        second = CircuitBreaker("second", 1, 40.0, clock=clock.clock())
        first.open()
        second.open()
        router.cadence("/guarded-pair", web_apps.guarded_pair(first, second))(new_job)

    app.include_router(router)
    return app


@contextmanager
def uvicorn_server(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free port of 127.0.0.1 in a thread; stop it after."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        http="h11",
        loop="asyncio",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:  # startup takes a few milliseconds
        assert thread.is_alive(), "uvicorn died while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not shut down"
