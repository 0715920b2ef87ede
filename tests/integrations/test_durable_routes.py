"""Durable routes (`store=`, `run_id=`) through FastAPI's TestClient (on asyncio and on trio)
and Flask's test client, on a real SQLite file.

A retried request that names the same run answers the stored result and charges once; a run
that failed resumes at its failed step; a cancelled run, a changed plan (and its migration), a
store that fails and a run-id function that misbehaves each answer their problem; options that
do not fit are refused when the route is declared, naming the cadence and the route.
"""

from __future__ import annotations

import functools
import logging
import socket
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio
import pytest
from fastapi import FastAPI, Header
from flask import Flask
from flask import request as flask_request

with warnings.catch_warnings():  # starlette asks for httpx2; httpx still works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from cadence import BeatError, Cadence, CadenceDefinitionError, Context
from cadence.durable import Migration, RunDecodeError, RunFailedError, SQLiteStore
from cadence.integrations import PROBLEM_MEDIA_TYPE, problem_for
from cadence.integrations.fastapi import CadenceRouter
from cadence.integrations.flask import CadenceBlueprint

pytestmark = pytest.mark.timeout(120)


@dataclass
class Order(Context):
    order_id: str = ""
    key: str = ""
    charged: int = 0
    shipped: bool = False
    weight: float = 0.0


class Ledger:
    """What the beats did to the outside world, and how many times `ship` is to fail."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ship_failures = 0


def checkout(ledger: Ledger, ship_step: str = "ship") -> Cadence[Order]:
    async def charge(ctx: Order) -> None:
        ledger.lines.append(f"charge {ctx.order_id}")
        ctx.charged += 1

    async def ship(ctx: Order) -> None:
        if ledger.ship_failures:
            ledger.ship_failures -= 1
            raise RuntimeError("the carrier is down")
        ledger.lines.append(f"ship {ctx.order_id}")
        ctx.shipped = True

    return Cadence[Order]("checkout").then("charge", charge).then(ship_step, ship)


def by_key(ctx: Order) -> str:
    return f"order-{ctx.key}"


class Answer:
    """A response, whichever framework gave it."""

    def __init__(self, status: int, content_type: str, body: Any) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body


Serve = Callable[..., Callable[[str, str], Answer]]


@pytest.fixture(params=["fastapi-asyncio", "fastapi-trio", "flask"])
def serve(request: pytest.FixtureRequest) -> Iterator[Serve]:
    """Return `serve(cadence, **route_options)`, which gives `post(order_id, key)`.

    FastAPI's test client runs the app on asyncio or on trio; Flask runs its cadences on one
    asyncio loop of its own.
    """
    framework, _, anyio_backend = str(request.param).partition("-")
    clients: list[TestClient] = []

    def make(cadence: Cadence[Order], **options: Any) -> Callable[[str, str], Answer]:
        if framework == "fastapi":
            router = CadenceRouter()

            @router.cadence("/orders/{order_id}", cadence, **options)
            async def create(order_id: str, idempotency_key: Annotated[str, Header()]) -> Order:
                return Order(order_id=order_id, key=idempotency_key)

            app = FastAPI()
            app.include_router(router)
            client = TestClient(app, backend=anyio_backend)
            clients.append(client)

            def post_fastapi(order_id: str, key: str) -> Answer:
                response = client.post(f"/orders/{order_id}", headers={"idempotency-key": key})
                kind = response.headers["content-type"]
                return Answer(response.status_code, kind, response.json())

            return post_fastapi
        blueprint = CadenceBlueprint("orders", __name__)

        @blueprint.cadence_route("/orders/<order_id>", cadence, **options)
        def create_flask(order_id: str) -> Order:
            return Order(order_id=order_id, key=flask_request.headers["Idempotency-Key"])

        flask_app = Flask(__name__)
        flask_app.register_blueprint(blueprint)
        flask_client = flask_app.test_client()

        def post_flask(order_id: str, key: str) -> Answer:
            response = flask_client.post(f"/orders/{order_id}", headers={"Idempotency-Key": key})
            return Answer(response.status_code, response.content_type, response.get_json(True))

        return post_flask

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "runs.db")


def assert_problem(answer: Answer, status: int, kind: str, run_id: str) -> dict[str, Any]:
    assert answer.status == status, answer.body
    assert answer.content_type == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = answer.body
    assert body["type"] == f"urn:cadence:problem:{kind}"
    assert body["cadence"] == "checkout"
    assert body["run_id"] == run_id
    return body


# --------------------------------------------------------------------------- runs


def test_a_retried_request_answers_the_stored_result_and_charges_once(
    serve: Serve, store: SQLiteStore
) -> None:
    ledger = Ledger()
    post = serve(checkout(ledger), store=store, run_id=by_key)
    first = post("A-1", "k1")
    assert first.status == 200
    assert first.body == {
        "order_id": "A-1",
        "key": "k1",
        "charged": 1,
        "shipped": True,
        "weight": 0.0,
    }
    again = post("A-1", "k1")
    assert again.status == 200
    assert again.body == first.body
    assert ledger.lines == ["charge A-1", "ship A-1"]  # the retry ran nothing
    other = post("A-1", "k2")  # another key: another run
    assert other.body == first.body | {"key": "k2"}
    assert ledger.lines == ["charge A-1", "ship A-1", "charge A-1", "ship A-1"]
    record = anyio.run(store.get, "order-k1")
    assert record is not None
    assert record.status == "completed"


def test_a_failed_run_resumes_at_its_failed_step_when_the_request_is_retried(
    serve: Serve, store: SQLiteStore
) -> None:
    ledger = Ledger()
    ledger.ship_failures = 1
    post = serve(checkout(ledger), store=store, run_id=by_key)
    failed = post("B-2", "k")
    assert failed.status == 500
    assert failed.body["type"] == "urn:cadence:problem:beat-failed"
    assert failed.body["beat"] == "ship"
    retried = post("B-2", "k")
    assert retried.status == 200
    assert retried.body["charged"] == 1
    assert retried.body["shipped"] is True
    assert ledger.lines == ["charge B-2", "ship B-2"]  # charged once, across both requests


def test_a_cancelled_run_answers_409(serve: Serve, store: SQLiteStore) -> None:
    ledger = Ledger()
    ledger.ship_failures = 1
    post = serve(checkout(ledger), store=store, run_id=by_key)
    assert post("C-3", "k").status == 500
    assert anyio.run(store.cancel, "order-k")
    body = assert_problem(post("C-3", "k"), 409, "run-cancelled", "order-k")
    assert "cancelled" in body["detail"]
    assert ledger.lines == ["charge C-3"]


def test_a_changed_plan_answers_409_and_resumes_with_a_migration(
    serve: Serve, store: SQLiteStore
) -> None:
    ledger = Ledger()
    ledger.ship_failures = 1
    assert serve(checkout(ledger), store=store, run_id=by_key)("D-4", "k").status == 500
    renamed = checkout(ledger, ship_step="dispatch")
    assert_problem(
        serve(renamed, store=store, run_id=by_key)("D-4", "k"), 409, "plan-changed", "order-k"
    )
    migrated = serve(
        renamed, store=store, run_id=by_key, migration=Migration(renamed={"ship": "dispatch"})
    )("D-4", "k")
    assert migrated.status == 200
    assert migrated.body["shipped"] is True
    assert ledger.lines == ["charge D-4", "ship D-4"]


def test_a_run_id_another_cadences_run_holds_answers_409(serve: Serve, store: SQLiteStore) -> None:
    ledger = Ledger()
    assert serve(checkout(ledger), store=store, run_id=by_key)("G-7", "k").status == 200

    async def refund(ctx: Order) -> None:
        ledger.lines.append(f"refund {ctx.order_id}")

    refunds = Cadence[Order]("refunds").then("refund", refund)
    answer = serve(refunds, store=store, run_id=by_key)("G-7", "k")
    assert answer.status == 409
    assert answer.body["type"] == "urn:cadence:problem:run-id-taken"
    assert (answer.body["cadence"], answer.body["run_id"]) == ("refunds", "order-k")
    assert ledger.lines == ["charge G-7", "ship G-7"]


def test_a_value_the_store_cannot_hold_fails_the_run_and_answers_500(
    serve: Serve, store: SQLiteStore
) -> None:
    async def weigh(ctx: Order) -> None:
        ctx.weight = float("nan")

    ledger = Ledger()
    flow = checkout(ledger).then("weigh", weigh)
    body = assert_problem(
        serve(flow, store=store, run_id=by_key)("H-8", "k"), 500, "run-unencodable", "order-k"
    )
    assert "cannot be stored" in body["detail"]
    record = anyio.run(store.get, "order-k")
    assert record is not None
    assert (record.status, record.step) == ("failed", "weigh")  # not handed back to run again


def test_a_store_that_fails_answers_503(
    serve: Serve, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = Ledger()
    broken = SQLiteStore(tmp_path)  # a directory: it cannot be opened
    post = serve(checkout(ledger), store=broken, run_id=by_key)
    with caplog.at_level(logging.WARNING, logger="cadence.integrations"):
        answer = post("E-5", "k")
    body = assert_problem(answer, 503, "store-failed", "order-k")
    assert "retry later" in body["detail"]
    assert str(tmp_path) not in str(body)  # the store's message is logged, not answered
    assert f"SQLite store {str(tmp_path)!r}" in caplog.text
    assert ledger.lines == []


@pytest.mark.parametrize(
    ("run_id", "logged"),
    [
        (lambda ctx: "", "it returned str ''"),
        (lambda ctx: 42, "it returned int 42"),
        (lambda ctx: "k\x00x", "it returned 'k\\x00x', which holds a NUL character"),
        (lambda ctx: "k" * 1025, "(1025 characters), 1025 bytes in UTF-8"),
        (lambda ctx: ctx.missing, "has no attribute 'missing'"),
    ],
    ids=["empty", "not-a-str", "nul", "too-long", "raises"],
)
def test_a_run_id_function_that_misbehaves_is_a_logged_500(
    serve: Serve,
    store: SQLiteStore,
    caplog: pytest.LogCaptureFixture,
    run_id: Callable[[Order], str],
    logged: str,
) -> None:
    ledger = Ledger()
    post = serve(checkout(ledger), store=store, run_id=run_id)
    with caplog.at_level(logging.ERROR, logger="cadence.integrations"):
        answer = post("F-6", "k")
    assert answer.status == 500
    assert answer.body["type"] == "urn:cadence:problem:route-failed"
    assert logged in caplog.text
    assert "checkout" in caplog.text
    assert ledger.lines == []


def test_a_request_that_waited_for_a_run_that_failed_answers_run_failed() -> None:
    waited = RunFailedError("order-k", "run 'order-k' failed at step 'ship' ...", "ship")
    problem = problem_for(waited, "checkout")
    assert problem.status == 500
    assert problem.type == "urn:cadence:problem:run-failed"
    assert problem.extensions == {"cadence": "checkout", "run_id": "order-k", "step": "ship"}


def test_a_durable_error_a_beat_raises_is_that_beats_failure() -> None:
    decode = RunDecodeError("other", "run 'other' does not decode")
    failure = BeatError("read", "checkout", cause=decode)
    problem = problem_for(failure, "checkout")
    assert problem.status == 500
    assert problem.type == "urn:cadence:problem:beat-failed"
    assert "run_id" not in problem.extensions


# --------------------------------------------------------------------------- declaring


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"store": "store"}, "store= needs run_id="),
        ({"run_id": by_key}, "run_id= needs store="),
        ({"migration": Migration()}, "migration= needs store= and run_id="),
        ({"store": "store", "run_id": "order-1"}, "run_id= must be a function of the context"),
        ({"store": object(), "run_id": by_key}, "store= must be a cadence.durable store"),
    ],
    ids=["store-alone", "run-id-alone", "migration-alone", "run-id-not-callable", "not-a-store"],
)
def test_options_that_do_not_fit_are_refused_at_declaration(
    framework: str, options: dict[str, Any], message: str, store: SQLiteStore
) -> None:
    options = {k: store if v == "store" else v for k, v in options.items()}
    cadence = checkout(Ledger())
    if framework == "fastapi":
        declare = functools.partial(CadenceRouter().cadence, "/orders/{order_id}")
    else:
        declare = functools.partial(CadenceBlueprint("o", __name__).cadence_route, "/orders/<id>")
    with pytest.raises(CadenceDefinitionError) as caught:
        declare(cadence, **options)
    assert message in str(caught.value)
    assert "cadence 'checkout' on /orders/" in str(caught.value)


@dataclass
class Holding(Context):
    line: socket.socket | None = None  # a resource not marked Shared[...]


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_a_context_type_the_store_cannot_hold_is_refused_at_declaration(
    framework: str, store: SQLiteStore
) -> None:
    holding = Cadence[Holding]("holding").then("a", lambda ctx: None)
    if framework == "fastapi":
        declare = functools.partial(CadenceRouter().cadence, "/hold")
    else:
        declare = functools.partial(CadenceBlueprint("h", __name__).cadence_route, "/hold")
    with pytest.raises(CadenceDefinitionError) as caught:
        declare(holding, store=store, run_id=lambda c: "h")
    message = str(caught.value)
    assert message.startswith("cadence 'holding' on /hold: ")
    assert "field 'line' cannot be stored as JSON" in message


def test_a_factorys_context_type_the_store_cannot_hold_is_refused_at_declaration(
    store: SQLiteStore,
) -> None:
    untyped: Cadence[Any] = Cadence("untyped")
    decorate = CadenceRouter().cadence("/hold", untyped, store=store, run_id=lambda c: "h")

    def hold() -> Holding:
        return Holding()

    with pytest.raises(CadenceDefinitionError, match="field 'line' cannot be stored as JSON"):
        decorate(hold)


def test_openapi_documents_409_on_durable_routes_only(store: SQLiteStore) -> None:
    router = CadenceRouter()

    def order(order_id: str) -> Order:
        return Order(order_id=order_id)

    router.cadence("/durable/{order_id}", checkout(Ledger()), store=store, run_id=by_key)(order)
    router.cadence("/plain/{order_id}", checkout(Ledger()))(order)
    app = FastAPI()
    app.include_router(router)
    paths = app.openapi()["paths"]
    durable = paths["/durable/{order_id}"]["post"]["responses"]
    plain = paths["/plain/{order_id}"]["post"]["responses"]
    assert "409" in durable
    assert "store" in durable["503"]["description"]
    assert "409" not in plain
    assert "store" not in plain["503"]["description"]
