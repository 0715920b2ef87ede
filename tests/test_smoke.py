from __future__ import annotations

from dataclasses import dataclass

import pytest

from cadence import Cadence, Context


@dataclass
class Counter(Context):
    n: int = 0


async def inc(ctx: Counter) -> None:
    ctx.n += 1


@pytest.mark.anyio
async def test_runs_a_beat() -> None:
    result = await Cadence("c", Counter()).then("inc", inc).run()
    assert result.n == 1
