"""The asyncio loop thread PostgresStore runs on under trio: results, cancellation, shutdown."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from cadence.durable._bridge import AsyncioThread, LoopClosedError

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # the bridge is what trio callers go through


async def _on_asyncio(value: int) -> int:
    asyncio.get_running_loop()  # raises unless this runs on an asyncio loop
    await asyncio.sleep(0)
    return value


async def _fails() -> None:
    await asyncio.sleep(0)
    raise ValueError("from the loop")


async def _waits_for_ever(bridge: AsyncioThread, errors: list[BaseException]) -> None:
    """Wait on a call that never ends by itself; record the `LoopClosedError` that ends it."""
    try:
        await bridge.run(asyncio.sleep(30))
    except LoopClosedError as exc:
        errors.append(exc)


async def test_a_call_returns_its_value_or_raises_its_error_on_the_caller() -> None:
    bridge = AsyncioThread("test-loop")
    assert await bridge.run(_on_asyncio(7)) == 7
    with pytest.raises(ValueError, match="from the loop"):
        await bridge.run(_fails())
    assert bridge.elsewhere()  # the loop runs on a thread of its own
    await bridge.aclose()
    assert not bridge.elsewhere()


async def test_a_cancelled_caller_goes_on_only_once_the_call_ended_on_the_loop() -> None:
    bridge = AsyncioThread("test-loop")
    steps: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.2)  # clean-up that takes a while
            steps.append("cleaned up")

    with anyio.move_on_after(0.1) as scope:
        await bridge.run(slow())
    steps.append("caller goes on")
    assert scope.cancelled_caught
    assert steps == ["cleaned up", "caller goes on"]
    await bridge.aclose()


async def test_a_result_made_before_the_cancel_reaches_the_caller() -> None:
    bridge = AsyncioThread("test-loop")
    got: list[int] = []

    async def result_despite_cancel() -> int:
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            return 6  # asked to stop, it answers anyway: its result stands
        return 5

    with anyio.move_on_after(0.05) as scope:
        got.append(await bridge.run(result_despite_cancel()))
        await anyio.sleep(1)  # trio's cancel lands at this checkpoint
    assert scope.cancelled_caught
    assert got == [6]
    await bridge.aclose()


async def test_aclose_ends_the_calls_still_running_and_the_next_call_starts_afresh() -> None:
    bridge = AsyncioThread("test-loop")
    errors: list[BaseException] = []

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(_waits_for_ever, bridge, errors)
            await anyio.sleep(0.1)
            await bridge.aclose()
    assert [str(e) for e in errors] == ["the event loop thread 'test-loop' stopped"]
    assert await bridge.run(_on_asyncio(1)) == 1  # a new thread
    await bridge.aclose()


async def test_a_loop_thread_that_ends_on_its_own_wakes_its_callers() -> None:
    bridge = AsyncioThread("test-loop")
    assert await bridge.run(_on_asyncio(1)) == 1
    errors: list[BaseException] = []

    def stop_the_loop() -> None:  # on the loop: as if an exception out of a task ended it
        asyncio.get_running_loop().stop()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(_waits_for_ever, bridge, errors)
            await anyio.sleep(0.1)
            bridge.call_soon(stop_the_loop)
        with pytest.raises(LoopClosedError, match=r"'test-loop' (stopped|ended)"):  # by timing
            await bridge.run(_on_asyncio(2))  # refused, or woken as the thread ends
    assert [str(e) for e in errors] == ["the event loop thread 'test-loop' stopped"]
    bridge.call_soon(print, "dropped")  # the loop is gone: dropped, not raised
    await bridge.aclose()
    assert await bridge.run(_on_asyncio(3)) == 3  # a new thread
    await bridge.aclose()
