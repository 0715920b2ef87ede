"""Concurrency: one shared definition under heavy concurrent use, and cancellation anywhere.

Every test runs on asyncio and on trio. Leftover tasks are counted per backend (asyncio's
`all_tasks`, trio's task tree from the root task); leftover threads are judged by a counter of
threads running beat code right now, plus the names of the worker threads the pools keep idle.
"""

from __future__ import annotations

import asyncio
import copy
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest

from cadence import (
    BeatError,
    Cadence,
    CadenceError,
    CadenceHooks,
    Context,
    beat,
)

pytestmark = pytest.mark.anyio


def live_tasks(backend: str) -> int:
    """Count the tasks alive on the running event loop."""
    if backend == "asyncio":
        return len(asyncio.all_tasks())
    import trio  # noqa: PLC0415 # only the trio backend needs it

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


def cancelled_exc() -> type[BaseException]:
    return anyio.get_cancelled_exc_class()


async def pause(count: int) -> None:
    for _ in range(count):
        await anyio.lowlevel.checkpoint()


# --------------------------------------------------------------------- (a) 10,000 runs


@dataclass
class Job(Context):
    inp: int = 0
    trail: list[int] = field(default_factory=list)
    left: int = 0
    right: int = 0
    meta: dict[str, int] = field(default_factory=dict)
    out: int = 0
    tag: str = ""


async def double(ctx: Job) -> None:
    await pause(ctx.inp % 3)
    ctx.trail.append(2 * ctx.inp)


async def fan_left(ctx: Job) -> None:
    await pause(ctx.inp % 2)
    ctx.left = ctx.inp + 1
    ctx.trail.append(ctx.inp)  # a nested mutation of the copy, merged back as the only writer


@beat(blocking=False)
def fan_right(ctx: Job) -> None:
    ctx.right = 3 * ctx.inp


async def fan_meta(ctx: Job) -> None:
    await pause((ctx.inp + 1) % 3)
    ctx.meta["seen"] = ctx.inp


async def finish(ctx: Job) -> None:
    await anyio.lowlevel.checkpoint()
    ctx.out = sum(ctx.trail) + ctx.left + ctx.right + ctx.meta["seen"]
    ctx.tag = f"job-{ctx.inp}"


TEMPLATE = Job(inp=-1)
PIPELINE = (
    Cadence("pipeline", TEMPLATE)
    .then("double", double)
    .sync("fan", [fan_left, fan_right, fan_meta])
    .then("finish", finish)
)


def expected_job(inp: int) -> Job:
    return Job(
        inp=inp,
        trail=[2 * inp, inp],
        left=inp + 1,
        right=3 * inp,
        meta={"seen": inp},
        out=2 * inp + inp + (inp + 1) + 3 * inp + inp,
        tag=f"job-{inp}",
    )


async def test_one_definition_serves_ten_thousand_concurrent_runs(anyio_backend: str) -> None:
    runs = 10_000
    template_before = copy.deepcopy(TEMPLATE)
    template_trail = TEMPLATE.trail
    baseline = live_tasks(anyio_backend)
    results: dict[int, Job] = {}
    fresh: list[Job] = []
    peak: list[int] = []

    async def one(i: int) -> None:
        if i == runs // 2:
            await anyio.lowlevel.checkpoint()
            peak.append(live_tasks(anyio_backend))
        if i % 10 == 0:  # every tenth run goes from the template
            fresh.append(await PIPELINE.run())
        else:
            ctx = Job(inp=i)
            result = await PIPELINE.run(ctx)
            assert result is ctx
            results[i] = result

    async with anyio.create_task_group() as group:
        for i in range(runs):
            group.start_soon(one, i)

    assert live_tasks(anyio_backend) == baseline  # no task left over
    assert peak
    assert peak[0] > baseline + runs // 2  # the counter does see the runs' tasks
    assert len(results) == runs - runs // 10
    for i, result in results.items():
        assert result == expected_job(i), i
    assert len(fresh) == runs // 10
    assert all(result == expected_job(-1) for result in fresh)
    assert len({id(r) for r in fresh}) == len(fresh)  # each run got its own context
    assert len({id(r.trail) for r in fresh}) == len(fresh)
    assert template_before == TEMPLATE  # the template is untouched
    assert TEMPLATE.trail is template_trail
    assert TEMPLATE.trail == []


# --------------------------------------------------------------------- (b) random cancellation


class Tracker:
    """What the beats and hooks of the cancellation test saw, per run; thread-safe."""

    def __init__(self) -> None:
        # Looked up now, on the event loop: worker threads cannot ask anyio for it.
        self.cancelled = anyio.get_cancelled_exc_class()
        self.lock = threading.Lock()
        self.started: Counter[tuple[int, str]] = Counter()
        self.cleaned: Counter[tuple[int, str]] = Counter()
        self.cancelled_in: Counter[str] = Counter()
        self.in_thread_now: Counter[int] = Counter()
        self.hooks: Counter[tuple[int, str]] = Counter()
        self.hook_errors: list[BaseException] = []
        self.handled: list[tuple[int, BaseException]] = []
        self.on_error_hook: list[tuple[str, BaseException]] = []
        self.scopes: dict[int, anyio.CancelScope] = {}
        self.cancel_at: dict[int, str] = {}  # runs cancelled by one of their own beats

    def saw_cancellation(self, name: str) -> None:
        with self.lock:
            self.cancelled_in[name] += 1

    def start(self, run: int, name: str, *, thread: bool = False) -> None:
        with self.lock:
            self.started[run, name] += 1
            if thread:
                self.in_thread_now[run] += 1

    def clean(self, run: int, name: str, *, thread: bool = False) -> None:
        with self.lock:
            self.cleaned[run, name] += 1
            if thread:
                self.in_thread_now[run] -= 1

    def hook(self, run: int, method: str) -> None:
        with self.lock:
            self.hooks[run, method] += 1


@dataclass
class Outer(Context):
    run: int = 0
    spins: int = 0
    a: int = 0
    b: int = 0
    c: int = 0
    d: int = 0
    e: int = 0
    kid: int = 0
    last: int = 0


@dataclass
class Inner(Context):
    run: int = 0
    spins: int = 0
    x: int = 0
    y: int = 0


def async_beat(tracker: Tracker, name: str, target: str) -> Any:
    async def fn(ctx: Any) -> None:
        tracker.start(ctx.run, name)
        try:
            if tracker.cancel_at.get(ctx.run) == name:
                tracker.scopes[ctx.run].cancel()
                await anyio.lowlevel.checkpoint()
            await pause((ctx.spins + len(name)) % 5)
            setattr(ctx, target, 1)
        except tracker.cancelled:
            tracker.saw_cancellation(name)
            raise
        finally:
            tracker.clean(ctx.run, name)

    return beat(name=name)(fn)


def thread_beat(tracker: Tracker, name: str, target: str) -> Any:
    def fn(ctx: Any) -> None:
        assert threading.current_thread() is not threading.main_thread()
        tracker.start(ctx.run, name, thread=True)
        try:
            if tracker.cancel_at.get(ctx.run) == name:
                anyio.from_thread.run_sync(tracker.scopes[ctx.run].cancel)
                anyio.from_thread.check_cancelled()
            for _ in range((ctx.spins + len(name)) % 3):
                anyio.from_thread.check_cancelled()  # raises the backend's cancellation
            setattr(ctx, target, 1)
        except tracker.cancelled:
            tracker.saw_cancellation(name)
            raise
        finally:
            tracker.clean(ctx.run, name, thread=True)

    return beat(name=name)(fn)


class CountingHooks(CadenceHooks[Any]):
    """Count every hook call per run; optionally async, with checkpoints inside."""

    def __init__(self, tracker: Tracker, *, use_async: bool) -> None:
        self.tracker = tracker
        self.use_async = use_async

    def _after(self, context: Any, method: str, error: BaseException | None) -> Any:
        self.tracker.hook(context.run, method)
        if error is not None and not isinstance(error, self.tracker.cancelled):
            self.tracker.hook_errors.append(error)
        if self.use_async:
            return pause(1)
        return None

    def _before(self, context: Any, method: str) -> Any:
        if not self.use_async:
            self.tracker.hook(context.run, method)
            return None

        async def later() -> None:
            # A before-hook counts once it has started: one cancelled while it awaits is
            # still owed its after-hook.
            self.tracker.hook(context.run, method)
            await pause(1)

        return later()

    def before_cadence(self, cadence_name: str, context: Any) -> Any:
        return self._before(context, "before_cadence")

    def after_cadence(
        self,
        cadence_name: str,
        context: Any,
        duration: float,
        error: BaseException | None = None,
    ) -> Any:
        return self._after(context, "after_cadence", error)

    def before_beat(self, beat_name: str, context: Any) -> Any:
        return self._before(context, "before_beat")

    def after_beat(
        self,
        beat_name: str,
        context: Any,
        duration: float,
        error: BaseException | None = None,
    ) -> Any:
        return self._after(context, "after_beat", error)

    def on_error(self, beat_name: str, context: Any, error: Exception) -> None:
        self.tracker.on_error_hook.append((beat_name, error))


def build(tracker: Tracker, *, async_hooks: bool) -> Cadence[Outer]:
    def handler(ctx: Any, error: CadenceError) -> None:
        tracker.handled.append((ctx.run, error))

    inner = (
        Cadence("inner", Inner())
        .then("c_async", async_beat(tracker, "c_async", "x"))
        .then("c_thread", thread_beat(tracker, "c_thread", "y"))
        .on_error(handler)
    )
    if not async_hooks:
        # Nested beats are also told to the outer hooks: with async hooks, two hooks observe
        # one beat, which test_a_cancelled_hook_never_leaves_another_hook_unpaired covers.
        inner = inner.with_hooks(CountingHooks(tracker, use_async=False))

    def merge_kid(parent: Outer, child: Inner) -> None:
        parent.kid = child.x + child.y

    outer = (
        Cadence("outer", Outer())
        .then("t_async", async_beat(tracker, "t_async", "a"))
        .then("t_thread", thread_beat(tracker, "t_thread", "b"))
        .sync(
            "fan",
            [
                async_beat(tracker, "p_async", "c"),
                thread_beat(tracker, "p_thread", "d"),
                async_beat(tracker, "p_async_2", "e"),
            ],
        )
        .child("kid", inner, merge_kid, context=lambda p: Inner(run=p.run, spins=p.spins))
        .then("t_last", async_beat(tracker, "t_last", "last"))
        .on_error(handler)
    )
    return outer.with_hooks(CountingHooks(tracker, use_async=async_hooks))


ALL_BEATS = (
    "t_async",
    "t_thread",
    "p_async",
    "p_thread",
    "p_async_2",
    "c_async",
    "c_thread",
    "t_last",
)


def beats_after(name: str) -> tuple[str, ...]:
    """The beats that run strictly after `name` (parallel siblings are not after each other)."""
    order = [("t_async",), ("t_thread",), ("p_async", "p_thread", "p_async_2"), ("c_async",)]
    order += [("c_thread",), ("t_last",)]
    index = next(i for i, group in enumerate(order) if name in group)
    return tuple(b for group in order[index + 1 :] for b in group)


@pytest.mark.parametrize("async_hooks", [False, True], ids=["sync_hooks", "async_hooks"])
async def test_a_thousand_runs_cancelled_at_random_points(
    anyio_backend: str, async_hooks: bool
) -> None:
    rng = random.Random(20240611)
    tracker = Tracker()
    cadence = build(tracker, async_hooks=async_hooks)
    threads_before = set(threading.enumerate())
    baseline = live_tasks(anyio_backend)
    outcomes: dict[int, object] = {}
    leftovers: dict[int, int] = {}
    finals: dict[int, tuple[int, ...]] = {}

    async def one(run: int, spins: int, mode: str, amount: float) -> None:
        ctx = Outer(run=run, spins=spins)
        with anyio.CancelScope() as scope:
            tracker.scopes[run] = scope
            async with anyio.create_task_group() as group:

                async def cancel_soon() -> None:
                    if mode == "checkpoints":
                        await pause(int(amount))
                    elif mode == "sleep":
                        await anyio.sleep(amount)
                    else:
                        return  # "never", or "at_beat": the beat itself cancels
                    scope.cancel()

                group.start_soon(cancel_soon)
                try:
                    await cadence.run(ctx)
                except cancelled_exc():
                    outcomes[run] = "cancelled"
                    raise
                except BaseException as exc:  # a wrapped cancellation lands here: recorded
                    outcomes[run] = exc
                else:
                    outcomes[run] = "completed"
                    finals[run] = (ctx.a, ctx.b, ctx.c, ctx.d, ctx.e, ctx.kid, ctx.last)
                group.cancel_scope.cancel()  # the canceller is no longer needed
        # The run is over: none of its beats may still run in a worker thread.
        leftovers[run] = tracker.in_thread_now[run]

    runs = 1000
    plans: list[tuple[int, str, float]] = []
    for run in range(runs):
        spins, mode = rng.randrange(10), rng.random()
        if mode < 0.5:
            plans.append((spins, "checkpoints", rng.randrange(60)))
        elif mode < 0.7:
            plans.append((spins, "sleep", rng.random() / 500))
        elif mode < 0.9:
            tracker.cancel_at[run] = rng.choice(ALL_BEATS)
            plans.append((spins, "at_beat", 0))
        else:
            plans.append((spins, "never", 0))
    batch = 50  # runs overlap in batches, so cancellation also lands among busy neighbours
    for first in range(0, runs, batch):
        async with anyio.create_task_group() as group:
            for run in range(first, first + batch):
                group.start_soon(one, run, *plans[run])

    assert live_tasks(anyio_backend) == baseline  # no task left over
    wrapped = {run: o for run, o in outcomes.items() if not isinstance(o, str)}
    assert wrapped == {}, "cancellation must never be wrapped"
    assert len(outcomes) == runs
    kinds = Counter(outcomes.values())
    assert kinds["cancelled"] >= len(tracker.cancel_at)
    assert kinds["completed"] >= sum(mode == "never" for _, mode, _ in plans)
    assert len(finals) == kinds["completed"]
    assert set(finals.values()) == {(1, 1, 1, 1, 1, 2, 1)}  # a completed run did everything
    # Every started beat cleaned up exactly once, and no beat code outlived its run.
    assert set(tracker.started.values()) == {1}
    assert tracker.cleaned == tracker.started
    assert set(leftovers.values()) == {0}
    # Cancellation reached beats of every kind: async, in a thread, parallel, in a child.
    assert set(tracker.cancelled_in) == set(ALL_BEATS), tracker.cancelled_in
    for run, name in tracker.cancel_at.items():
        assert outcomes[run] == "cancelled"
        assert tracker.started[run, name] == 1
        assert not any(tracker.started[run, later] for later in beats_after(name))
    # Hooks are balanced per run and never told of a cancellation as an error.
    for run in range(runs):
        h = tracker.hooks
        assert h[run, "before_beat"] == h[run, "after_beat"], (run, outcomes[run])
        assert h[run, "before_cadence"] == h[run, "after_cadence"], (run, outcomes[run])
    assert tracker.hook_errors == []
    assert tracker.on_error_hook == []
    assert tracker.handled == []
    # No thread is left but the pools' own workers (trio renames its idle ones "Trio thread N"
    # just after handing a result back, so give it a moment).
    pool_name = "AnyIO worker thread" if anyio_backend == "asyncio" else "Trio thread "

    def foreign_threads() -> list[threading.Thread]:
        new = set(threading.enumerate()) - threads_before
        return [t for t in new if not t.name.startswith(pool_name)]

    for _ in range(500):
        if not foreign_threads():
            break
        await anyio.sleep(0.01)
    assert foreign_threads() == []


# --------------------------------------------------------------------- (c) cancelling a run


@dataclass
class Plain(Context):
    value: int = 0
    other: int = 0


def placements(waiter: Any, sibling: Any) -> dict[str, Cadence[Plain]]:
    child = Cadence("kid", Plain()).then("wait", waiter)
    return {
        "then": Cadence("c", Plain()).then("wait", waiter),
        "sync": Cadence("c", Plain()).sync("fan", [waiter, sibling]),
        "split": Cadence("c", Plain()).split("route", lambda ctx: True, [waiter]),
        "child": Cadence("c", Plain()).child("kid", child, lambda parent, kid: None),
    }


@pytest.mark.parametrize("placement", ["then", "sync", "split", "child"])
async def test_cancelling_a_run_cancels_its_running_beat(
    anyio_backend: str, placement: str
) -> None:
    started = anyio.Event()
    cleaned: list[str] = []
    handled: list[BaseException] = []
    hooked: list[BaseException] = []

    @beat(name="waiter")
    async def waiter(ctx: Plain) -> None:
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            cleaned.append("waiter")

    @beat(name="sibling")
    async def sibling(ctx: Plain) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cleaned.append("sibling")

    class ErrorHooks(CadenceHooks[Plain]):
        def on_error(self, beat_name: str, context: Plain, error: Exception) -> None:
            hooked.append(error)

    cadence = (
        placements(waiter, sibling)[placement]
        .on_error(lambda ctx, error: handled.append(error))
        .with_hooks(ErrorHooks())
    )
    baseline = live_tasks(anyio_backend)
    raised: list[BaseException] = []

    async with anyio.create_task_group() as group:

        async def run() -> None:
            try:
                await cadence.run()
            except BaseException as exc:
                raised.append(exc)
                raise

        group.start_soon(run)
        await started.wait()
        await pause(3)
        assert cleaned == []  # still waiting
        group.cancel_scope.cancel()

    assert len(raised) == 1
    assert type(raised[0]) is cancelled_exc()
    assert not isinstance(raised[0], BeatError)
    expected = ["sibling", "waiter"] if placement == "sync" else ["waiter"]
    assert sorted(cleaned) == expected
    assert handled == []
    assert hooked == []
    assert live_tasks(anyio_backend) == baseline


async def test_cancelling_waits_for_a_beat_in_a_worker_thread(anyio_backend: str) -> None:
    """A sync beat cannot be interrupted: the cancelled run ends only once the beat has.

    The cancellation then lands at the run's next checkpoint (here the next beat's).
    """
    entered = threading.Event()
    release = threading.Event()
    states: list[str] = []

    def blocking(ctx: Plain) -> None:
        states.append("entered")
        entered.set()
        try:
            assert release.wait(timeout=30)
        finally:
            states.append("left")

    async def next_beat(ctx: Plain) -> None:
        try:
            await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            states.append("next cancelled")
            raise
        states.append("next ran")  # pragma: no cover - the run was cancelled before

    cadence = (
        Cadence("c", Plain()).sync("fan", [blocking, lambda ctx: None]).then("next", next_beat)
    )
    raised: list[BaseException] = []
    ended = anyio.Event()

    async with anyio.create_task_group() as group:

        async def run() -> None:
            try:
                await cadence.run()
            except BaseException as exc:
                raised.append(exc)
                raise
            finally:
                ended.set()

        group.start_soon(run)
        with anyio.fail_after(30):
            await anyio.to_thread.run_sync(entered.wait)
        group.cancel_scope.cancel()
        with anyio.CancelScope(shield=True):
            await pause(20)
            assert not ended.is_set()  # the run waits for its beat's thread
            assert states == ["entered"]
            release.set()
            await ended.wait()

    # asyncio raises the cancellation as the thread returns, trio at the next checkpoint.
    assert states in (["entered", "left"], ["entered", "left", "next cancelled"])
    assert len(raised) == 1
    assert type(raised[0]) is cancelled_exc()


async def test_a_cancelled_hook_never_leaves_another_hook_unpaired(anyio_backend: str) -> None:
    """Two hooks observe one beat; cancellation lands inside the second one's before_beat.

    The first hook's before_beat returned, so it must hear after_beat (a span it opened must
    close); likewise for before_cadence and after_cadence.
    """
    calls: list[str] = []
    blocked = anyio.Event()

    class First(CadenceHooks[Plain]):
        def before_cadence(self, cadence_name: str, context: Plain) -> None:
            calls.append("before_cadence")

        def after_cadence(
            self,
            cadence_name: str,
            context: Plain,
            duration: float,
            error: BaseException | None = None,
        ) -> None:
            calls.append("after_cadence")

        def before_beat(self, beat_name: str, context: Plain) -> None:
            calls.append("before_beat")

        def after_beat(
            self,
            beat_name: str,
            context: Plain,
            duration: float,
            error: BaseException | None = None,
        ) -> None:
            calls.append("after_beat")

    class Slow(CadenceHooks[Plain]):
        async def before_beat(self, beat_name: str, context: Plain) -> None:
            blocked.set()
            await anyio.sleep_forever()  # e.g. an exporter that is slow to answer

    async def work(ctx: Plain) -> None:
        ctx.value = 1

    cadence = Cadence("c", Plain()).then("work", work).with_hooks([First(), Slow()])
    async with anyio.create_task_group() as group:
        group.start_soon(cadence.run)
        await blocked.wait()
        group.cancel_scope.cancel()

    assert calls.count("before_beat") == calls.count("after_beat"), calls
    assert calls.count("before_cadence") == calls.count("after_cadence"), calls


async def test_a_cancelled_after_hook_never_deprives_the_next_hook(anyio_backend: str) -> None:
    """Cancellation lands inside the first hook's after_beat: the second still hears of it."""
    calls: list[str] = []
    blocked = anyio.Event()

    class Slow(CadenceHooks[Plain]):
        async def after_beat(
            self,
            beat_name: str,
            context: Plain,
            duration: float,
            error: BaseException | None = None,
        ) -> None:
            blocked.set()
            await anyio.sleep_forever()

    class Last(CadenceHooks[Plain]):
        def before_beat(self, beat_name: str, context: Plain) -> None:
            calls.append("before_beat")

        def after_beat(
            self,
            beat_name: str,
            context: Plain,
            duration: float,
            error: BaseException | None = None,
        ) -> None:
            calls.append("after_beat")

    async def work(ctx: Plain) -> None:
        ctx.value = 1

    cadence = Cadence("c", Plain()).then("work", work).with_hooks([Slow(), Last()])
    async with anyio.create_task_group() as group:
        group.start_soon(cadence.run)
        await blocked.wait()
        group.cancel_scope.cancel()

    assert calls == ["before_beat", "after_beat"]
