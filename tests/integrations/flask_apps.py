"""The Flask app the integration tests serve, through the test client and a real server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import web_apps
from flask import Flask, abort, g, request
from web_apps import JobContext, OrderContext, Tier
from werkzeug.serving import make_server

from cadence import Cadence, CircuitBreaker, MergeConflictError, beat
from cadence.integrations import Problem
from cadence.integrations.flask import CadenceBlueprint


class LoopBoundPool:
    """Stands in for a connection pool or HTTP client: it belongs to the loop that first used it.

    Awaiting it from another event loop fails the way asyncpg pools and httpx clients do.
    """

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.uses = 0
        self.lock = threading.Lock()

    async def query(self, value: str) -> str:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        future = self.loop.create_future()
        self.loop.call_soon_threadsafe(future.set_result, value.upper())
        result = await future  # a future of another loop raises "attached to a different loop"
        with self.lock:
            self.uses += 1
        return result


@beat
async def read_flask_context(ctx: JobContext) -> None:
    # Flask's context locals reach beats: the run carries the request thread's context variables
    ctx.status = f"{g.user} via {request.path}"


def new_job() -> JobContext:
    return JobContext()


def make_app(*, debug: bool = False, breaker: CircuitBreaker | None = None) -> Flask:
    app = Flask(__name__)
    app.debug = debug
    bp = CadenceBlueprint("orders", __name__, url_prefix="/v1")
    pool = app.extensions["pool"] = LoopBoundPool()

    @beat
    async def use_pool(ctx: JobContext) -> None:
        ctx.status = await pool.query(ctx.job)

    @bp.cadence_route("/orders/<order_id>", web_apps.orders)
    def create_order(order_id: str) -> OrderContext:
        """Place an order."""
        body = request.get_json(silent=True) or {}
        quantity = int(body.get("quantity", 1))
        if quantity <= 0:
            raise ValueError(f"quantity must be positive {web_apps.SECRET}")
        customer = request.headers.get("x-customer", "")
        return OrderContext(order_id, quantity, customer, Tier(body.get("tier", "silver")))

    @bp.cadence_route("/async/<order_id>", web_apps.orders)
    async def create_order_async(order_id: str) -> OrderContext:
        await anyio.lowlevel.checkpoint()
        return OrderContext(order_id, int(request.args.get("quantity", "1")))

    @bp.cadence_route("/orders/<order_id>", web_apps.orders, methods=["GET"], status_code=201)
    def read_order(order_id: str) -> OrderContext:
        if order_id == "missing":
            abort(404, "no such order")
        return OrderContext(order_id)

    @bp.cadence_route("/pool/<name>", Cadence[JobContext]("pooled").then("use_pool", use_pool))
    def pooled(name: str) -> JobContext:
        return JobContext(job=name)

    @bp.cadence_route("/whoami", Cadence[JobContext]("whoami").then("read", read_flask_context))
    def whoami() -> JobContext:
        g.user = request.headers.get("x-user", "nobody")
        return JobContext()

    for rule, cadence in [
        ("/failing", web_apps.failing),
        ("/slow", web_apps.slow),
        ("/conflicting", web_apps.conflicting),
        ("/group", web_apps.group_failing),
        ("/nested", web_apps.nested),
    ]:
        bp.cadence_route(rule, cadence, endpoint=rule.strip("/"))(new_job)
    bp.cadence_route(
        "/declining-mapped",
        web_apps.declining,
        endpoint="declining_mapped",
        error_map={
            web_apps.PaymentDeclinedError: 402,
            MergeConflictError: lambda exc: Problem(409, detail="try again"),
        },
    )(new_job)
    bp.cadence_route("/failing-debug", web_apps.failing, endpoint="debug", debug=True)(new_job)
    if breaker is not None:
        bp.cadence_route("/guarded", web_apps.guarded(breaker), endpoint="guarded")(new_job)

    app.register_blueprint(bp)

    @app.get("/ping")
    async def ping() -> str:  # an ordinary Flask async view beside the blueprint
        await asyncio.sleep(0)
        return "pong"

    @app.get("/pool-direct/<name>")
    async def pool_direct(name: str) -> str:  # the same pool from Flask's own per-request loop
        return await pool.query(name)

    return app


@contextmanager
def werkzeug_server(app: Flask) -> Iterator[str]:
    """Serve `app` with werkzeug's threaded server on a free port of 127.0.0.1; stop it after."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=15)
        server.server_close()
        assert not thread.is_alive(), "the server did not shut down"
