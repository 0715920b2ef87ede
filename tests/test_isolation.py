"""Isolation of parallel beats and contexts that hold real things (shared resources).

Each `sync` beat works on a copy-on-first-access view: what it never touches is never copied
nor compared, what it changes in place is never lost, and a resource marked `Shared[...]` is
the very same object everywhere.
"""

from __future__ import annotations

import contextvars
import dataclasses
import math
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import numpy as np
import pandas as pd
import pytest

from cadence import (
    BeatError,
    Cadence,
    CadenceError,
    Context,
    ContextCopyError,
    ImmutableContext,
    MergeConflictError,
    Shared,
    beat,
    last_write_wins,
    smart_merge,
)
from cadence._context import shared_fields

pytestmark = pytest.mark.anyio


# ----------------------------------------------------------------------- shared resources


@dataclass
class Service(Context):
    client: Shared[httpx.AsyncClient]
    lock: Shared[threading.Lock]
    db: Shared[sqlite3.Connection]
    answers: list[int] = field(default_factory=list)
    flag: bool = False
    total: int = 0


@dataclass
class Part(Context):
    lock: Shared[threading.Lock]
    seen: int = 0


def _server() -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, json={"n": 7}))


async def test_a_context_of_real_resources_runs_through_every_kind_of_step() -> None:
    client = httpx.AsyncClient(transport=_server(), base_url="http://svc.test")
    lock = threading.Lock()
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.execute("create table t (n integer)")
    seen: dict[str, set[int]] = {"client": set(), "lock": set(), "db": set()}

    def note(ctx: Service) -> None:
        seen["client"].add(id(ctx.client))
        seen["lock"].add(id(ctx.lock))
        seen["db"].add(id(ctx.db))

    async def fetch(ctx: Service) -> None:
        note(ctx)
        response = await ctx.client.get("/n")
        ctx.answers.append(response.json()["n"])

    def store(ctx: Service) -> None:  # runs in a worker thread
        note(ctx)
        with ctx.lock:
            ctx.db.execute("insert into t values (1)")
        ctx.flag = True

    async def count(ctx: Service) -> None:
        note(ctx)
        ctx.total = ctx.db.execute("select count(*) from t").fetchone()[0]

    async def child_beat(ctx: Part) -> None:
        with ctx.lock:
            ctx.seen = 1

    child = Cadence("part", Part(lock)).then("look", child_beat)

    def merge(parent: Service, part: Part) -> None:
        parent.total += part.seen

    cadence = (
        Cadence("service", Service(client, lock, db))
        .then("fetch", fetch)
        .sync("both", [beat(name="fetch_again")(fetch), store])
        .split("route", lambda ctx: ctx.flag, [count], [])
        .child("part", child, merge, context=lambda ctx: Part(ctx.lock))
    )
    async with client:
        first = await cadence.run()
        second = await cadence.run()
    for result in (first, second):
        assert result.client is client
        assert result.lock is lock
        assert result.db is db
        assert result.answers == [7, 7]
        assert result.flag
    assert (first.total, second.total) == (2, 3)  # one row stored per run, plus the child's 1
    assert seen == {"client": {id(client)}, "lock": {id(lock)}, "db": {id(db)}}
    assert cadence.context is not None
    assert cadence.context.answers == []  # the template never changes


def test_shared_fields_are_found_in_postponed_and_real_annotations() -> None:
    assert shared_fields(Service) == {"client", "lock", "db"}

    @dataclass
    class Local(Context):
        conn: Shared[Any]
        # A type known only to type checkers: the text is read instead.
        other: Shared[UnknownToRuntime]  # type: ignore[name-defined] # noqa: F821 # pyright: ignore[reportUndefinedVariable]
        plain: int = 0

    assert shared_fields(Local) == {"conn", "other"}

    @dataclass
    class Optional(Context):
        client: Shared[threading.Lock] | None = None
        text: Shared[UnknownToRuntime] | None = None  # type: ignore[name-defined] # noqa: F821 # pyright: ignore[reportUndefinedVariable]
        plain: int | None = None

    assert shared_fields(Optional) == {"client", "text"}  # as Shared[... | None]


@dataclass(frozen=True)
class Frozen(ImmutableContext):
    lock: Shared[threading.Lock]
    count: int = 0


async def test_shared_fields_work_with_immutable_contexts() -> None:
    lock = threading.Lock()

    def bump(ctx: Frozen) -> Frozen:
        assert ctx.lock is lock
        return ctx.with_field("count", ctx.count + 1)

    def also(ctx: Frozen) -> None:
        assert ctx.lock is lock

    cadence = Cadence("frozen", Frozen(lock)).then("bump", bump).sync("s", [bump, also])
    result = await cadence.run()
    assert (result.count, result.lock is lock) == (2, True)


@dataclass
class Unmarked(Context):
    lock: threading.Lock = field(default_factory=threading.Lock)
    n: int = 0


async def test_an_uncopyable_unmarked_field_names_cadence_template_field_and_fix() -> None:
    with pytest.raises(ContextCopyError) as caught:
        await Cadence("checkout", Unmarked()).then("t", lambda ctx: None).run()
    error = caught.value
    assert isinstance(error, CadenceError)
    assert not isinstance(error, TypeError)
    assert (error.cadence_name, error.step_name, error.field) == ("checkout", "template", "lock")
    message = str(error)
    assert "cadence 'checkout', template" in message
    assert "Unmarked.lock" in message
    assert "_thread.lock" in message
    assert "`lock: Shared[threading.Lock]`" in message
    assert isinstance(error.__cause__, TypeError)


async def test_an_uncopyable_unmarked_field_touched_in_parallel_names_the_beat() -> None:
    async def touch(ctx: Unmarked) -> None:
        ctx.lock.locked()

    async def other(ctx: Unmarked) -> None:
        ctx.n = 1

    cadence = Cadence("checkout", Unmarked()).sync("fan", [touch, other])
    with pytest.raises(BeatError) as caught:
        await cadence.run(Unmarked())
    cause = caught.value.__cause__
    assert isinstance(cause, ContextCopyError)
    assert (cause.step_name, cause.field) == ("fan.touch", "lock")
    assert "step 'fan.touch'" in str(cause)


async def test_an_unmarked_resource_that_no_parallel_beat_touches_is_fine() -> None:
    async def other(ctx: Unmarked) -> None:
        ctx.n = 1

    ctx = Unmarked()
    lock = ctx.lock
    result = await Cadence("c", Unmarked()).sync("fan", [other]).run(ctx)
    assert (result.n, result.lock is lock) == (1, True)


# ----------------------------------------------------------------------- untouched fields


class CopyCounter:
    """Counts deep copies and comparisons; raises if compared, to prove it never is."""

    copies = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> CopyCounter:
        CopyCounter.copies += 1
        return CopyCounter()

    def __eq__(self, other: object) -> bool:
        raise AssertionError("an untouched field was compared")

    __hash__ = object.__hash__


def _graph(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {"depth": 0}
    node = root
    for i in range(1, depth):
        node["next"] = {"depth": i, "up": node}  # back-pointers: a cyclic, deep graph
        node = node["next"]
    return root


@dataclass
class Heavy(Context):
    counter: CopyCounter = field(default_factory=CopyCounter)
    array: Any = field(default_factory=lambda: np.array([1.0, math.nan, 3.0]))
    frame: Any = field(default_factory=lambda: pd.DataFrame({"x": [1.0, math.nan]}))
    graph: dict[str, Any] = field(default_factory=lambda: _graph(100))
    items: list[int] = field(default_factory=lambda: list(range(100_000)))
    a: int = 0
    b: int = 0


async def test_a_field_no_branch_touches_is_never_copied_nor_compared() -> None:
    async def write_a(ctx: Heavy) -> None:
        ctx.a = 1

    async def write_b(ctx: Heavy) -> None:
        await anyio.lowlevel.checkpoint()
        ctx.b = 2

    ctx = Heavy()
    before = {f.name: getattr(ctx, f.name) for f in dataclasses.fields(ctx)}
    CopyCounter.copies = 0
    await Cadence("heavy", Heavy()).sync("s", [write_a, write_b]).run(ctx)
    assert CopyCounter.copies == 0
    assert (ctx.a, ctx.b) == (1, 2)
    for name in ("counter", "array", "frame", "graph", "items"):
        assert getattr(ctx, name) is before[name]


async def test_nan_arrays_frames_cycles_and_deep_graphs_read_by_two_beats_merge_cleanly() -> None:
    def reader(name: str) -> Any:
        async def read(ctx: Heavy) -> None:
            await anyio.lowlevel.checkpoint()
            assert math.isnan(ctx.array[1])
            assert math.isnan(ctx.frame["x"][1])
            node = ctx.graph
            while "next" in node:
                node = node["next"]
            assert node["depth"] == 99
            assert node["up"]["next"] is node  # the copy keeps the cycle
            assert len(ctx.items) == 100_000
            if name == "one":
                ctx.a = 1

        return beat(name=name)(read)

    ctx = Heavy()
    array, frame, graph = ctx.array, ctx.frame, ctx.graph
    await Cadence("heavy", Heavy()).sync("s", [reader("one"), reader("two")]).run(ctx)
    assert ctx.a == 1
    assert ctx.array is array
    assert ctx.frame is frame
    assert ctx.graph is graph  # read, unchanged: no write, the original stays


async def test_an_array_changed_in_place_by_one_beat_is_merged() -> None:
    async def scale(ctx: Heavy) -> None:
        ctx.array *= 2

    async def read(ctx: Heavy) -> None:
        assert ctx.array[0] == 1.0  # isolated: the sibling's change is not seen

    ctx = Heavy()
    await Cadence("heavy", Heavy()).sync("s", [read, scale]).run(ctx)
    assert ctx.array[0] == 2.0
    assert math.isnan(ctx.array[1])


# ----------------------------------------------------------------------- in-place changes


class Model:
    """A Django-style model: `==` compares the primary key only."""

    def __init__(self, pk: int, name: str) -> None:
        self.pk = pk
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and other.pk == self.pk

    def __hash__(self) -> int:
        return hash(self.pk)


@dataclass
class Record(Context):
    user: Model = field(default_factory=lambda: Model(1, "ann"))
    note: str = ""


async def test_an_in_place_edit_of_a_key_compared_object_is_never_lost() -> None:
    async def rename(ctx: Record) -> None:
        ctx.user.name = "bob"

    async def other(ctx: Record) -> None:
        ctx.note = "x"

    ctx = Record()
    await Cadence("r", Record()).sync("s", [rename, other]).run(ctx)
    assert (ctx.user.pk, ctx.user.name, ctx.note) == (1, "bob", "x")


async def test_two_different_in_place_edits_of_a_key_compared_object_conflict() -> None:
    async def to_bob(ctx: Record) -> None:
        ctx.user.name = "bob"

    async def to_cy(ctx: Record) -> None:
        ctx.user.name = "cy"

    with pytest.raises(MergeConflictError) as caught:
        await Cadence("r", Record()).sync("s", [to_bob, to_cy]).run(Record())
    assert (caught.value.field, caught.value.beats) == ("user", ("to_bob", "to_cy"))


async def test_reassigning_an_equal_but_different_object_is_a_write() -> None:
    async def swap(ctx: Record) -> None:
        ctx.user = Model(1, "zed")  # == the original by key, but other state

    ctx = Record()
    await Cadence("r", Record()).sync("s", [swap]).run(ctx)
    assert ctx.user.name == "zed"


# ----------------------------------------------------------------------- deletes


@dataclass
class Loose(Context):
    a: int = 0
    extra: list[int] = field(default_factory=list)


async def test_deleting_an_attribute_in_a_branch_is_merged_like_a_write() -> None:
    async def drop(ctx: Loose) -> None:
        del ctx.extra

    async def write(ctx: Loose) -> None:
        ctx.a = 1

    ctx = Loose(extra=[1])
    await Cadence("l", Loose()).sync("s", [drop, write]).run(ctx)
    assert ctx.a == 1
    assert "extra" not in vars(ctx)


async def test_a_delete_and_a_write_of_one_field_conflict() -> None:
    async def drop(ctx: Loose) -> None:
        del ctx.extra

    async def write(ctx: Loose) -> None:
        ctx.extra = [2]

    with pytest.raises(MergeConflictError) as caught:
        await Cadence("l", Loose()).sync("s", [drop, write]).run(Loose())
    assert caught.value.field == "extra"


async def test_a_deleted_attribute_reads_as_missing_inside_the_branch() -> None:
    async def drop(ctx: Loose) -> None:
        del ctx.extra
        with pytest.raises(AttributeError):
            _ = ctx.extra
        with pytest.raises(AttributeError):
            del ctx.extra

    await Cadence("l", Loose()).sync("s", [drop]).run(Loose())


# ----------------------------------------------------------------------- smart_merge by state


class Item:
    """A plain object: compared (and hashed) by identity."""

    def __init__(self, n: int) -> None:
        self.n = n


@dataclass
class Bag(Context):
    items: list[Item] = field(default_factory=lambda: [Item(1)])
    members: set[Item] = field(default_factory=lambda: {Item(1)})
    table: dict[str, Item] = field(default_factory=lambda: {"a": Item(1)})


async def test_smart_merge_sees_copies_of_plain_objects_as_the_same_items() -> None:
    def adder(name: str, n: int) -> Any:
        async def add(ctx: Bag) -> None:
            ctx.items.append(Item(n))
            ctx.members.add(Item(n))
            ctx.table[name] = Item(n)

        return beat(name=name)(add)

    ctx = Bag()
    first_item, first_member = ctx.items[0], next(iter(ctx.members))
    cadence = Cadence("bag", Bag()).sync("s", [adder("x", 2), adder("y", 3)], merge=smart_merge)
    await cadence.run(ctx)
    assert [i.n for i in ctx.items] == [1, 2, 3]
    assert ctx.items[0] is first_item
    assert sorted(m.n for m in ctx.members) == [1, 2, 3]  # no duplicated original member
    assert first_member in ctx.members
    assert sorted((k, v.n) for k, v in ctx.table.items()) == [("a", 1), ("x", 2), ("y", 3)]


async def test_smart_merge_still_refuses_a_changed_existing_item() -> None:
    async def change(ctx: Bag) -> None:
        ctx.items[0].n = 9

    async def add(ctx: Bag) -> None:
        ctx.items.append(Item(2))

    cadence = Cadence("bag", Bag()).sync("s", [change, add], merge=smart_merge)
    with pytest.raises(MergeConflictError) as caught:
        await cadence.run(Bag())
    assert "'change' changed existing items" in str(caught.value)


# ----------------------------------------------------------------------- errors that tell


@dataclass
class Three(Context):
    a: int = 0
    b: int = 0
    c: str = ""


async def test_a_merge_conflict_names_every_conflicting_field() -> None:
    async def one(ctx: Three) -> None:
        ctx.a, ctx.b, ctx.c = 1, 1, "x"

    async def two(ctx: Three) -> None:
        ctx.a, ctx.b, ctx.c = 2, 2, "x"

    with pytest.raises(MergeConflictError) as caught:
        await Cadence("three", Three()).sync("s", [one, two]).run(Three())
    error = caught.value
    assert error.fields == ("a", "b")
    assert error.conflicts == {"a": ("one", "two"), "b": ("one", "two")}
    assert (error.field, error.beats) == ("a", ("one", "two"))
    message = str(error)
    assert "field 'a'" in message
    assert "field 'b'" in message
    assert "merge=smart_merge" in message


async def test_the_smart_merge_refusal_does_not_advise_smart_merge() -> None:
    async def one(ctx: Three) -> None:
        ctx.a = 1

    async def two(ctx: Three) -> None:
        ctx.a = 2

    cadence = Cadence("three", Three()).sync("s", [one, two], merge=smart_merge)
    with pytest.raises(MergeConflictError) as caught:
        await cadence.run(Three())
    message = str(caught.value)
    assert "smart_merge combines lists, dicts and sets, not int" in message
    assert "merge=smart_merge" not in message
    assert "merge=last_write_wins" in message


async def test_last_write_wins_still_takes_the_last_declared_writer() -> None:
    async def one(ctx: Three) -> None:
        ctx.a = 1

    async def two(ctx: Three) -> None:
        ctx.a = 2

    cadence = Cadence("three", Three()).sync("s", [two, one], merge=last_write_wins)
    assert (await cadence.run(Three())).a == 1


async def test_str_of_a_beat_error_carries_the_root_cause() -> None:
    async def charge(ctx: Three) -> None:
        raise RuntimeError("card declined")

    payment = Cadence("payment", Three()).then("charge", charge)
    checkout = Cadence("checkout", Three()).child("pay", payment, lambda p, c: None)
    with pytest.raises(BeatError) as caught:
        await checkout.run()
    error = caught.value
    expected = "beat 'pay.charge' of cadence 'checkout' failed: RuntimeError: card declined"
    assert str(error) == expected
    assert (error.beat_name, error.cadence_name) == ("pay.charge", "checkout")
    inner = error.__cause__
    assert isinstance(inner, BeatError)
    assert str(inner) == "beat 'charge' of cadence 'payment' failed: RuntimeError: card declined"


async def test_a_parallel_beat_error_names_its_path_and_reason() -> None:
    async def bad(ctx: Three) -> None:
        raise KeyError("sku")

    with pytest.raises(BeatError) as caught:
        await Cadence("c", Three()).sync("fan", [bad]).run(Three())
    assert str(caught.value) == "beat 'fan.bad' of cadence 'c' failed: KeyError: 'sku'"


async def test_run_sync_inside_a_running_loop_says_to_await_run() -> None:
    cadence = Cadence("c", Three()).then("t", lambda ctx: None)
    with pytest.raises(CadenceError) as caught:
        cadence.run_sync()
    assert "await cadence.run" in str(caught.value)
    assert "'c'" in str(caught.value)


def test_run_sync_from_a_worker_thread_of_a_loop_is_allowed() -> None:
    cadence = Cadence("c", Three()).then("t", lambda ctx: setattr(ctx, "a", 5))

    async def main() -> int:
        result = await anyio.to_thread.run_sync(cadence.run_sync)
        return result.a

    assert anyio.run(main) == 5


# ----------------------------------------------------------------------- the thin fan-out


async def test_inline_branches_do_not_see_each_others_contextvars() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[str] = []

    def make(name: str, suspend: bool) -> Any:
        async def run(ctx: Three) -> None:
            seen.append(f"{name}:{var.get()}")
            var.set(name)
            if suspend:
                await anyio.lowlevel.checkpoint()
            seen.append(f"{name}:{var.get()}")

        return beat(name=name)(run)

    await Cadence("c", Three()).sync("s", [make("x", True), make("y", False)]).run(Three())
    assert sorted(seen) == ["x:unset", "x:x", "y:unset", "y:y"]
    assert var.get() == "unset"


async def test_a_beat_may_hold_a_cancel_scope_across_its_first_suspension() -> None:
    async def timed(ctx: Three) -> None:
        with anyio.fail_after(5):
            await anyio.lowlevel.checkpoint()
            ctx.a = 1

    async def quick(ctx: Three) -> None:
        ctx.b = 2

    async def slow(ctx: Three) -> None:
        with anyio.move_on_after(5):
            await anyio.sleep(0.01)
        ctx.c = "done"

    result = await Cadence("c", Three()).sync("s", [quick, timed, slow]).run(Three())
    assert (result.a, result.b, result.c) == (1, 2, "done")


async def test_a_failing_task_sibling_cancels_the_branch_held_inline() -> None:
    cancelled: list[str] = []

    async def held(ctx: Three) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append("held")
            raise

    async def fails(ctx: Three) -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError("x")

    with anyio.fail_after(5), pytest.raises(BeatError) as caught:
        await Cadence("c", Three()).sync("s", [held, fails]).run(Three())
    assert caught.value.beat_name == "s.fails"
    assert cancelled == ["held"]


async def test_a_branch_view_is_an_instance_of_the_context_class() -> None:
    kinds: list[bool] = []

    async def look(ctx: Three) -> Three:
        kinds.append(isinstance(ctx, Three))
        return Three(a=4, b=ctx.b, c=ctx.c)  # a fresh context object replaces the view

    result = await Cadence("c", Three()).sync("s", [look]).run(Three(b=2))
    assert kinds == [True]
    assert (type(result), result.a, result.b) == (Three, 4, 2)


async def test_a_parallel_beat_may_run_another_cadence_with_a_parallel_step_on_its_view() -> None:
    async def set_b(ctx: Three) -> None:
        ctx.b = ctx.a + 1

    inner = Cadence("inner", Three()).sync("in", [set_b])

    async def nested(ctx: Three) -> None:
        ctx.a = 1  # touched; b and c are not yet
        await inner.run(ctx)
        assert vars(ctx)["b"] == 2

    async def other(ctx: Three) -> None:
        ctx.c = "x"

    result = await Cadence("outer", Three()).sync("out", [nested, other]).run(Three())
    assert (result.a, result.b, result.c) == (1, 2, "x")
