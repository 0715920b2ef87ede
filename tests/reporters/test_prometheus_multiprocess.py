"""Gunicorn's multiprocess mode: several real worker processes, one /metrics that adds them up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

APP = """
from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from cadence import Cadence, Context
from cadence.reporters import PrometheusReporter

reporter = PrometheusReporter(prefix="served")


@dataclass
class Ctx(Context):
    n: int = 0


async def work(ctx: Ctx) -> None:
    ctx.n += 1


cadence = Cadence("served", Ctx()).with_reporter(reporter.report).then("work", work)


def app(environ, start_response):
    if environ["PATH_INFO"] == "/metrics":
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [generate_latest(registry)]
    cadence.run_sync()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""

CONFIG = """
from prometheus_client import multiprocess


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            httpx.get(base + "/metrics", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)  # polling a starting server, not timing the code under test
    raise RuntimeError("gunicorn did not start")


@pytest.mark.timeout(120)
def test_counts_from_several_workers_add_up(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "gunicorn_conf.py").write_text(textwrap.dedent(CONFIG))
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parents[2])]),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "3",
            "--bind",
            f"127.0.0.1:{port}",
            "--config",
            str(tmp_path / "gunicorn_conf.py"),
            "app:app",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, proc)
        requests = 90
        with ThreadPoolExecutor(max_workers=9) as pool:
            pids = list(
                pool.map(lambda _: httpx.get(base + "/run", timeout=30).text, range(requests))
            )
        assert len(set(pids)) >= 2, "the requests were served by one worker only"
        text = httpx.get(base + "/metrics", timeout=30).text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "pid")))
            values[key] = values.get(key, 0.0) + s.value
    assert values["served_runs_total", (("cadence", "served"), ("outcome", "success"))] == requests
    assert (
        values[
            "served_beats_total", (("beat", "work"), ("cadence", "served"), ("outcome", "success"))
        ]
        == requests
    )
    assert (
        values["served_beat_duration_seconds_count", (("beat", "work"), ("cadence", "served"))]
        == requests
    )
    assert values["served_runs_in_progress", (("cadence", "served"),)] == 0
    assert values["served_runs_total", (("cadence", "served"), ("outcome", "failure"))] == 0
    assert len(list(metrics_dir.glob("counter_*.db"))) >= 2  # one file per worker that counted
