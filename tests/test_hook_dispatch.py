"""The runner's hook dispatch: sync hooks inline, async ones awaited, pairing kept throughout."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass

import anyio
import anyio.lowlevel
import pytest

from cadence import Cadence, CadenceHooks, Context

pytestmark = pytest.mark.anyio


@dataclass
class Ctx(Context):
    n: int = 0


async def inc(ctx: Ctx) -> None:
    ctx.n += 1


async def fails(ctx: Ctx) -> None:
    raise ValueError("boom")


class Sync(CadenceHooks[Context]):
    """Plain `def` hooks."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def before_beat(self, beat_name: str, context: Context) -> None:
        self.calls.append(f"{self.name} before {beat_name}")

    def after_beat(
        self,
        beat_name: str,
        context: Context,
        duration: float,
        error: BaseException | None = None,
    ) -> None:
        self.calls.append(f"{self.name} after {beat_name} {type(error).__name__}")

    def on_error(self, beat_name: str, context: Context, error: Exception) -> None:
        self.calls.append(f"{self.name} on_error {beat_name}")


class Async(Sync):
    """`async def` hooks that suspend."""

    async def before_beat(self, beat_name: str, context: Context) -> None:  # type: ignore[override] # async on purpose
        await anyio.lowlevel.checkpoint()
        super().before_beat(beat_name, context)

    async def after_beat(  # type: ignore[override] # async on purpose
        self,
        beat_name: str,
        context: Context,
        duration: float,
        error: BaseException | None = None,
    ) -> None:
        await anyio.lowlevel.checkpoint()
        super().after_beat(beat_name, context, duration, error)


class Deferred(Sync):
    """Plain `def` hooks that return a coroutine: they are awaited all the same."""

    def before_beat(self, beat_name: str, context: Context) -> Awaitable[None]:  # type: ignore[override] # returns an awaitable on purpose
        async def later() -> None:
            await anyio.lowlevel.checkpoint()
            Sync.before_beat(self, beat_name, context)

        return later()

    def after_beat(  # type: ignore[override] # as above
        self,
        beat_name: str,
        context: Context,
        duration: float,
        error: BaseException | None = None,
    ) -> Awaitable[None]:
        async def later() -> None:
            await anyio.lowlevel.checkpoint()
            Sync.after_beat(self, beat_name, context, duration, error)

        return later()


async def test_mixed_sync_and_async_hooks_run_in_order_and_unwind_in_reverse(
    anyio_backend: str,
) -> None:
    calls: list[str] = []
    hooks = [Sync("a", calls), Async("b", calls), Deferred("c", calls), Sync("d", calls)]
    cadence = Cadence("c", Ctx()).with_hooks(hooks).then("one", inc).then("two", fails)
    with pytest.raises(Exception, match="boom"):
        await cadence.run()
    assert calls == [
        "a before one",
        "b before one",
        "c before one",
        "d before one",
        "d after one NoneType",
        "c after one NoneType",
        "b after one NoneType",
        "a after one NoneType",
        "a before two",
        "b before two",
        "c before two",
        "d before two",
        "d after two ValueError",
        "c after two ValueError",
        "b after two ValueError",
        "a after two ValueError",
        # on_error after every after_beat, in the same (reverse) order
        "d on_error two",
        "c on_error two",
        "b on_error two",
        "a on_error two",
    ]


async def test_a_raising_sync_hook_is_logged_and_its_neighbours_still_called(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    class Broken(Sync):
        def after_beat(
            self,
            beat_name: str,
            context: Context,
            duration: float,
            error: BaseException | None = None,
        ) -> None:
            raise RuntimeError("after bug")

    hooks = [Sync("a", calls), Broken("x", calls), Async("b", calls)]
    with caplog.at_level(logging.ERROR, logger="cadence"):
        result = await Cadence("c", Ctx()).with_hooks(hooks).then("one", inc).run()
    assert result.n == 1
    assert calls == [
        "a before one",
        "x before one",
        "b before one",
        "b after one NoneType",
        "a after one NoneType",
    ]
    assert "Broken.after_beat raised; the run goes on" in caplog.text
    assert "after bug" in caplog.text


async def test_a_cancellation_during_an_async_after_beat_lets_the_rest_run(
    anyio_backend: str,
) -> None:
    calls: list[str] = []
    with anyio.CancelScope() as scope:

        async def cancel_here(ctx: Ctx) -> None:
            scope.cancel()  # the beat itself returns; the cancellation lands in a hook

        hooks = [Sync("a", calls), Async("b", calls), Sync("c", calls)]
        await Cadence("c", Ctx()).with_hooks(hooks).then("one", cancel_here).then("two", inc).run()
    assert scope.cancelled_caught
    # "b" was cancelled while awaiting; "a" still got its after_beat; "two" never started
    assert calls == [
        "a before one",
        "b before one",
        "c before one",
        "c after one NoneType",
        "a after one NoneType",
    ]


async def test_run_hooks_alone_leave_the_beats_unobserved(anyio_backend: str) -> None:
    seen: list[tuple[str, str, bool]] = []

    class RunsOnly:
        def before_cadence(self, cadence_name: str, context: Ctx) -> None:
            seen.append(("start", cadence_name, False))

        def after_cadence(
            self, cadence_name: str, context: Ctx, duration: float, error: object = None
        ) -> None:
            seen.append(("end", cadence_name, duration >= 0 and error is None))

    child = Cadence("kid", Ctx()).then("inner", inc).with_hooks(RunsOnly())  # type: ignore[arg-type] # a partial hooks object
    cadence = (
        Cadence("c", Ctx())
        .with_hooks(RunsOnly())  # type: ignore[arg-type] # as above
        .then("one", inc)
        .child("sub", child, lambda parent, kid: None)
    )
    assert cadence.observers is not None
    assert not cadence.observers.watches_beats
    result = await cadence.run()
    assert result.n == 1
    assert seen == [
        ("start", "c", False),
        ("start", "kid", False),
        ("end", "kid", True),
        ("end", "c", True),
    ]


async def test_a_child_run_reuses_its_observers_and_still_names_beats_by_path(
    anyio_backend: str,
) -> None:
    calls: list[str] = []
    child = Cadence("kid", Ctx()).then("inner", inc)
    cadence = (
        Cadence("c", Ctx())
        .with_hooks(Sync("a", calls))
        .child("sub", child, lambda parent, kid: None)
    )
    await cadence.run()
    await cadence.run()
    observers = cadence.observers
    assert observers is not None
    assert observers.nested("sub.", ()) is observers.nested("sub.", ())
    assert calls == ["a before sub.inner", "a after sub.inner NoneType"] * 2


class ParallelStartsOnly(Sync):
    """Told of the starts of parallel beats only (as a metrics reporter is)."""

    __cadence_parallel_starts_only__ = True


async def test_hooks_told_of_parallel_starts_only_hear_every_end(anyio_backend: str) -> None:
    calls: list[str] = []
    cadence = (
        Cadence("c", Ctx())
        .with_hooks(Sync("all", calls))
        .with_hooks(ParallelStartsOnly("par", calls))
        .then("a", inc)
        .sync("s", [inc])
        .split("q", lambda c: True, inc, fails)
    )
    await cadence.run()
    assert calls == [
        "all before a",
        "par after a NoneType",
        "all after a NoneType",
        "all before s.inc",
        "par before s.inc",
        "par after s.inc NoneType",
        "all after s.inc NoneType",
        "all before q.inc",
        "par after q.inc NoneType",
        "all after q.inc NoneType",
    ]


async def test_a_failed_sequential_beat_reaches_hooks_told_of_parallel_starts_only(
    anyio_backend: str,
) -> None:
    calls: list[str] = []
    cadence = (
        Cadence("c", Ctx())
        .with_hooks(ParallelStartsOnly("par", calls))
        .then("boom", fails)
        .on_error(lambda c, e: None, stop=False)
    )
    await cadence.run()
    assert calls == ["par after boom ValueError", "par on_error boom"]
