"""Running a cadence: beats, parallel merges, branches, children, failures and cancellation."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import anyio
import pytest

from cadence import (
    BeatError,
    BeatErrorGroup,
    Cadence,
    CadenceError,
    Context,
    FieldConflict,
    ImmutableContext,
    MergeConflictError,
    beat,
    last_write_wins,
    smart_merge,
)

pytestmark = pytest.mark.anyio


@dataclass
class Ctx(Context):
    a: int = 0
    b: int = 0
    tags: list[str] = field(default_factory=list)
    meta: dict[str, int] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    note: str = ""


async def set_a(ctx: Ctx) -> None:
    ctx.a = 1


async def set_b(ctx: Ctx) -> None:
    ctx.b = 2


async def a_to_5(ctx: Ctx) -> None:
    ctx.a = 5


async def a_to_7(ctx: Ctx) -> None:
    ctx.a = 7


async def fails(ctx: Ctx) -> None:
    raise ValueError("boom")


async def test_sync_beat_runs_in_a_worker_thread_and_never_blocks_the_loop() -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []
    gate = threading.Event()

    def blocking(ctx: Ctx) -> None:
        threads.append(threading.get_ident())
        assert gate.wait(5)
        ctx.a = 1

    @beat(blocking=False)
    def cheap(ctx: Ctx) -> None:
        threads.append(threading.get_ident())

    cadence = Cadence("c", Ctx()).then("blocking", blocking).then("cheap", cheap)
    async with anyio.create_task_group() as group:
        result: list[Ctx] = []

        async def run() -> None:
            result.append(await cadence.run())

        group.start_soon(run)
        await anyio.sleep(0.01)  # the loop is free while the sync beat waits
        gate.set()
    assert result[0].a == 1
    assert threads[0] != loop_thread
    assert threads[1] == loop_thread


async def test_sync_step_merges_disjoint_writes() -> None:
    result = await Cadence("c", Ctx()).sync("par", [set_a, set_b]).run()
    assert (result.a, result.b) == (1, 2)


async def test_conflicting_writes_raise_naming_field_and_beats() -> None:
    ctx = Ctx()
    with pytest.raises(MergeConflictError) as info:
        await Cadence("c", ctx).sync("par", [a_to_5, set_b, a_to_7]).run(ctx)
    assert info.value.field == "a"
    assert info.value.beats == ("a_to_5", "a_to_7")
    assert (info.value.cadence_name, info.value.step_name) == ("c", "par")
    assert "beats 'a_to_5' and 'a_to_7' changed field 'a'" in str(info.value)
    assert (ctx.a, ctx.b) == (0, 0)  # nothing half-merged


async def test_equal_writes_agree() -> None:
    async def a_to_5_again(ctx: Ctx) -> None:
        ctx.a = 5

    result = await Cadence("c", Ctx()).sync("par", [a_to_5, a_to_5_again]).run()
    assert result.a == 5


async def test_last_write_wins_in_declaration_order() -> None:
    async def slow_a_to_5(ctx: Ctx) -> None:
        await anyio.sleep(0.01)
        ctx.a = 5

    cadence = Cadence("c", Ctx()).sync("par", [a_to_7, slow_a_to_5], merge=last_write_wins)
    assert (await cadence.run()).a == 5
    cadence = Cadence("c", Ctx()).sync("par", [slow_a_to_5, a_to_7], merge=last_write_wins)
    assert (await cadence.run()).a == 7


async def test_smart_merge_combines_collections_and_refuses_scalars() -> None:
    async def tag_x(ctx: Ctx) -> None:
        ctx.tags.append("x")
        ctx.meta["x"] = 1
        ctx.seen.add("x")

    async def tag_y(ctx: Ctx) -> None:
        ctx.tags.append("y")
        ctx.meta["y"] = 2
        ctx.seen.add("y")
        ctx.seen.discard("old")

    ctx = Ctx(tags=["base"], meta={"base": 0}, seen={"old"})
    result = await Cadence("c", ctx).sync("par", [tag_x, tag_y], merge=smart_merge).run(ctx)
    assert result.tags == ["base", "x", "y"]
    assert result.meta == {"base": 0, "x": 1, "y": 2}
    assert result.seen == {"x", "y"}
    with pytest.raises(
        MergeConflictError, match="smart_merge combines lists, dicts and sets, not int"
    ):
        await Cadence("c", Ctx()).sync("par", [a_to_5, a_to_7], merge=smart_merge).run()


async def test_custom_merge_function_sees_the_conflict() -> None:
    conflicts: list[FieldConflict] = []

    def biggest(conflict: FieldConflict) -> object:
        conflicts.append(conflict)
        return max(conflict.writes.values())  # type: ignore[type-var] # ints here

    result = await Cadence("c", Ctx(a=1)).sync("par", [a_to_7, a_to_5], merge=biggest).run()
    assert result.a == 7
    [conflict] = conflicts
    assert (conflict.field, conflict.original, dict(conflict.writes)) == (
        "a",
        1,
        {"a_to_7": 7, "a_to_5": 5},
    )
    assert (conflict.cadence_name, conflict.step_name) == ("c", "par")


async def test_one_parallel_failure_cancels_siblings_and_merges_nothing() -> None:
    cancelled = anyio.Event()

    async def waits(ctx: Ctx) -> None:
        ctx.b = 9
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async def fails_later(ctx: Ctx) -> None:
        ctx.a = 3
        await anyio.sleep(0.01)
        raise ValueError("boom")

    ctx = Ctx()
    with pytest.raises(BeatError) as info:
        await Cadence("c", ctx).sync("par", [waits, fails_later]).run(ctx)
    assert info.value.beat_name == "par.fails_later"
    assert isinstance(info.value.__cause__, ValueError)
    assert cancelled.is_set()
    assert (ctx.a, ctx.b) == (0, 0)


async def test_several_parallel_failures_raise_a_group() -> None:
    # Worker threads cannot be cancelled, so both beats fail even after the first failure.
    barrier = threading.Barrier(2, timeout=5)

    def fails_with_value_error(ctx: Ctx) -> None:
        barrier.wait()
        raise ValueError("v")

    def fails_with_key_error(ctx: Ctx) -> None:
        barrier.wait()
        raise KeyError("k")

    cadence = Cadence("c", Ctx()).sync("par", [set_a, fails_with_value_error, fails_with_key_error])
    with pytest.raises(BeatErrorGroup) as info:
        await cadence.run()
    group = info.value
    assert isinstance(group, CadenceError)
    assert [e.beat_name for e in group.exceptions if isinstance(e, BeatError)] == [
        "par.fails_with_value_error",
        "par.fails_with_key_error",
    ]  # declaration order, whatever the completion order
    assert group.message == (
        "2 beats of step 'par' in cadence 'c' failed: "
        "'par.fails_with_value_error', 'par.fails_with_key_error'"
    )
    caught: list[BaseExceptionGroup[BeatError]] = []
    try:
        await cadence.run()
    except* BeatError as matched:
        caught.append(matched)
    [matched] = caught
    assert isinstance(matched, BeatErrorGroup)  # except* keeps the step and cadence
    assert (matched.step_name, matched.cadence_name) == ("par", "c")
    assert [type(e.__cause__).__name__ for e in matched.exceptions] == ["ValueError", "KeyError"]


async def test_on_error_continue_after_a_failed_parallel_step_keeps_the_context() -> None:
    seen: list[CadenceError] = []
    cadence = (
        Cadence("c", Ctx())
        .sync("par", [set_a, fails])
        .then("b", set_b)
        .on_error(lambda ctx, error: seen.append(error), stop=False)
    )
    result = await cadence.run()
    assert (result.a, result.b) == (0, 2)
    assert isinstance(seen[0], BeatError)
    assert seen[0].beat_name == "par.fails"


async def test_split_condition_must_return_a_bool() -> None:
    cadence = Cadence("c", Ctx()).split("route", lambda ctx: "yes", set_a)  # type: ignore[arg-type,return-value]
    with pytest.raises(
        BeatError, match=r"condition of split 'route' in cadence 'c' returned str 'yes'"
    ):
        await cadence.run()


async def test_split_failures_are_named_by_path() -> None:
    def broken(ctx: Ctx) -> bool:
        raise LookupError

    with pytest.raises(BeatError) as info:
        await Cadence("c", Ctx()).split("route", lambda ctx: True, [set_a, fails]).run()
    assert info.value.beat_name == "route.fails"
    with pytest.raises(BeatError) as info:
        await Cadence("c", Ctx()).split("route", broken, set_a).run()
    assert info.value.beat_name == "route.condition"
    assert isinstance(info.value.__cause__, LookupError)


@dataclass
class Inner(Context):
    value: int = 0


async def test_child_failure_chains_the_childs_own_error() -> None:
    async def inner_fails(ctx: Inner) -> None:
        raise ValueError("inner")

    child = Cadence("inner", Inner()).then("explode", inner_fails)
    parent = Cadence("outer", Ctx()).child("nested", child, lambda p, c: None)
    with pytest.raises(BeatError) as info:
        await parent.run()
    assert (info.value.beat_name, info.value.cadence_name) == ("nested.explode", "outer")
    cause = info.value.__cause__
    assert isinstance(cause, BeatError)
    assert (cause.beat_name, cause.cadence_name) == ("explode", "inner")
    assert isinstance(cause.__cause__, ValueError)


async def test_child_merge_failure_and_child_error_handler() -> None:
    async def inner_fails(ctx: Inner) -> None:
        raise ValueError("inner")

    async def inner_sets(ctx: Inner) -> None:
        ctx.value = 4

    def bad_merge(parent: Ctx, child: Inner) -> None:
        raise TypeError("merge")

    child = (
        Cadence("inner", Inner())
        .then("explode", inner_fails)
        .then("sets", inner_sets)
        .on_error(lambda ctx, error: None, stop=False)
    )
    with pytest.raises(BeatError) as info:
        await Cadence("outer", Ctx()).child("nested", child, bad_merge).run()
    assert info.value.beat_name == "nested.merge"

    def good_merge(parent: Ctx, inner: Inner) -> None:
        parent.a = inner.value

    result = await Cadence("outer", Ctx()).child("nested", child, good_merge).run()
    assert result.a == 4  # the child's own handler let it go on


async def test_run_mutates_the_given_context_in_place() -> None:
    ctx = Ctx()
    result = await Cadence[Ctx]("c").then("a", set_a).sync("par", [set_b]).run(ctx)
    assert result is ctx
    assert (ctx.a, ctx.b) == (1, 2)


@dataclass(frozen=True)
class Frozen(ImmutableContext):
    x: int = 0
    y: int = 0


async def test_parallel_beats_over_an_immutable_context() -> None:
    async def set_x(ctx: Frozen) -> Frozen:
        return ctx.with_field("x", 1)

    def set_y(ctx: Frozen) -> Frozen:
        return ctx.with_fields(y=2)

    template = Frozen()
    result = await Cadence("c", template).sync("par", [set_x, set_y]).run()
    assert result == Frozen(1, 2)
    assert template == Frozen()


async def test_a_beat_returning_another_context_type_is_an_error() -> None:
    async def wrong(ctx: Ctx) -> Inner:
        return Inner()

    with pytest.raises(BeatError) as info:
        await Cadence("c", Ctx()).then("wrong", wrong).run()  # type: ignore[arg-type]
    assert "returned a Inner; a beat returns None or a new Ctx" in str(info.value.__cause__)


async def test_other_return_values_are_not_state() -> None:
    async def returns_dict(ctx: Ctx) -> dict[str, str]:
        ctx.a = 1
        return {"status": "unknown"}

    result = await Cadence("c", Ctx()).then("r", returns_dict).run()  # type: ignore[arg-type]
    assert result.a == 1


async def test_cancelling_a_run_cancels_its_beat_and_is_never_wrapped() -> None:
    cleaned = anyio.Event()
    started = anyio.Event()
    handled: list[BaseException] = []

    async def forever(ctx: Ctx) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned.set()

    cadence = Cadence("c", Ctx()).then("forever", forever).on_error(lambda c, e: handled.append(e))
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(cadence.run)
            await started.wait()
            scope.cancel()
    assert scope.cancelled_caught
    assert cleaned.is_set()
    assert handled == []


async def test_one_definition_serves_concurrent_runs() -> None:
    async def slow_copy(ctx: Ctx) -> None:
        await anyio.sleep(0.001)
        ctx.b = ctx.a * 10

    cadence = Cadence[Ctx]("c").then("copy", slow_copy).sync("par", [set_b])
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        ctx = await Cadence[Ctx]("c").then("copy", slow_copy).run(Ctx(a=i))
        results[i] = ctx.b

    async with anyio.create_task_group() as group:
        for i in range(50):
            group.start_soon(one, i)
    assert results == {i: i * 10 for i in range(50)}
    assert len(cadence.steps) == 2
