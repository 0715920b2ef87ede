"""A three-step durable cadence the durable-event tests share (tests/durable, tests/reporters)."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from cadence import Cadence, Context


@dataclass
class Tally(Context):
    done: list[str] = field(default_factory=list[str])


class Boom(Exception):
    """A beat failed."""


def tally(fail_at: list[str], hook: list[Callable[[], None]]) -> Cadence[Tally]:
    """Steps a, b, c; `fail_at` names a step to fail once; `hook` runs a callable in step b."""

    def step(name: str) -> Callable[[Tally], Awaitable[None]]:
        async def beat(ctx: Tally) -> None:
            if name in fail_at:
                fail_at.remove(name)
                raise Boom(name)
            if name == "b" and hook:
                hook.pop()()
            ctx.done.append(name)

        beat.__name__ = name
        return beat

    return (
        Cadence("tally", context_type=Tally)
        .then("a", step("a"))
        .then("b", step("b"))
        .then("c", step("c"))
    )


def steal(path: Path) -> Callable[[], None]:
    """Return a callable that gives every run in the SQLite file at `path` to another owner."""

    def take() -> None:
        connection = sqlite3.connect(path)
        connection.execute("UPDATE cadence_runs SET owner = 'elsewhere:1:1:x'")
        connection.commit()
        connection.close()

    return take
