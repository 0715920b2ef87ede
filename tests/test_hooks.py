"""Hooks and reporters: what they see, in which order, and how their failures are contained."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio
import anyio.lowlevel
import pytest

from cadence import (
    BeatError,
    Cadence,
    CadenceHooks,
    Context,
    LoggingHooks,
    RunTimings,
    TimingHooks,
)

pytestmark = pytest.mark.anyio


@dataclass
class Ctx(Context):
    n: int = 0
    m: int = 0


@dataclass
class Inner(Context):
    k: int = 0


async def inc(ctx: Ctx) -> None:
    ctx.n += 1


def inc_m(ctx: Ctx) -> None:
    ctx.m += 1


async def inner_beat(ctx: Inner) -> None:
    ctx.k = 1


async def fails(ctx: Ctx) -> None:
    raise ValueError("boom")


class Recorder(CadenceHooks[Context]):
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    async def before_cadence(self, cadence_name: str, context: Context) -> None:
        self.events.append(("before_cadence", cadence_name))

    def after_cadence(
        self,
        cadence_name: str,
        context: Context,
        duration: float,
        error: BaseException | None = None,
    ) -> None:
        self.events.append(("after_cadence", cadence_name, type(error).__name__))

    async def before_beat(self, beat_name: str, context: Context) -> None:
        self.events.append(("before_beat", beat_name))

    async def after_beat(
        self,
        beat_name: str,
        context: Context,
        duration: float,
        error: BaseException | None = None,
    ) -> None:
        assert duration >= 0
        self.events.append(("after_beat", beat_name, type(error).__name__))

    def on_error(self, beat_name: str, context: Context, error: Exception) -> None:
        self.events.append(("on_error", beat_name, type(error).__name__))


async def test_hooks_see_every_beat_by_path_including_nested_ones() -> None:
    parent_hooks, child_hooks = Recorder(), Recorder()
    child = Cadence("inner", Inner()).then("inner_beat", inner_beat).with_hooks(child_hooks)
    cadence = (
        Cadence("outer", Ctx())
        .with_hooks(parent_hooks)
        .then("first", inc)
        .sync("par", [inc, inc_m])
        .split("route", lambda ctx: ctx.n > 0, [inc])
        .child("nested", child, lambda parent, inner: None)
    )
    result = await cadence.run()
    assert (result.n, result.m) == (3, 1)
    events = parent_hooks.events
    assert events[0] == ("before_cadence", "outer")
    assert events[-1] == ("after_cadence", "outer", "NoneType")
    assert events[1:3] == [("before_beat", "first"), ("after_beat", "first", "NoneType")]
    parallel = events[3:7]
    assert sorted(parallel) == sorted(
        [
            ("before_beat", "par.inc"),
            ("after_beat", "par.inc", "NoneType"),
            ("before_beat", "par.inc_m"),
            ("after_beat", "par.inc_m", "NoneType"),
        ]
    )
    assert events[7:11] == [
        ("before_beat", "route.inc"),
        ("after_beat", "route.inc", "NoneType"),
        ("before_beat", "nested.inner_beat"),
        ("after_beat", "nested.inner_beat", "NoneType"),
    ]
    assert child_hooks.events == [
        ("before_cadence", "inner"),
        ("before_beat", "inner_beat"),
        ("after_beat", "inner_beat", "NoneType"),
        ("after_cadence", "inner", "NoneType"),
    ]


async def test_failures_reach_after_beat_on_error_and_after_cadence() -> None:
    hooks = Recorder()
    cadence = Cadence("c", Ctx()).with_hooks(hooks).then("fails", fails)
    with pytest.raises(BeatError):
        await cadence.run()
    assert hooks.events == [
        ("before_cadence", "c"),
        ("before_beat", "fails"),
        ("after_beat", "fails", "ValueError"),
        ("on_error", "fails", "ValueError"),
        ("after_cadence", "c", "BeatError"),
    ]


async def test_cancellation_is_reported_as_such_and_balanced() -> None:
    hooks = Recorder()
    started = anyio.Event()

    async def forever(ctx: Ctx) -> None:
        started.set()
        await anyio.sleep_forever()

    cadence = Cadence("c", Ctx()).with_hooks(hooks).then("forever", forever)
    async with anyio.create_task_group() as group:
        group.start_soon(cadence.run)
        await started.wait()
        group.cancel_scope.cancel()
    cancelled = anyio.get_cancelled_exc_class().__name__
    assert hooks.events == [
        ("before_cadence", "c"),
        ("before_beat", "forever"),
        ("after_beat", "forever", cancelled),
        ("after_cadence", "c", cancelled),
    ]


async def test_a_raising_hook_is_logged_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(CadenceHooks[Context]):
        async def before_beat(self, beat_name: str, context: Context) -> None:
            raise RuntimeError("hook bug")

    with caplog.at_level(logging.ERROR, logger="cadence"):
        result = await Cadence("c", Ctx()).with_hooks(Broken()).then("inc", inc).run()
    assert result.n == 1
    assert "Broken.before_beat raised; the run goes on" in caplog.text
    assert "hook bug" in caplog.text


async def test_hooks_given_as_a_list_and_partial_hook_objects() -> None:
    class OnlyAfter:
        def __init__(self) -> None:
            self.names: list[str] = []

        def after_beat(
            self, beat_name: str, context: Ctx, duration: float, error: object = None
        ) -> None:
            self.names.append(beat_name)

    first, second = OnlyAfter(), OnlyAfter()
    cadence = Cadence("c", Ctx()).with_hooks([first, second]).then("inc", inc)  # type: ignore[list-item]
    await cadence.run()
    assert first.names == second.names == ["inc"]


async def test_reporters_sync_and_async() -> None:
    reported: list[tuple[str, int]] = []

    def sync_report(beat_name: str, elapsed: float, context: Ctx) -> None:
        assert elapsed >= 0
        reported.append((beat_name, context.n))

    async def async_report(beat_name: str, elapsed: float, context: Ctx) -> None:
        await anyio.lowlevel.checkpoint()
        reported.append((f"async {beat_name}", context.n))

    cadence = (
        Cadence("c", Ctx())
        .with_reporter(sync_report)
        .with_reporter(async_report)
        .then("one", inc)
        .sync("par", [inc_m])
    )
    await cadence.run()
    # After-beat calls go in reverse attachment order, as nested context managers close.
    assert reported == [("async one", 1), ("one", 1), ("async par.inc_m", 1), ("par.inc_m", 1)]


async def test_timing_hooks_keep_concurrent_runs_apart() -> None:
    timing = TimingHooks()

    async def sleepy(ctx: Ctx) -> None:
        await anyio.sleep(0.001 * ctx.n)

    cadence = Cadence[Ctx]("timed").with_hooks(timing).then("sleepy", sleepy).sync("par", [inc_m])
    async with anyio.create_task_group() as group:
        for n in range(1, 6):
            group.start_soon(cadence.run, Ctx(n=n))
    assert len(timing.runs) == 5
    for run in timing.runs:
        assert isinstance(run, RunTimings)
        assert run.cadence_name == "timed"
        assert set(run.beats) == {"sleepy", "par.inc_m"}
        assert run.total is not None
        assert run.total >= run.beats["sleepy"]
        assert run.error is None
    assert timing.last is timing.runs[-1]


async def test_timing_hooks_keep_only_the_last_runs() -> None:
    timing = TimingHooks(keep=2)
    cadence = Cadence("c", Ctx()).with_hooks(timing).then("inc", inc)
    for _ in range(3):
        await cadence.run()
    assert len(timing.runs) == 2
    with pytest.raises(ValueError, match="keep must be >= 1, got 0"):
        TimingHooks(keep=0)


async def test_logging_hooks_log_runs_beats_and_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cadence = Cadence("logged", Ctx()).with_hooks(LoggingHooks()).then("inc", inc).then("f", fails)
    with caplog.at_level(logging.INFO, logger="cadence"), pytest.raises(BeatError):
        await cadence.run()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "cadence 'logged' started"
    assert messages[1] == "beat 'inc' started"
    assert messages[2].startswith("beat 'inc' finished in ")
    assert "beat 'f' failed: boom" in messages
    assert messages[-1].startswith("cadence 'logged' failed after ")
    failure = next(r for r in caplog.records if r.getMessage() == "beat 'f' failed: boom")
    assert failure.levelno == logging.ERROR
    assert failure.exc_info is not None


async def test_no_hooks_means_no_observer_calls() -> None:
    calls: list[str] = []

    class Spy(CadenceHooks[Context]):
        def before_beat(self, beat_name: str, context: Context) -> None:
            calls.append(beat_name)

    plain = Cadence("c", Ctx()).then("inc", inc)
    observed = plain.with_hooks(Spy())
    await plain.run()
    assert calls == []
    await observed.run()
    assert calls == ["inc"]


async def test_a_before_beat_cancelled_while_awaiting_still_gets_its_after_beat() -> None:
    calls: list[str] = []

    class Slow(CadenceHooks[Ctx]):
        async def before_beat(self, beat_name: str, context: Ctx) -> None:
            calls.append(f"before {beat_name}")
            await anyio.sleep_forever()

        def after_beat(
            self,
            beat_name: str,
            context: Ctx,
            duration: float,
            error: BaseException | None = None,
        ) -> None:
            calls.append(f"after {beat_name} {type(error).__name__}")

    cadence = Cadence("c", Ctx()).then("one", lambda ctx: None).with_hooks(Slow())
    with anyio.move_on_after(0.05):
        await cadence.run()
    cancelled = anyio.get_cancelled_exc_class().__name__
    assert calls == ["before one", f"after one {cancelled}"]


async def test_one_timing_hooks_on_parent_and_child_files_each_beat_under_its_run() -> None:
    timing = TimingHooks()
    child = Cadence("child", Ctx()).then("inner", lambda ctx: None).with_hooks(timing)
    parent = (
        Cadence("parent", Ctx())
        .then("outer", lambda ctx: None)
        .child("kid", child, lambda p, c: None)
        .with_hooks(timing)
    )
    await parent.run()
    runs = {r.cadence_name: r for r in timing.runs}
    assert set(runs) == {"parent", "child"}
    assert set(runs["child"].beats) == {"inner"}
    assert set(runs["parent"].beats) == {"outer"}
