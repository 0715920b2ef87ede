"""examples/fastapi_app.py and examples/flask_app.py start as programs and answer the checkout."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = {
    "order_id": "ORD-7",
    "items": [{"sku": "book", "price": 12.5}, {"sku": "pen", "price": 2.25}],
    "total": 14.75,
    "status": "paid",
}

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)  # the example is still importing
    pytest.fail("the example did not start listening")


@pytest.mark.parametrize("example", ["fastapi_app.py", "flask_app.py"])
def test_example_serves_the_checkout(example: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PYTHONWARNINGS": "error",
    }
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / example)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_listening(process, port)
        base = f"http://127.0.0.1:{port}"
        response = httpx.post(f"{base}/orders/ORD-7", timeout=30)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == CHECKOUT
        assert httpx.get(f"{base}/orders/ORD-7", timeout=30).status_code == 405  # POST only
        if example == "fastapi_app.py":
            document = httpx.get(f"{base}/openapi.json", timeout=30).json()
            schema = document["components"]["schemas"]["OrderContext"]
            assert set(schema["properties"]) == {"order_id", "items", "total", "status"}
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, stderr
