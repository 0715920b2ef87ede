"""CadenceRouter through FastAPI's TestClient: routing, parameters, JSON, OpenAPI, every status."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel

with warnings.catch_warnings():  # starlette asks for httpx2; httpx still works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

import web_apps
from fastapi_apps import FakeClock, make_app, new_job
from web_apps import SECRET, JobContext, OrderContext

from cadence import AtomicList, Cadence, ImmutableContext, Shared, beat
from cadence.integrations import PROBLEM_MEDIA_TYPE as PROBLEM
from cadence.integrations.fastapi import CadenceRouter


@pytest.fixture
def client(anyio_backend: str, fake_clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(make_app(fake_clock), backend=anyio_backend) as test_client:
        yield test_client


def assert_problem(response, status: int, type_: str, cadence: str, beat: str | None) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["type"] == type_
    assert body["cadence"] == cadence
    assert body.get("beat") == beat
    assert SECRET not in response.text
    assert "Traceback" not in response.text
    return body


# --------------------------------------------------------------------------- success


def test_route_runs_the_cadence_and_answers_the_context(client: TestClient) -> None:
    response = client.post(
        "/v1/orders/A-1", json={"quantity": 3, "tier": "gold"}, headers={"x-customer": "ada"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == web_apps.expected_body("A-1", 3, "ada", "gold")


def test_sync_factory_with_query_parameters(client: TestClient) -> None:
    response = client.post("/v1/quick/Q-7", params={"quantity": 4})
    assert response.status_code == 200
    assert response.json() == web_apps.expected_body("Q-7", 4)


def test_default_method_is_post_and_a_route_may_choose_others(client: TestClient) -> None:
    assert client.get("/v1/quick/Q-1").status_code == 405
    response = client.get("/v1/orders/G-2")
    assert response.status_code == 201  # the route's own status_code
    assert response.json() == web_apps.expected_body("G-2", 1)


def test_each_request_gets_its_own_context(client: TestClient) -> None:
    first = client.post("/v1/orders/one", json={"quantity": 1}).json()
    second = client.post("/v1/orders/two", json={"quantity": 2}).json()
    assert first["events"] == ["audited one"]
    assert second["events"] == ["audited two"]
    assert second["tags"] == {"two": 2}


def test_response_model_filters_and_validates_the_context(anyio_backend: str) -> None:
    class Summary(BaseModel):
        order_id: str
        status: str

    app = FastAPI()
    router = CadenceRouter()

    @router.cadence("/o/{order_id}", web_apps.orders, response_model=Summary)
    async def make(order_id: str) -> OrderContext:
        return OrderContext(order_id)

    app.include_router(router)
    with TestClient(app, backend=anyio_backend) as test_client:
        response = test_client.post("/o/S-1")
    assert response.status_code == 200
    assert response.json() == {"order_id": "S-1", "status": "placed"}
    schema = app.openapi()["paths"]["/o/{order_id}"]["post"]["responses"]["200"]
    assert schema["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Summary"
    }


# --------------------------------------------------------------------------- errors


def test_request_validation_is_a_422_problem(client: TestClient) -> None:
    response = client.post("/v1/quick/Q-1", params={"quantity": "lots"})
    body = assert_problem(response, 422, "urn:cadence:problem:invalid-input", "orders", None)
    assert body["title"] == "Unprocessable Content"  # RFC 9110's name
    assert [e["loc"] for e in body["errors"]] == [["query", "quantity"]]
    response = client.post("/v1/quick/Q-1", params={"quantity": 99})
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "less_than_equal"


def test_factory_value_error_is_a_422_problem_without_the_message(client: TestClient) -> None:
    response = client.post("/v1/orders/A-1", json={"quantity": 0})
    body = assert_problem(response, 422, "urn:cadence:problem:invalid-input", "orders", None)
    assert body["detail"] == "the input was rejected by the context factory of cadence 'orders'"


def test_beat_failure_is_a_500_naming_cadence_and_beat(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="cadence.integrations"):
        response = client.post("/v1/failing")
    body = assert_problem(response, 500, "urn:cadence:problem:beat-failed", "failing", "explode")
    assert body["title"] == "Internal Server Error"
    assert body["detail"] == "a beat of cadence 'failing' failed"
    # the server log carries the whole error, cause included
    [record] = [r for r in caplog.records if r.name == "cadence.integrations"]
    assert record.levelno == logging.ERROR
    assert "'failing' on /v1/failing answered 500 (beat 'explode')" in record.getMessage()
    assert record.exc_info is not None
    error = record.exc_info[1]
    assert isinstance(error.__cause__, RuntimeError)
    assert SECRET in caplog.text  # in the log, never on the wire


def test_beat_in_a_child_cadence_is_named_by_its_path(client: TestClient) -> None:
    assert_problem(
        client.post("/v1/nested"),
        500,
        "urn:cadence:problem:beat-failed",
        "nested",
        "payment.charge",
    )


def test_open_circuit_is_a_503_with_retry_after(client: TestClient, fake_clock: FakeClock) -> None:
    for _ in range(2):  # failure_threshold=2
        assert client.post("/v1/guarded").status_code == 500
    fake_clock.now += 0.4  # 29.6 s left of the 30 s recovery timeout
    response = client.post("/v1/guarded")
    body = assert_problem(
        response, 503, "urn:cadence:problem:circuit-open", "guarded", "call_upstream"
    )
    assert response.headers["retry-after"] == "30"
    assert body["retry_after"] == 30
    fake_clock.now += 25.0
    assert client.post("/v1/guarded").headers["retry-after"] == "5"


def test_timeout_is_a_504(client: TestClient) -> None:
    assert_problem(
        client.post("/v1/slow"), 504, "urn:cadence:problem:beat-timeout", "slow", "too_slow"
    )


def test_merge_conflict_is_a_500_unless_mapped(client: TestClient) -> None:
    body = assert_problem(
        client.post("/v1/conflicting"),
        500,
        "urn:cadence:problem:merge-conflict",
        "conflicting",
        "both",
    )
    assert body["detail"] == "parallel beats of cadence 'conflicting' wrote one field differently"
    response = client.post("/v1/conflicting-mapped")
    body = assert_problem(response, 409, "urn:example:conflict", "conflicting", "both")
    assert body["detail"] == "try again"
    assert body["title"] == "Conflict"


def test_several_parallel_failures_list_each_beat(client: TestClient) -> None:
    body = assert_problem(
        client.post("/v1/group"), 500, "urn:cadence:problem:beat-failed", "group", "pair"
    )
    assert body["errors"] == [
        {"beat": "pair.fail_a", "status": 500, "type": "urn:cadence:problem:beat-failed"},
        {"beat": "pair.fail_b", "status": 500, "type": "urn:cadence:problem:beat-failed"},
    ]


def test_parallel_open_circuits_wait_for_the_longest(client: TestClient) -> None:
    response = client.post("/v1/guarded-pair")
    body = assert_problem(response, 503, "urn:cadence:problem:circuit-open", "guarded_pair", "both")
    assert response.headers["retry-after"] == "40"
    assert [e["beat"] for e in body["errors"]] == ["both.one", "both.two"]


def test_error_map_overrides_by_type_anywhere_in_the_cause_chain(client: TestClient) -> None:
    assert_problem(
        client.post("/v1/declining"), 500, "urn:cadence:problem:beat-failed", "declining", "decline"
    )
    response = client.post("/v1/declining-mapped")
    body = assert_problem(response, 402, "about:blank", "declining", "decline")
    assert body["title"] == "Payment Required"


def test_http_exception_from_the_factory_is_a_problem(client: TestClient) -> None:
    response = client.get("/v1/orders/missing")
    body = assert_problem(response, 404, "about:blank", "orders", None)
    assert body["detail"] == "no such order"
    assert response.headers["x-hint"] == "check the id"


def test_http_exception_from_a_beat_is_a_problem(anyio_backend: str) -> None:
    @beat
    async def lookup(ctx: JobContext) -> None:
        raise HTTPException(410, "order archived")

    app = FastAPI()
    router = CadenceRouter()
    router.cadence("/x", Cadence[JobContext]("archive").then("lookup", lookup))(new_job)
    app.include_router(router)
    with TestClient(app, backend=anyio_backend) as test_client:
        body = assert_problem(test_client.post("/x"), 410, "about:blank", "archive", "lookup")
    assert body["detail"] == "order archived"


def test_debug_puts_the_exception_and_traceback_in_the_body(
    client: TestClient, anyio_backend: str
) -> None:
    response = client.post("/v1/failing-debug")
    assert response.status_code == 500
    body = response.json()
    first, cause = body["exception"]
    assert first.startswith("BeatError: beat 'explode' of cadence 'failing' failed")
    assert cause == f"RuntimeError: connection refused, password={SECRET}"
    assert "Traceback (most recent call last)" in body["traceback"]
    # without debug=..., the app's own flag decides
    with TestClient(make_app(debug=True), backend=anyio_backend) as debug_client:
        body = debug_client.post("/v1/failing").json()
        assert SECRET in body["exception"][1]
        validation = debug_client.post("/v1/orders/A", json={"quantity": 0}).json()
        assert validation["exception"] == [f"ValueError: quantity must be positive {SECRET}"]


def test_unmapped_factory_errors_go_to_the_app_handlers(anyio_backend: str) -> None:
    class NotFoundError(Exception):
        pass

    app = FastAPI()

    @app.exception_handler(NotFoundError)
    async def not_found(request: object, exc: NotFoundError):
        return JSONResponse({"missing": True}, status_code=404)

    router = CadenceRouter()

    @router.cadence("/x", web_apps.orders)
    async def make() -> OrderContext:
        raise NotFoundError

    app.include_router(router)
    with TestClient(app, backend=anyio_backend) as test_client:
        response = test_client.post("/x")
    assert response.status_code == 404
    assert response.json() == {"missing": True}


def test_a_factory_returning_no_context_is_a_server_error(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = FastAPI()
    router = CadenceRouter()

    @router.cadence("/x", web_apps.orders)
    async def make() -> OrderContext:
        return {"order_id": "x"}  # type: ignore[return-value]

    app.include_router(router)
    with TestClient(app, backend=anyio_backend) as test_client:
        response = test_client.post("/x")
    body = assert_problem(response, 500, "urn:cadence:problem:route-failed", "orders", None)
    assert body["detail"] == "cadence 'orders' could not answer this request"
    [record] = [r for r in caplog.records if r.name == "cadence.integrations"]
    assert record.exc_info is not None
    assert re.match(
        r"cadence 'orders' on /x: the context factory .*make' returned dict; it must return "
        "the cadence's Context",
        str(record.exc_info[1]),
    )


# --------------------------------------------------------------------------- shared fields


@dataclass
class Session:
    """Stands in for a database session: a resource, never answered as JSON."""

    log: list[str]
    closed: bool = False

    def query(self, what: str) -> str:
        assert not self.closed, "the session was closed before the cadence finished"
        self.log.append(f"query {what}")
        return what.upper()


@dataclass
class SessionContext(web_apps.Context):
    name: str
    session: Shared[Session]
    answer: str = ""
    seen_by: AtomicList[str] = field(default_factory=AtomicList[str])


@beat
async def ask(ctx: SessionContext) -> None:
    ctx.answer = ctx.session.query(ctx.name)


shared_log: list[str] = []


async def get_shared_session() -> AsyncIterator[Session]:
    session = Session(shared_log)
    shared_log.append("open")
    yield session
    session.closed = True
    shared_log.append("close")


def test_a_depends_session_in_a_shared_field_is_cleaned_up_after_the_cadence(
    anyio_backend: str,
) -> None:
    shared_log.clear()
    sessions: list[int] = []

    @beat
    async def branch_one(ctx: SessionContext) -> None:
        sessions.append(id(ctx.session))

    @beat
    async def branch_two(ctx: SessionContext) -> None:
        sessions.append(id(ctx.session))

    cadence = Cadence[SessionContext]("ask").then("ask", ask).sync("both", [branch_one, branch_two])
    app = FastAPI()
    router = CadenceRouter()

    @router.cadence("/ask/{name}", cadence)
    async def make(
        name: str, session: Annotated[Session, Depends(get_shared_session)]
    ) -> SessionContext:
        sessions.append(id(session))
        return SessionContext(name, session)

    app.include_router(router)
    with TestClient(app, backend=anyio_backend) as test_client:
        response = test_client.post("/ask/ada")
    assert response.status_code == 200
    assert response.json() == {"name": "ada", "answer": "ADA", "seen_by": []}
    assert shared_log == ["open", "query ada", "close"]
    assert len(set(sessions)) == 1  # the same session in the factory and in both branches
    schema = app.openapi()["components"]["schemas"]["SessionContext"]
    assert set(schema["properties"]) == {"name", "answer", "seen_by"}


def current_customer(x_customer: Annotated[str, Header()] = "guest") -> str:
    return x_customer.title()


def test_a_depends_value_reaches_the_factory(anyio_backend: str) -> None:
    app = FastAPI()
    router = CadenceRouter()

    @router.cadence("/o/{order_id}", web_apps.orders)
    async def make(
        order_id: str, customer: Annotated[str, Depends(current_customer)]
    ) -> OrderContext:
        return OrderContext(order_id, customer=customer)

    app.include_router(router)
    with TestClient(app, backend=anyio_backend) as test_client:
        response = test_client.post("/o/D-1", headers={"x-customer": "grace"})
    assert response.json() == web_apps.expected_body("D-1", 1, "Grace")


# --------------------------------------------------------------------------- OpenAPI


def test_openapi_shows_the_context_and_the_problem_responses() -> None:
    app = make_app(FakeClock())
    document = app.openapi()
    operation = document["paths"]["/v1/orders/{order_id}"]["post"]
    assert operation["summary"] == "Create Order"
    assert operation["description"] == "Place an order."
    assert operation["tags"] == ["orders"]
    params = {p["name"]: p["in"] for p in operation["parameters"]}
    assert params == {"order_id": "path", "x-customer": "header"}
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OrderBody"
    }
    responses = operation["responses"]
    assert responses["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OrderContext"
    }
    assert set(responses) == {"200", "422", "500", "503", "504"}
    for status in ("422", "500", "503", "504"):
        problem = responses[status]["content"][PROBLEM]["schema"]
        assert problem["required"] == ["type", "title", "status"]
        assert {"cadence", "beat", "detail"} <= set(problem["properties"])
    assert responses["503"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}

    schemas = document["components"]["schemas"]
    context = schemas["OrderContext"]
    assert context["description"] == "An order being placed."
    props = context["properties"]
    assert list(props) == list(web_apps.expected_body("x", 1))
    assert props["events"] == {"items": {"type": "string"}, "type": "array", "title": "Events"}
    assert props["tags"]["additionalProperties"] == {"type": "integer"}
    assert props["lines"]["items"] == {"$ref": "#/components/schemas/Line"}
    assert props["tier"] == {"$ref": "#/components/schemas/Tier"}
    assert {"type": "string", "format": "date-time"} in props["placed_at"]["anyOf"]
    assert props["wait"]["format"] == "duration"
    assert {"type": "string", "format": "uuid"} in props["reference"]["anyOf"]
    assert schemas["Line"]["properties"]["price"]["type"] == "string"  # decimals answer strings
    assert context["required"] == list(props)


class Opaque:
    """A value with neither a JSON form nor a pydantic schema."""


@dataclass
class OpaqueContext(web_apps.Context):
    name: str = ""
    handle: Opaque = field(default_factory=Opaque)


def new_opaque() -> OpaqueContext:
    return OpaqueContext()


def opaque_app() -> FastAPI:
    app = FastAPI()
    router = CadenceRouter()
    cadence = Cadence[OpaqueContext]("opaque").then("noop", lambda ctx: None)
    router.cadence("/x", cadence)(new_opaque)
    app.include_router(router)
    return app


def test_a_context_pydantic_cannot_describe_still_documents_its_fields() -> None:
    schema = opaque_app().openapi()["components"]["schemas"]["OpaqueContext"]
    assert set(schema["properties"]) == {"name", "handle"}
    assert schema["properties"]["handle"] == {"title": "Handle"}  # any value


def test_an_unencodable_field_fails_naming_the_field(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(opaque_app(), backend=anyio_backend) as test_client:
        response = test_client.post("/x")
    assert_problem(response, 500, "urn:cadence:problem:route-failed", "opaque", None)
    [record] = [r for r in caplog.records if r.name == "cadence.integrations"]
    assert record.exc_info is not None
    assert str(record.exc_info[1]).startswith(
        "cadence 'opaque': field 'handle' of OpaqueContext holds a value of type Opaque, which "
        "has no JSON form; annotate the field as Shared[...]"
    )


def test_missing_extra_raises_an_import_error_with_the_install_hint() -> None:
    for module, extra in [("fastapi", "fastapi"), ("flask", "flask")]:
        program = (
            f"import sys; sys.modules[{module!r}] = None\n"
            "try:\n"
            f"    import cadence.integrations.{module}\n"
            "except ImportError as exc:\n"
            "    print(exc)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, check=True
        ).stdout
        assert f"pip install 'cadence-flow[{extra}]'" in out
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, cadence, cadence.integrations; "
            "print(sorted(m for m in ('fastapi', 'flask', 'pydantic', 'starlette') "
            "if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "[]"


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


session_log: list[str] = []


async def get_session() -> AsyncIterator[str]:
    session_log.append("open")
    yield "session-1"
    session_log.append("close")


def test_a_yield_dependency_cleans_up_after_the_cadence(anyio_backend: str) -> None:
    log = session_log
    log.clear()

    @beat
    async def work(ctx: JobContext) -> None:
        log.append(f"beat with {ctx.job}")

    app = FastAPI()
    router = CadenceRouter()

    @router.cadence("/work", Cadence[JobContext]("work").then("work", work))
    async def make(session: Annotated[str, Depends(get_session)]) -> JobContext:
        return JobContext(job=session)

    app.include_router(router)
    with TestClient(app, backend=anyio_backend) as test_client:
        assert test_client.post("/work").json() == {"job": "session-1", "status": "new"}
    assert log == ["open", "beat with session-1", "close"]


def test_response_model_none_documents_no_schema(anyio_backend: str) -> None:
    app = FastAPI()
    router = CadenceRouter()
    router.cadence("/x", web_apps.failing, response_model=None, name="x")(new_job)
    router.cadence("/ok", Cadence[JobContext]("ok").then("ok", web_apps.ok), response_model=None)(
        new_job
    )
    app.include_router(router)
    responses = app.openapi()["paths"]["/ok"]["post"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"] == {}  # any JSON
    with TestClient(app, backend=anyio_backend) as test_client:
        assert test_client.post("/ok").json() == {"job": "job", "status": "done"}


def require_token(authorization: Annotated[str, Header()] = "") -> str:
    if authorization != "Bearer good":
        raise HTTPException(401, "a bearer token is needed", {"WWW-Authenticate": "Bearer"})
    return "ada"


def test_an_http_error_of_a_dependency_is_a_problem(anyio_backend: str) -> None:
    app = FastAPI()
    router = CadenceRouter()

    @router.cadence("/o/{order_id}", web_apps.orders, dependencies=[Depends(require_token)])
    async def make(order_id: str) -> OrderContext:
        return OrderContext(order_id)

    app.include_router(router)
    with TestClient(app, backend=anyio_backend) as test_client:
        refused = test_client.post("/o/A")
        allowed = test_client.post("/o/A", headers={"authorization": "Bearer good"})
    body = assert_problem(refused, 401, "about:blank", "orders", None)
    assert body["detail"] == "a bearer token is needed"
    assert refused.headers["www-authenticate"] == "Bearer"
    assert allowed.json() == web_apps.expected_body("A", 1)


@dataclass(frozen=True)
class Receipt(ImmutableContext):
    order_id: str
    lines: tuple[str, ...] = ()


@beat
def stamp(ctx: Receipt) -> Receipt:
    return ctx.with_field("lines", (*ctx.lines, f"stamped {ctx.order_id}"))


def new_receipt(order_id: str) -> Receipt:
    return Receipt(order_id)


def test_an_immutable_context_answers_the_context_the_run_returned(anyio_backend: str) -> None:
    app = FastAPI()
    router = CadenceRouter()
    router.cadence("/r/{order_id}", Cadence[Receipt]("receipt").then("stamp", stamp))(new_receipt)
    app.include_router(router)
    with TestClient(app, backend=anyio_backend) as test_client:
        response = test_client.post("/r/R-1")
    assert response.json() == {"order_id": "R-1", "lines": ["stamped R-1"]}
    schema = app.openapi()["components"]["schemas"]["Receipt"]
    assert schema["properties"]["lines"]["type"] == "array"
