"""CadenceBlueprint through Flask's test client: routing, sync and async views, JSON, statuses."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from flask import Flask, g
from flask_apps import LoopBoundPool, make_app
from web_apps import SECRET, expected_body, orders

from cadence import Cadence, Context, Shared, beat
from cadence.integrations import PROBLEM_MEDIA_TYPE
from cadence.integrations.flask import CadenceBlueprint, run_in_portal, stop_portal

if TYPE_CHECKING:
    from flask.testing import FlaskClient


@pytest.fixture
def app() -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def assert_problem(response, status: int, type_: str, cadence: str, beat: str | None) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"] == type_
    assert body["cadence"] == cadence
    assert body.get("beat") == beat
    text = response.get_data(as_text=True)
    assert SECRET not in text
    assert "Traceback" not in text
    return body


def test_view_runs_the_cadence_and_answers_the_context(client: FlaskClient) -> None:
    response = client.post(
        "/v1/orders/F-1", json={"quantity": 2, "tier": "gold"}, headers={"x-customer": "ada"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.get_json() == expected_body("F-1", 2, "ada", "gold")


def test_an_async_view_builds_the_context(client: FlaskClient) -> None:
    response = client.post("/v1/async/F-2?quantity=5")
    assert response.status_code == 200
    assert response.get_json() == expected_body("F-2", 5)


def test_flask_async_views_work_beside_the_blueprint(client: FlaskClient) -> None:
    assert client.get("/ping").get_data(as_text=True) == "pong"
    assert client.post("/v1/orders/F-3").get_json() == expected_body("F-3", 1)
    assert client.get("/ping").get_data(as_text=True) == "pong"


def test_beats_see_flask_context_locals(client: FlaskClient) -> None:
    response = client.post("/v1/whoami", headers={"x-user": "grace"})
    assert response.get_json() == {"job": "job", "status": "grace via /v1/whoami"}


def test_default_method_is_post_and_a_rule_may_choose_others(client: FlaskClient) -> None:
    assert client.get("/v1/async/F-1").status_code == 405
    response = client.get("/v1/orders/F-4")
    assert response.status_code == 201
    assert response.get_json() == expected_body("F-4", 1)


def test_value_error_from_the_view_is_a_422(client: FlaskClient) -> None:
    for body in ({"quantity": 0}, {"quantity": "many"}, {"tier": "platinum"}):
        response = client.post("/v1/orders/F-5", json=body)
        problem = assert_problem(response, 422, "urn:cadence:problem:invalid-input", "orders", None)
        assert problem["title"] == "Unprocessable Content"


def test_beat_failure_is_a_500_and_logged_with_its_cause(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="cadence.integrations"):
        response = client.post("/v1/failing")
    assert_problem(response, 500, "urn:cadence:problem:beat-failed", "failing", "explode")
    [record] = [r for r in caplog.records if r.name == "cadence.integrations"]
    assert "'failing' on /v1/failing answered 500 (beat 'explode')" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1].__cause__, RuntimeError)
    assert SECRET in caplog.text


@pytest.mark.parametrize(
    "case",
    [
        ("/v1/slow", 504, "urn:cadence:problem:beat-timeout", "slow", "too_slow"),
        ("/v1/conflicting", 500, "urn:cadence:problem:merge-conflict", "conflicting", "both"),
        ("/v1/group", 500, "urn:cadence:problem:beat-failed", "group", "pair"),
        ("/v1/nested", 500, "urn:cadence:problem:beat-failed", "nested", "payment.charge"),
        ("/v1/declining-mapped", 402, "about:blank", "declining", "decline"),
    ],
)
def test_error_statuses(client: FlaskClient, case: tuple[str, int, str, str, str]) -> None:
    rule, status, problem_type, cadence, beat = case
    assert_problem(client.post(rule), status, problem_type, cadence, beat)


def test_abort_from_the_view_is_a_problem(client: FlaskClient) -> None:
    response = client.get("/v1/orders/missing")
    body = assert_problem(response, 404, "about:blank", "orders", None)
    assert body["detail"] == "no such order"


def test_debug_shows_the_exception_chain() -> None:
    for app, rule in [(make_app(), "/v1/failing-debug"), (make_app(debug=True), "/v1/failing")]:
        body = app.test_client().post(rule).get_json(force=True)
        assert body["exception"][1] == f"RuntimeError: connection refused, password={SECRET}"
        assert "Traceback (most recent call last)" in body["traceback"]


def test_a_view_returning_no_context_is_a_server_error(caplog: pytest.LogCaptureFixture) -> None:
    app = Flask(__name__)
    bp = CadenceBlueprint("bad", __name__)
    bp.cadence_route("/x", orders)(lambda: {"order_id": "x"})
    app.register_blueprint(bp)
    response = app.test_client().post("/x")
    assert_problem(response, 500, "urn:cadence:problem:route-failed", "orders", None)
    [record] = [r for r in caplog.records if r.name == "cadence.integrations"]
    assert record.exc_info is not None
    assert "cadence 'orders' on /x: the view" in str(record.exc_info[1])
    assert "returned dict; it must return the cadence's Context" in str(record.exc_info[1])


def test_loop_bound_resources_work_across_requests_and_threads(app: Flask) -> None:
    pool: LoopBoundPool = app.extensions["pool"]
    errors: list[BaseException] = []
    answers: list[str] = []

    def worker(n: int) -> None:
        client = app.test_client()
        try:
            answers.extend(
                client.post(f"/v1/pool/t{n}-{i}").get_json()["status"] for i in range(10)
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(answers) == sorted(f"T{n}-{i}" for n in range(4) for i in range(10))
    assert pool.uses == 40


def test_a_per_request_loop_breaks_the_same_resource(app: Flask) -> None:
    # Why the blueprint does not run cadences with `ensure_sync`: Flask's own async views get a
    # new event loop per request, and a pool bound to one loop fails on the next.
    client = app.test_client()
    app.testing = True
    assert client.get("/pool-direct/a").get_data(as_text=True) == "A"
    with pytest.raises(RuntimeError, match=r"Event loop is closed|attached to a different loop"):
        client.get("/pool-direct/b")


def test_run_in_portal_survives_a_stop() -> None:
    async def answer(x: int) -> int:
        return x * 2

    assert run_in_portal(answer, 21) == 42
    stop_portal()
    assert run_in_portal(answer, 4) == 8  # it starts again on next use


@dataclass
class Connection:
    """Stands in for a per-request database connection."""

    log: list[str]
    closed: bool = False

    def fetch(self, key: str) -> str:
        assert not self.closed, "closed before the run finished"
        self.log.append(f"fetch {key}")
        return key[::-1]


@dataclass
class LookupContext(Context):
    key: str
    connection: Shared[Connection]
    value: str = ""


@beat
def lookup(ctx: LookupContext) -> None:  # a sync beat: it runs in a worker thread
    ctx.value = ctx.connection.fetch(ctx.key)


def test_a_per_request_connection_in_a_shared_field_is_closed_after_the_run() -> None:
    log: list[str] = []
    app = Flask(__name__)
    bp = CadenceBlueprint("lookups", __name__)

    @bp.cadence_route("/lookup/<key>", Cadence[LookupContext]("lookup").then("lookup", lookup))
    def make(key: str) -> LookupContext:
        g.connection = Connection(log)
        log.append("open")
        return LookupContext(key, g.connection)

    @app.teardown_request
    def close(error: BaseException | None) -> None:
        connection = g.pop("connection", None)
        if connection is not None:
            connection.closed = True
            log.append("close")

    app.register_blueprint(bp)
    response = app.test_client().post("/lookup/abc")
    assert response.get_json() == {"key": "abc", "value": "cba"}
    assert log == ["open", "fetch abc", "close"]
