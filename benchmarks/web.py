"""What a cadence route costs over a hand-written endpoint, on a real server, in requests/s.

    .venv/bin/python benchmarks/web.py [--seconds 3] [--rounds 2] [--only fastapi|flask]

Method. One server process serves two routes side by side: a `CadenceRouter` (or
`CadenceBlueprint`) route running the checkout cadence, and a hand-written endpoint awaiting the
same three beats and answering the same JSON (`dataclasses.asdict` into the framework's JSON
response). FastAPI runs on uvicorn (one worker); Flask on waitress (8 threads), its hand-written
view an `async def` view as Flask runs them (`ensure_sync`, a new event loop per request). The
load comes from another process: a keep-alive HTTP/1.1 client on raw asyncio sockets with a fixed
number of connections, each sending its next request when the last answer is read. The two
routes are warmed up, then measured in turn, `--rounds` times each (interleaved, the order
swapped every round, so drift hits both alike), for `--seconds` each; the table shows the best
round of each, with p50/p99 latency of that round, and the server's CPU time per request (its
threads' on-CPU time from /proc, median over the rounds). On a shared machine requests/s swing
with other load; CPU time per request barely does, so the CPU ratio is the steadier figure.
Beats only yield to the loop (no sleeps), so the figures are the framework's own cost.

A third route serves the same cadence durably (`store=SQLiteStore(..., synchronous="NORMAL")`,
`run_id=` the order id, which is new on every request): what a route pays to commit each of
the three steps of a new run and answer it, next to the plain cadence route. The script only
prints; it checks nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anyio

from cadence import Cadence, Context, beat
from cadence.durable import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------- the checkout


@dataclass
class Item:
    sku: str
    price: float


@dataclass
class OrderContext(Context):
    order_id: str
    items: list[Item] = field(default_factory=list[Item])
    total: float = 0.0
    status: str = "pending"


@beat
async def fetch_items(ctx: OrderContext) -> None:
    await anyio.lowlevel.checkpoint()
    ctx.items = [Item("book", 12.5), Item("pen", 2.25)]


@beat
async def calculate_total(ctx: OrderContext) -> None:
    ctx.total = sum(item.price for item in ctx.items)


@beat
async def process_payment(ctx: OrderContext) -> None:
    await anyio.lowlevel.checkpoint()
    ctx.status = "paid"


checkout = (
    Cadence("checkout", OrderContext(order_id="ORD-123"))
    .then("fetch_items", fetch_items)
    .then("calculate_total", calculate_total)
    .then("process_payment", process_payment)
)


async def by_hand(order_id: str) -> OrderContext:
    ctx = OrderContext(order_id=order_id)
    await fetch_items(ctx)
    await calculate_total(ctx)
    await process_payment(ctx)
    return ctx


# ---------------------------------------------------------------------------- servers


def _store(database: str) -> SQLiteStore:
    return SQLiteStore(database, synchronous="NORMAL")


def _order_run(ctx: OrderContext) -> str:
    return f"order-{ctx.order_id}"


def serve_fastapi(port: int, database: str) -> None:
    import uvicorn  # noqa: PLC0415 # each server imports only its own framework
    from fastapi import APIRouter, FastAPI  # noqa: PLC0415
    from fastapi.responses import JSONResponse  # noqa: PLC0415

    from cadence.integrations.fastapi import CadenceRouter  # noqa: PLC0415

    app = FastAPI()
    router = CadenceRouter()

    @router.cadence("/cadence/{order_id}", checkout)
    async def create_order(order_id: str) -> OrderContext:
        return OrderContext(order_id=order_id)

    @router.cadence("/durable/{order_id}", checkout, store=_store(database), run_id=_order_run)
    async def create_durable_order(order_id: str) -> OrderContext:
        return OrderContext(order_id=order_id)

    plain = APIRouter()  # both routes sit behind include_router, as routes of an app do

    @plain.post("/hand/{order_id}")
    async def hand(order_id: str) -> JSONResponse:
        return JSONResponse(asdict(await by_hand(order_id)))

    app.include_router(router)
    app.include_router(plain)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_flask(port: int, database: str) -> None:
    import waitress  # noqa: PLC0415
    from flask import Flask, jsonify  # noqa: PLC0415

    from cadence.integrations.flask import CadenceBlueprint  # noqa: PLC0415

    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined] # answer fields in declaration order
    bp = CadenceBlueprint("orders", __name__)

    @bp.cadence_route("/cadence/<order_id>", checkout)
    def create_order(order_id: str) -> OrderContext:
        return OrderContext(order_id=order_id)

    @bp.cadence_route("/durable/<order_id>", checkout, store=_store(database), run_id=_order_run)
    def create_durable_order(order_id: str) -> OrderContext:
        return OrderContext(order_id=order_id)

    @app.post("/hand/<order_id>")
    async def hand(order_id: str):
        return jsonify(asdict(await by_hand(order_id)))

    app.register_blueprint(bp)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "queue depth" is the load
    waitress.serve(app, host="127.0.0.1", port=port, threads=8, _quiet=True)


# ---------------------------------------------------------------------------- load


async def _load(port: int, path: str, seconds: float, connections: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def one_connection(n: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = 0
        while time.perf_counter() < stop_at:
            request = (
                f"POST {path}/ORD-{n}-{i} HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
            i += 1
        writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(one_connection(n) for n in range(connections)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "errors": errors,
    }


def load_main(port: int, path: str, seconds: float, connections: int) -> None:
    print(json.dumps(asyncio.run(_load(port, path, seconds, connections))))


# ---------------------------------------------------------------------------- driver


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def _wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server died while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the server did not start")


def _same_json(port: int) -> None:
    import httpx  # noqa: PLC0415

    cadence_body = httpx.post(f"http://127.0.0.1:{port}/cadence/ORD-1").json()
    hand_body = httpx.post(f"http://127.0.0.1:{port}/hand/ORD-1").json()
    durable_body = httpx.post(f"http://127.0.0.1:{port}/durable/ORD-1").json()
    if not cadence_body == hand_body == durable_body:
        raise SystemExit(
            f"the routes answer different JSON: {cadence_body}, {hand_body}, {durable_body}"
        )


def _cpu_ns(pid: int) -> int:
    """Return the on-CPU nanoseconds of every thread of process `pid` (0 where /proc is missing)."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    except OSError:
        return 0
    return total


def _load_round(port: int, route: str, seconds: float, connections: int) -> dict[str, float]:
    out = subprocess.run(  # noqa: S603 # this very script, as the load generator
        [sys.executable, __file__, "load", str(port), route, str(seconds), str(connections)],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


ROUTES = ("/cadence", "/hand", "/durable")


def bench(framework: str, seconds: float, rounds: int, connections: int) -> None:
    port = _free_port()
    folder = tempfile.TemporaryDirectory()
    database = str(Path(folder.name) / "runs.db")
    server = subprocess.Popen(  # noqa: S603 # this very script, as the server
        [sys.executable, __file__, f"serve-{framework}", str(port), database], env=_env()
    )
    try:
        _wait_for(port, server)
        _same_json(port)
        best: dict[str, dict[str, float]] = {}
        cpu: dict[str, list[float]] = {route: [] for route in ROUTES}
        for route in ROUTES:  # warm them up; not counted
            _load_round(port, route, 0.5, connections)
        for round_number in range(rounds):
            order = ROUTES if round_number % 2 == 0 else ROUTES[::-1]
            for route in order:
                before = _cpu_ns(server.pid)
                result = _load_round(port, route, seconds, connections)
                cpu[route].append((_cpu_ns(server.pid) - before) / 1000 / result["requests"])
                if route not in best or result["rps"] > best[route]["rps"]:
                    best[route] = result
    finally:
        server.terminate()
        server.wait(timeout=30)
        folder.cleanup()
    label = {"fastapi": "FastAPI (uvicorn, 1 worker)", "flask": "Flask (waitress, 8 threads)"}
    print(f"\n{label[framework]}, {connections} connections, best of {rounds} x {seconds:g} s")
    header = (
        f"{'route':<24} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} {'errors':>6}"
    )
    print(f"  {header}")
    names = {
        "/cadence": "cadence route",
        "/hand": "hand-written endpoint",
        "/durable": "durable cadence route",
    }
    for route in ROUTES:
        r = best[route]
        print(
            f"  {names[route]:<24} {r['rps']:>7.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
            f"{statistics.median(cpu[route]):>10.0f} {int(r['errors']):>6}"
        )
    ratio = best["/cadence"]["rps"] / best["/hand"]["rps"]
    cpu_ratio = statistics.median(cpu["/hand"]) / statistics.median(cpu["/cadence"])
    print(
        f"  cadence / hand-written: {ratio:.2f}x requests/s, {cpu_ratio:.2f}x by server CPU "
        "per request (target >= 0.90x)"
    )
    durable_cpu = statistics.median(cpu["/durable"]) - statistics.median(cpu["/cadence"])
    print(
        f"  durable route (SQLite, NORMAL, 3 steps): {durable_cpu:.0f} us of server CPU per "
        f"request above the cadence route, "
        f"{best['/durable']['rps'] / best['/cadence']['rps']:.2f}x its requests/s"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve-fastapi":
        serve_fastapi(int(sys.argv[2]), sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "serve-flask":
        serve_flask(int(sys.argv[2]), sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        load_main(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", choices=["fastapi", "flask"])
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    for framework in ("fastapi", "flask"):
        if args.only in (None, framework):
            bench(framework, args.seconds, args.rounds, args.connections)


if __name__ == "__main__":
    main()
