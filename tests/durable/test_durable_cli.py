"""`cadence runs list/show/cancel` over a real SQLite store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from cadence import Cadence, Context
from cadence.cli.runs import runs
from cadence.durable import SQLiteStore


@dataclass
class Ctx(Context):
    n: int = 0


class Boom(Exception):
    """A beat failed."""


async def inc(ctx: Ctx) -> None:
    ctx.n += 1


async def boom(ctx: Ctx) -> None:
    raise Boom("card declined")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "runs.db"

    async def fill() -> None:
        store = SQLiteStore(path)
        await Cadence("ok", Ctx()).then("a", inc).run(run_id="r-ok", store=store)
        with pytest.raises(Exception, match="card declined"):
            await (
                Cadence("bad", Ctx())
                .then("a", inc)
                .then("pay", boom)
                .run(run_id="r-bad", store=store)
            )
        await store.aclose()

    anyio.run(fill)
    return path


def test_list_and_show(db: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(runs, ["list", "--db", str(db)])
    assert listed.exit_code == 0, listed.output
    assert sorted(listed.output.splitlines()) == [
        "r-bad\tbad\tfailed\t1/2 pay\t1",
        "r-ok\tok\tcompleted\t1/1 -\t1",
    ]
    failed = runner.invoke(
        runs, ["list", "--db", str(db), "--status", "failed", "--format", "json"]
    )
    assert [r["run_id"] for r in json.loads(failed.output)] == ["r-bad"]
    shown = runner.invoke(runs, ["show", "r-bad", "--db", str(db)])
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.output)
    assert (record["status"], record["step"], record["attempts"]) == ("failed", "pay", 1)
    assert record["error"][0]["type"] == "cadence._errors.BeatError"
    assert record["error"][-1] == {"type": "test_durable_cli.Boom", "message": "card declined"}


def test_cancel_and_errors(db: Path) -> None:
    runner = CliRunner()
    cancelled = runner.invoke(runs, ["cancel", "r-bad", "--db", str(db)])
    assert cancelled.exit_code == 0, cancelled.output
    again = runner.invoke(runs, ["cancel", "r-bad", "--db", str(db)])
    assert again.exit_code == 2
    assert "is not in the store or has finished" in again.output
    missing = runner.invoke(runs, ["show", "nope", "--db", str(db)])
    assert missing.exit_code == 2
    assert "no run 'nope'" in missing.output
    neither = runner.invoke(runs, ["list"])
    assert neither.exit_code == 2
    assert "name one store" in neither.output
    typo = db.with_name("typo.db")
    mistyped = runner.invoke(runs, ["list", "--db", str(typo)])
    assert mistyped.exit_code == 2
    assert "Invalid value for '--db'" in mistyped.output
    assert not typo.exists()  # no store made for a mistyped name
    negative = runner.invoke(runs, ["list", "--db", str(db), "--limit", "-5"])
    assert negative.exit_code == 2
    assert "Invalid value for '--limit'" in negative.output


def test_a_file_no_store_wrote_is_refused_and_left_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # short names: the message fits one line of the error's box
    other, empty = Path("app.db"), Path("empty.db")
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE users (id INTEGER)")
    empty.touch()
    runner = CliRunner()
    for path in (other, empty):
        before = path.read_bytes()
        for args in (["list"], ["show", "r-1"], ["cancel", "r-1"]):
            refused = runner.invoke(runs, [*args, "--db", str(path)])
            assert refused.exit_code == 2, refused.output
            assert f"{path} holds no cadence runs (no cadence_runs table)" in refused.output
        assert path.read_bytes() == before  # no tables added, still in its journal mode
        assert not path.with_name(f"{path.name}-wal").exists()


def test_a_corrupted_row_is_listed_with_its_decoding_error(db: Path) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE cadence_runs SET plan = '{' WHERE run_id = 'r-bad'")
    runner = CliRunner()
    listed = runner.invoke(runs, ["list", "--db", str(db), "--format", "json"])
    assert listed.exit_code == 0, listed.output
    by_id = {r["run_id"]: r for r in json.loads(listed.output)}
    assert by_id["r-ok"]["status"] == "completed"
    assert by_id["r-bad"]["error"][0]["type"] == "cadence.durable.RunDecodeError"
    assert "is corrupted" in by_id["r-bad"]["error"][0]["message"]
    shown = runner.invoke(runs, ["show", "r-bad", "--db", str(db)])
    assert shown.exit_code == 2  # shown alone, the row is refused by name
    assert "run 'r-bad': its row" in shown.output


_WITHOUT_PSYCOPG = """
import sys
sys.modules["psycopg"] = None  # as on a machine without the postgres extra
sys.argv = ["cadence", *sys.argv[1:]]
from cadence.cli import main
main()
"""


def test_a_sqlite_store_needs_no_psycopg_and_a_dsn_names_the_extra(db: Path) -> None:
    def cadence(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", _WITHOUT_PSYCOPG, "runs", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    listed = cadence("list", "--db", str(db))
    assert listed.returncode == 0, listed.stderr
    assert "r-ok" in listed.stdout
    refused = cadence("list", "--dsn", "postgresql://app@127.0.0.1/app")
    assert refused.returncode == 2
    assert "pip install 'cadence-flow[postgres]'" in refused.stderr
    assert "Traceback" not in refused.stderr
