"""CadenceBlueprint on werkzeug's threaded server (127.0.0.1, a free port).

8 client threads x 50 requests through one circuit breaker shared by every request thread:
the breaker opens after exactly its threshold of failures, process-wide; every later request
answers 503 with `Retry-After`; no run fails with "bound to a different event loop" and nothing
hangs (pytest-timeout). A loop-bound resource (a pool) is used from all threads without error.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

import httpx
import pytest
from flask_apps import LoopBoundPool, make_app, werkzeug_server
from web_apps import SECRET, expected_body

from cadence import CircuitBreaker, CircuitState
from cadence.integrations import PROBLEM_MEDIA_TYPE

pytestmark = pytest.mark.timeout(120)

THREADS = 8
REQUESTS_PER_THREAD = 50
THRESHOLD = 5


def hammer(url: str, path: str) -> tuple[list[httpx.Response], list[BaseException]]:
    """Send THREADS x REQUESTS_PER_THREAD requests from THREADS threads at once."""
    responses: list[httpx.Response] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def worker(n: int) -> None:
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                start.wait()
                for i in range(REQUESTS_PER_THREAD):
                    response = client.post(path.format(n=n, i=i))
                    with lock:
                        responses.append(response)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
        assert not thread.is_alive(), "a client thread hung"
    return responses, errors


def test_one_breaker_opens_after_exactly_its_threshold_across_threads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    breaker = CircuitBreaker("flask-shared", THRESHOLD, 60.0)
    app = make_app(breaker=breaker)
    with caplog.at_level(logging.WARNING), werkzeug_server(app) as url:
        responses, errors = hammer(url, "/v1/guarded")
    assert errors == []
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {500: THRESHOLD, 503: THREADS * REQUESTS_PER_THREAD - THRESHOLD}
    stats = breaker.stats
    assert stats.failures == THRESHOLD
    assert stats.rejections == THREADS * REQUESTS_PER_THREAD - THRESHOLD
    assert breaker.state is CircuitState.OPEN
    for response in responses:
        assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
        body = response.json()
        assert body["cadence"] == "guarded"
        assert body["beat"] == "call_upstream"
        assert SECRET not in response.text
        if response.status_code == 503:
            assert 1 <= int(response.headers["retry-after"]) <= 60
            assert body["type"] == "urn:cadence:problem:circuit-open"
    assert "different event loop" not in caplog.text
    assert "attached to a different loop" not in caplog.text


def test_a_loop_bound_pool_serves_every_request_thread() -> None:
    app = make_app()
    pool: LoopBoundPool = app.extensions["pool"]
    with werkzeug_server(app) as url:
        responses, errors = hammer(url, "/v1/pool/t{n}-{i}")
    assert errors == []
    assert [r.status_code for r in responses] == [200] * (THREADS * REQUESTS_PER_THREAD)
    assert sorted(r.json()["status"] for r in responses) == sorted(
        f"T{n}-{i}" for n in range(THREADS) for i in range(REQUESTS_PER_THREAD)
    )
    assert pool.uses == THREADS * REQUESTS_PER_THREAD


def test_concurrent_orders_each_answer_their_own_context() -> None:
    app = make_app()
    with werkzeug_server(app) as url:
        responses, errors = hammer(url, "/v1/async/o{n}-{i}")
    assert errors == []
    for response in responses:
        order_id = response.url.path.rsplit("/", 1)[1]
        assert response.json() == expected_body(order_id, 1)
