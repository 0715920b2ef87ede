"""Durable routes on real servers, driven by httpx over 127.0.0.1.

- uvicorn in a subprocess, SIGKILLed while a checkout request is in its second step: the
  client's retry, served by a fresh process on the same SQLite file, resumes the run; the card
  was charged once, with one idempotency key; a third request runs nothing.
- uvicorn in a thread: a client that disconnects while the run is in its second step cancels
  the attempt; the run is handed back (pending, at that step), and the retry resumes it.
- werkzeug's threaded server, with Flask: eight requests naming one run at once make one run,
  and all eight answer its result; if it fails, the one that ran answers its beat's failure and
  the seven that waited `run-failed`, naming the step.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import anyio
import httpx
import pytest
from fastapi import FastAPI, Header
from fastapi_apps import uvicorn_server
from flask import Flask
from flask import request as flask_request
from flask_apps import werkzeug_server

from cadence import Cadence, Context
from cadence.durable import SQLiteStore
from cadence.integrations.fastapi import CadenceRouter
from cadence.integrations.flask import CadenceBlueprint

pytestmark = pytest.mark.timeout(120)

SERVER = Path(__file__).with_name("durable_server.py")


def wait_for(path: Path, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[object]:
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> tuple[subprocess.Popen[bytes], str]:
        (tmp_path / "port").unlink(missing_ok=True)
        process = subprocess.Popen(
            [sys.executable, str(SERVER), str(tmp_path / "runs.db"), str(tmp_path)],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        processes.append(process)
        wait_for(tmp_path / "port", "the server to listen")
        return process, f"http://127.0.0.1:{(tmp_path / 'port').read_text()}"

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def effects(folder: Path) -> list[str]:
    path = folder / "effects"
    return path.read_text().splitlines() if path.exists() else []


def test_a_checkout_killed_mid_run_resumes_on_retry_and_charges_once(
    start_server, tmp_path: Path
) -> None:
    process, url = start_server()
    lost: list[BaseException] = []

    def first_request() -> None:
        try:
            httpx.post(f"{url}/orders/A-1", headers={"idempotency-key": "k1"}, timeout=60)
        except httpx.HTTPError as exc:  # the server dies under it
            lost.append(exc)

    client = threading.Thread(target=first_request)
    client.start()
    deadline = time.monotonic() + 30
    while "ship-started A-1" not in effects(tmp_path):
        assert time.monotonic() < deadline, "the run did not reach its second step"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    client.join(timeout=30)
    assert lost, "the first request was answered although its server was killed"

    (tmp_path / "release").touch()
    _, url = start_server()
    retried = httpx.post(f"{url}/orders/A-1", headers={"idempotency-key": "k1"}, timeout=60)
    assert retried.status_code == 200, retried.text
    body = retried.json()
    assert body == {
        "order_id": "A-1",
        "key": "k1",
        "charge_key": "order-k1:charge",
        "shipped": True,
    }
    assert effects(tmp_path) == [
        "charge A-1 order-k1:charge",  # once: the step completed before the kill
        "ship-started A-1",  # the step in flight at the kill runs again
        "ship-started A-1",
        "shipped A-1",
    ]
    again = httpx.post(f"{url}/orders/A-1", headers={"idempotency-key": "k1"}, timeout=60)
    assert again.json() == body
    assert len(effects(tmp_path)) == 4  # the finished run's result, nothing run


@dataclass
class Parcel(Context):
    key: str = ""
    labels: int = 0
    sent: bool = False


def test_a_client_that_disconnects_hands_the_run_back_and_its_retry_resumes(
    tmp_path: Path,
) -> None:
    labels: list[str] = []
    started, release = threading.Event(), threading.Event()

    async def label(ctx: Parcel) -> None:
        labels.append(ctx.key)
        ctx.labels += 1

    async def send(ctx: Parcel) -> None:
        started.set()
        while not release.is_set():  # noqa: ASYNC110 # set by the test's own thread
            await anyio.sleep(0.01)
        ctx.sent = True

    store = SQLiteStore(tmp_path / "runs.db")
    router = CadenceRouter()

    @router.cadence(
        "/parcels",
        Cadence[Parcel]("parcels").then("label", label).then("send", send),
        store=store,
        run_id=lambda ctx: f"parcel-{ctx.key}",
    )
    async def create(idempotency_key: Annotated[str, Header()]) -> Parcel:
        return Parcel(key=idempotency_key)

    app = FastAPI()
    app.include_router(router)
    with uvicorn_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /parcels HTTP/1.1\r\nHost: test\r\nIdempotency-Key: p1\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
            assert started.wait(10), "the run did not reach its second step"
        deadline = time.monotonic() + 10
        while (record := anyio.run(store.get, "parcel-p1")) is None or record.status != "pending":
            assert time.monotonic() < deadline, f"the run was not handed back: {record}"
            time.sleep(0.01)
        assert (record.position, record.step) == (1, "send")
        release.set()
        retried = httpx.post(f"{url}/parcels", headers={"Idempotency-Key": "p1"}, timeout=30)
    assert retried.status_code == 200, retried.text
    assert retried.json() == {"key": "p1", "labels": 1, "sent": True}
    assert labels == ["p1"]


@dataclass
class Tally(Context):
    key: str = ""
    runs: int = 0


@pytest.mark.parametrize("fails", [False, True], ids=["completes", "fails"])
def test_requests_naming_one_run_at_once_make_one_run(tmp_path: Path, *, fails: bool) -> None:
    calls: list[str] = []
    lock = threading.Lock()

    async def count(ctx: Tally) -> None:
        with lock:
            calls.append(ctx.key)
        await anyio.sleep(0.3)  # the other requests arrive meanwhile, and wait for this run
        if fails:
            raise RuntimeError("the counter is down")
        ctx.runs += 1

    blueprint = CadenceBlueprint("tally", __name__)

    @blueprint.cadence_route(
        "/tally",
        Cadence[Tally]("tally").then("count", count),
        store=SQLiteStore(tmp_path / "runs.db"),
        run_id=lambda ctx: f"tally-{ctx.key}",
    )
    def create() -> Tally:
        return Tally(key=flask_request.headers["Idempotency-Key"])

    app = Flask(__name__)
    app.register_blueprint(blueprint)
    answers: list[httpx.Response] = []
    with werkzeug_server(app) as url:
        start = threading.Barrier(8)

        def post() -> None:
            start.wait()
            response = httpx.post(f"{url}/tally", headers={"Idempotency-Key": "same"}, timeout=60)
            with lock:
                answers.append(response)

        threads = [threading.Thread(target=post) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), "a request hung"
    assert calls == ["same"]
    if not fails:
        assert [a.status_code for a in answers] == [200] * 8
        assert all(a.json() == {"key": "same", "runs": 1} for a in answers)
        return
    # The one that ran answers its beat's failure; those that waited, that the run failed.
    kinds = sorted((a.status_code, a.json()["type"].rpartition(":")[2]) for a in answers)
    assert kinds == [(500, "beat-failed")] + [(500, "run-failed")] * 7
    waited = next(a.json() for a in answers if a.json()["type"].endswith("run-failed"))
    assert (waited["run_id"], waited["step"]) == ("tally-same", "count")
