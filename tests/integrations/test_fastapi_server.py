"""CadenceRouter on a real uvicorn server (127.0.0.1, a free port), driven by httpx.

- 500 requests at concurrency 50 on one route: every body is the one its own input gives.
- Each error status, on the wire, with its media type and headers.
- A client that disconnects mid-run: the run is cancelled, nothing is left running.
- The server shuts down cleanly (the fixture asserts its thread ended).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import anyio
import httpx
import pytest
from fastapi_apps import FakeClock, make_app, uvicorn_server
from web_apps import SECRET, JobContext, expected_body

from cadence import Cadence, beat
from cadence.integrations import PROBLEM_MEDIA_TYPE
from cadence.integrations.fastapi import CadenceRouter

pytestmark = pytest.mark.timeout(120)

REQUESTS = 500
CONCURRENCY = 50


class Hang:
    """A beat that waits until it is cancelled, and tells the test what happened."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.lock = threading.Lock()
        self.in_flight = 0

    async def __call__(self, ctx: JobContext) -> None:
        with self.lock:
            self.in_flight += 1
        self.started.set()
        try:
            await anyio.Event().wait()  # never set: only cancellation ends it
        finally:
            with self.lock:
                self.in_flight -= 1
            self.cancelled.set()


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def hang() -> Hang:
    return Hang()


@pytest.fixture(scope="module")
def hang_parallel() -> Hang:
    return Hang()


@pytest.fixture(scope="module")
def server(clock: FakeClock, hang: Hang, hang_parallel: Hang) -> Iterator[str]:
    app = make_app(clock)
    router = CadenceRouter()

    def new_job() -> JobContext:
        return JobContext()

    router.cadence("/hang", Cadence[JobContext]("hanging").then("hang", beat(hang)))(new_job)

    @beat
    async def quick(ctx: JobContext) -> None:
        ctx.job = "quick"

    parallel = Cadence[JobContext]("hanging_parallel").sync(
        "both", [beat(hang_parallel, name="hang"), quick]
    )
    router.cadence("/hang-parallel", parallel)(new_job)
    app.include_router(router)
    with uvicorn_server(app) as url:
        yield url


def order_input(i: int) -> tuple[str, int, str, str]:
    return f"R-{i:03d}", i % 40 + 1, f"customer-{i}", "gold" if i % 3 == 0 else "silver"


@pytest.mark.anyio
async def test_concurrent_requests_each_answer_their_own_context(server: str) -> None:
    limit = anyio.Semaphore(CONCURRENCY)
    answers: dict[int, tuple[int, dict]] = {}

    async def one(client: httpx.AsyncClient, i: int) -> None:
        order_id, quantity, customer, tier = order_input(i)
        async with limit:
            response = await client.post(
                f"/v1/orders/{order_id}",
                json={"quantity": quantity, "tier": tier},
                headers={"x-customer": customer},
            )
        answers[i] = (response.status_code, response.json())

    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with (
        httpx.AsyncClient(base_url=server, limits=limits, timeout=30) as client,
        anyio.create_task_group() as group,
    ):
        for i in range(REQUESTS):
            group.start_soon(one, client, i)

    assert len(answers) == REQUESTS
    for i, (status, body) in answers.items():
        order_id, quantity, customer, tier = order_input(i)
        assert status == 200
        assert body == expected_body(order_id, quantity, customer, tier)


@pytest.mark.parametrize(
    "case",
    [
        ("POST", "/v1/quick/Q-1?quantity=lots", 422, "invalid-input", None),
        ("POST", "/v1/failing", 500, "beat-failed", "explode"),
        ("POST", "/v1/nested", 500, "beat-failed", "payment.charge"),
        ("POST", "/v1/conflicting", 500, "merge-conflict", "both"),
        ("POST", "/v1/conflicting-mapped", 409, None, "both"),
        ("POST", "/v1/declining-mapped", 402, None, "decline"),
        ("POST", "/v1/slow", 504, "beat-timeout", "too_slow"),
        ("POST", "/v1/guarded-pair", 503, "circuit-open", "both"),
        ("GET", "/v1/orders/missing", 404, None, None),
    ],
)
def test_error_statuses_on_the_wire(
    server: str, case: tuple[str, str, int, str | None, str | None]
) -> None:
    method, path, status, problem_type, beat = case
    response = httpx.request(method, server + path, timeout=30)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = response.json()
    assert body["status"] == status
    if problem_type is not None:
        assert body["type"] == f"urn:cadence:problem:{problem_type}"
    assert body.get("beat") == beat
    assert SECRET not in response.text
    if status == 503:
        assert response.headers["retry-after"] == "40"


def test_open_circuit_on_the_wire(server: str, clock: FakeClock) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        statuses = [client.post("/v1/guarded").status_code for _ in range(4)]
        clock.now += 12.5
        later = client.post("/v1/guarded")
    assert statuses == [500, 500, 503, 503]  # failure_threshold=2
    assert later.status_code == 503
    assert later.headers["retry-after"] == "18"  # 30 s recovery, 12.5 s gone: 17.5 rounds up


@pytest.mark.parametrize(
    "case", [("/hang", "hanging", "hang"), ("/hang-parallel", "hanging_parallel", "hang_parallel")]
)
def test_a_client_that_disconnects_leaves_no_run_behind(
    server: str,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
    case: tuple[str, str, str],
) -> None:
    path, cadence, fixture = case
    hang: Hang = request.getfixturevalue(fixture)
    host, port = server.removeprefix("http://").split(":")
    with caplog.at_level(logging.INFO, logger="cadence.integrations"):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            request = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n"
            sock.sendall(request.encode())
            assert hang.started.wait(10), "the run did not start"
            assert hang.in_flight == 1
        # the socket is closed: the server sees the disconnect and cancels the run
        assert hang.cancelled.wait(10), "the run went on after the client left"
        assert hang.in_flight == 0
        # and the server still serves
        assert httpx.post(f"{server}/v1/quick/after", timeout=30).status_code == 200
    assert f"'{cadence}' on {path}: the client disconnected; run cancelled" in caplog.text
