"""Properties of `sync` merging, checked with hypothesis on asyncio and trio.

Every example runs a parallel step through the public API (`Cadence(...).sync(...)`), with
hypothesis-chosen checkpoints inside the beats so that the beats finish in different orders.
Each example drives its own event loop through `Cadence.run_sync(backend=...)` or `anyio.run`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cadence import (
    BeatError,
    Cadence,
    CadenceError,
    Context,
    FieldConflict,
    MergeConflictError,
    MergeStrategy,
    beat,
    fail_on_conflict,
    last_write_wins,
    smart_merge,
)

BACKENDS = ("asyncio", "trio")
backends = pytest.mark.parametrize("backend", BACKENDS)
props = settings(max_examples=60, deadline=None)


@dataclass
class Wide(Context):
    a: int = 0
    b: str = ""
    c: list[int] = field(default_factory=list)
    d: dict[str, int] = field(default_factory=dict)
    s: set[int] = field(default_factory=set)
    t: tuple[int, ...] = ()
    n: int | None = None


FIELDS = tuple(f.name for f in dataclasses.fields(Wide))

small_ints = st.integers(-50, 50)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "a": small_ints,
    "b": st.text(max_size=4),
    "c": st.lists(small_ints, max_size=4),
    "d": st.dictionaries(st.text("xyz", max_size=2), small_ints, max_size=3),
    "s": st.sets(small_ints, max_size=4),
    "t": st.tuples(small_ints) | st.tuples(small_ints, small_ints),
    "n": st.none() | small_ints,
}

wide_contexts = st.builds(Wide, **{name: VALUES[name] for name in FIELDS})
pauses = st.integers(0, 6)


async def pause(count: int) -> None:
    """Yield to the scheduler `count` times (the knob that permutes completion order)."""
    for _ in range(count):
        await anyio.lowlevel.checkpoint()


def named(name: str, fn: Callable[[Wide], Awaitable[None] | None]) -> Any:
    """Return `fn` marked as a beat called `name` (each beat of a step needs its own name)."""
    return beat(name=name)(fn)


def run_step(
    backend: str,
    ctx: Wide,
    beats: Sequence[Any],
    merge: MergeStrategy = fail_on_conflict,
) -> Wide:
    cadence = Cadence("props", Wide()).sync("step", beats, merge=merge)
    return cadence.run_sync(ctx, backend=backend)


def snapshot(ctx: Wide) -> Wide:
    return copy.deepcopy(ctx)


def writer(
    name: str,
    writes: dict[str, Any],
    delays: Sequence[int],
    finished: list[str],
    *,
    in_place: bool = False,
) -> Any:
    """A beat that sets each field in `writes`, pausing `delays[i]` times before each write."""

    async def write(ctx: Wide) -> None:
        for (key, value), delay in zip(writes.items(), delays, strict=False):
            await pause(delay)
            current = getattr(ctx, key)
            if in_place and isinstance(current, list | dict | set):
                # Mutate the copy's own container instead of reassigning the field.
                current.clear()
                if isinstance(current, list):
                    current.extend(value)
                else:
                    current.update(value)
            else:
                setattr(ctx, key, copy.deepcopy(value))
        await pause(delays[-1] if delays else 0)
        finished.append(name)

    return named(name, write)


@st.composite
def disjoint_plans(draw: st.DrawFn) -> tuple[Wide, list[dict[str, Any]], list[bool]]:
    """An initial context and, per beat, the fields it writes (no field is written twice)."""
    start = draw(wide_contexts)
    count = draw(st.integers(2, 5))
    owner = st.none() | st.integers(0, count - 1)
    owners = draw(st.lists(owner, min_size=len(FIELDS), max_size=len(FIELDS)))
    plans: list[dict[str, Any]] = [{} for _ in range(count)]
    for name, owner in zip(FIELDS, owners, strict=False):
        if owner is not None:
            plans[owner][name] = draw(VALUES[name])
    in_place = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    return start, plans, in_place


def delay_schedules(plans: Sequence[dict[str, Any]]) -> st.SearchStrategy[list[list[int]]]:
    return st.tuples(
        *(st.lists(pauses, min_size=len(p) + 1, max_size=len(p) + 1) for p in plans)
    ).map(list)


# --------------------------------------------------------------------- (a) disjoint writes


@backends
@props
@given(plan=disjoint_plans(), data=st.data())
def test_disjoint_writes_commute_under_any_completion_order(
    backend: str, plan: tuple[Wide, list[dict[str, Any]], list[bool]], data: st.DataObject
) -> None:
    start, plans, in_place = plan
    expected = snapshot(start)
    for writes in plans:
        for key, value in writes.items():
            setattr(expected, key, value)

    outcomes = []
    for _ in range(2):  # two independent schedules: both must give the same context
        delays = data.draw(delay_schedules(plans))
        finished: list[str] = []
        beats = [
            writer(f"b{i}", writes, delays[i], finished, in_place=in_place[i])
            for i, writes in enumerate(plans)
        ]
        ctx = snapshot(start)
        result = run_step(backend, ctx, beats)
        assert result is ctx  # run(ctx) merges into the given context
        assert sorted(finished) == sorted(f"b{i}" for i in range(len(plans)))
        outcomes.append(result)

    assert outcomes[0] == expected
    assert outcomes[1] == expected


@backends
@props
@given(plan=disjoint_plans(), data=st.data())
def test_parallel_step_equals_running_the_beats_one_after_another(
    backend: str, plan: tuple[Wide, list[dict[str, Any]], list[bool]], data: st.DataObject
) -> None:
    start, plans, in_place = plan
    delays = data.draw(delay_schedules(plans))
    finished: list[str] = []
    beats = [
        writer(f"b{i}", writes, delays[i], finished, in_place=in_place[i])
        for i, writes in enumerate(plans)
    ]
    parallel = run_step(backend, snapshot(start), beats)

    sequential_cadence = Cadence("seq", Wide())
    for i, fn in enumerate(beats):
        sequential_cadence = sequential_cadence.then(f"b{i}", fn)
    sequential = sequential_cadence.run_sync(snapshot(start), backend=backend)
    assert parallel == sequential


@backends
@props
@given(
    start=wide_contexts,
    value=small_ints,
    writers=st.integers(2, 4),
    data=st.data(),
)
def test_equal_writes_to_one_field_agree(
    backend: str, start: Wide, value: int, writers: int, data: st.DataObject
) -> None:
    delays = data.draw(st.lists(st.lists(pauses, min_size=2, max_size=2), min_size=writers))
    finished: list[str] = []
    beats = [writer(f"w{i}", {"a": value}, d, finished) for i, d in enumerate(delays)]
    result = run_step(backend, snapshot(start), beats)
    expected = snapshot(start)
    expected.a = value
    assert result == expected


# --------------------------------------------------------------------- (b) conflicts


@st.composite
def conflict_plans(draw: st.DrawFn) -> tuple[Wide, list[dict[str, Any]], str, int, int]:
    """Two beats write one field to different values (both different from the original)."""
    start, plans, _ = draw(disjoint_plans())
    key = draw(st.sampled_from(FIELDS))
    first, second = sorted(
        draw(st.lists(st.integers(0, len(plans) - 1), min_size=2, max_size=2, unique=True))
    )
    original = getattr(start, key)
    v1 = draw(VALUES[key].filter(lambda v: v != original))
    v2 = draw(VALUES[key].filter(lambda v: v not in (original, v1)))
    for plan in plans:
        plan.pop(key, None)
    plans[first][key] = v1
    plans[second][key] = v2
    return start, plans, key, first, second


@backends
@props
@given(plan=conflict_plans(), data=st.data())
def test_conflicting_writes_raise_naming_field_and_both_beats(
    backend: str, plan: tuple[Wide, list[dict[str, Any]], str, int, int], data: st.DataObject
) -> None:
    start, plans, key, first, second = plan
    delays = data.draw(delay_schedules(plans))
    finished: list[str] = []
    beats = [writer(f"b{i}", w, delays[i], finished) for i, w in enumerate(plans)]
    ctx = snapshot(start)
    with pytest.raises(MergeConflictError) as caught:
        run_step(backend, ctx, beats)
    error = caught.value
    assert error.field == key
    assert error.beats == (f"b{first}", f"b{second}")  # declaration order, whoever finished first
    assert error.step_name == "step"
    assert error.cadence_name == "props"
    message = str(error)
    assert f"'b{first}'" in message
    assert f"'b{second}'" in message
    assert repr(key) in message
    assert message.index(f"'b{first}'") < message.index(f"'b{second}'")
    # No partial merge: the disjoint writes of the other beats are not applied either.
    assert ctx == start


@backends
@props
@given(plan=conflict_plans(), data=st.data())
def test_a_custom_strategy_sees_the_conflict_in_declaration_order(
    backend: str, plan: tuple[Wide, list[dict[str, Any]], str, int, int], data: st.DataObject
) -> None:
    start, plans, key, first, second = plan
    delays = data.draw(delay_schedules(plans))
    seen: list[FieldConflict] = []

    def keep_original(conflict: FieldConflict) -> object:
        seen.append(conflict)
        return conflict.original

    finished: list[str] = []
    beats = [writer(f"b{i}", w, delays[i], finished) for i, w in enumerate(plans)]
    result = run_step(backend, snapshot(start), beats, merge=keep_original)

    assert len(seen) == 1
    conflict = seen[0]
    assert conflict.field == key
    assert conflict.step_name == "step"
    assert conflict.cadence_name == "props"
    assert conflict.original == getattr(start, key)
    assert list(conflict.writes) == [f"b{first}", f"b{second}"]
    assert list(conflict.writes.values()) == [plans[first][key], plans[second][key]]
    expected = snapshot(start)
    for writes in plans:
        for name, value in writes.items():
            if name != key:
                setattr(expected, name, value)
    assert result == expected


# --------------------------------------------------------------------- (c) isolation

json_like = st.recursive(
    small_ints | st.text("ab", max_size=2),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text("pq", max_size=2), children, max_size=3)
    ),
    max_leaves=12,
)


@dataclass
class Tree(Context):
    tree: dict[str, Any] = field(default_factory=dict)
    other: list[Any] = field(default_factory=list)


def containers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (a tuple of keys and indexes) to a list or dict inside `value`."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        found.append(path)
        for key, item in value.items():
            found.extend(containers(item, (*path, key)))
    elif isinstance(value, list):
        found.append(path)
        for index, item in enumerate(value):
            found.extend(containers(item, (*path, index)))
    return found


def at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def mutate(container: Any) -> None:
    if isinstance(container, list):
        container.append("MUTATED")
    else:
        container["MUTATED"] = ["MUTATED"]


@backends
@props
@given(
    tree=st.dictionaries(st.text("kl", max_size=2), json_like, max_size=3),
    other=st.lists(json_like, max_size=3),
    readers=st.integers(1, 3),
    data=st.data(),
)
def test_a_nested_mutation_never_leaks_into_a_sibling(
    backend: str, tree: dict[str, Any], other: list[Any], readers: int, data: st.DataObject
) -> None:
    original_tree = copy.deepcopy(tree)
    path = data.draw(st.sampled_from(containers(tree)))
    writer_delay = data.draw(pauses)
    reader_delays = data.draw(st.lists(pauses, min_size=readers, max_size=readers))
    seen: list[tuple[str, Any, Any]] = []

    async def main() -> Tree:
        mutated = anyio.Event()

        @beat(name="writer")
        async def write(ctx: Tree) -> None:
            await pause(writer_delay)
            mutate(at(ctx.tree, path))
            mutate(ctx.other)
            mutated.set()
            await pause(writer_delay)

        def make_reader(i: int) -> Any:
            async def read(ctx: Tree) -> None:
                await pause(reader_delays[i])
                seen.append(("before", copy.deepcopy(ctx.tree), copy.deepcopy(ctx.other)))
                await mutated.wait()
                seen.append(("after", copy.deepcopy(ctx.tree), copy.deepcopy(ctx.other)))

            return beat(name=f"reader{i}")(read)

        beats = [write, *(make_reader(i) for i in range(readers))]
        order = data.draw(st.permutations(beats))  # the writer may be declared anywhere
        ctx = Tree(tree=tree, other=other)
        return await Cadence("iso", Tree()).sync("step", order).run(ctx)

    original_other = copy.deepcopy(other)
    result = anyio.run(main, backend=backend)

    assert len(seen) == 2 * readers
    for _, tree_seen, other_seen in seen:
        assert tree_seen == original_tree
        assert other_seen == original_other
    # The caller's own objects were never touched: the writer worked on a deep copy.
    assert tree == original_tree
    assert other == original_other
    # The writer's change is merged back.
    expected_tree = copy.deepcopy(original_tree)
    mutate(at(expected_tree, path))
    expected_other = copy.deepcopy(original_other)
    mutate(expected_other)
    assert result.tree == expected_tree
    assert result.other == expected_other


class Box:
    """A mutable object that compares by identity (no `__eq__` of its own)."""

    def __init__(self) -> None:
        self.value = 0


@dataclass
class Boxed(Context):
    box: Box = field(default_factory=Box)
    other: int = 0


@backends
def test_an_in_place_change_to_an_identity_compared_object_is_never_dropped(
    backend: str,
) -> None:
    """A parallel beat mutates a plain object in place: merge it, or refuse; never drop it.

    Run alone as a `then` step the change is kept; inside a `sync` step it must not vanish
    silently ("a lost parallel write is an error, never a silent drop").
    """

    async def bump(ctx: Boxed) -> None:
        ctx.box.value = 5

    async def sibling(ctx: Boxed) -> None:
        ctx.other = 1

    alone = Cadence("c", Boxed()).then("bump", bump).run_sync(backend=backend)
    assert alone.box.value == 5

    parallel = Cadence("c", Boxed()).sync("fan", [bump, sibling])
    try:
        result = parallel.run_sync(backend=backend)
    except CadenceError:
        return  # refusing the step is honest too
    assert result.other == 1
    assert result.box.value == 5, "the parallel beat's write was silently dropped"


# --------------------------------------------------------------------- (d) no-op beats

NOOP_KINDS = ("nothing", "read", "reassign_equal", "mutate_and_revert")


def noop(name: str, kind: str, delays: Sequence[int]) -> Any:
    async def run(ctx: Wide) -> None:
        await pause(delays[0])
        if kind == "read":
            _ = (ctx.a, list(ctx.c), dict(ctx.d), set(ctx.s))
        elif kind == "reassign_equal":
            for key in FIELDS:
                setattr(ctx, key, copy.deepcopy(getattr(ctx, key)))
        elif kind == "mutate_and_revert":
            ctx.c.append(999)
            ctx.d["__tmp__"] = 1
            ctx.s.add(999_999)
            ctx.a += 1
            await pause(delays[1])
            ctx.c.pop()
            del ctx.d["__tmp__"]
            ctx.s.discard(999_999)
            ctx.a -= 1
        await pause(delays[1])

    return named(name, run)


@backends
@props
@given(
    start=wide_contexts,
    kinds=st.lists(st.sampled_from(NOOP_KINDS), min_size=1, max_size=5),
    strategy=st.sampled_from([fail_on_conflict, last_write_wins, smart_merge]),
    data=st.data(),
)
def test_no_op_beats_leave_the_context_as_it_was(
    backend: str, start: Wide, kinds: list[str], strategy: MergeStrategy, data: st.DataObject
) -> None:
    # `mutate_and_revert` adds 999 and 999_999 then removes them: keep them out of the start.
    start.c = [v for v in start.c if v != 999]
    start.s.discard(999_999)
    start.d.pop("__tmp__", None)
    delays = data.draw(st.lists(st.lists(pauses, min_size=2, max_size=2), min_size=len(kinds)))
    beats = [noop(f"n{i}", kind, delays[i]) for i, kind in enumerate(kinds)]
    before = snapshot(start)
    objects = {key: getattr(start, key) for key in FIELDS}

    result = run_step(backend, start, beats, merge=strategy)

    assert result == before
    for key in FIELDS:  # nothing was written, so no field was even replaced
        assert getattr(result, key) is objects[key]


# --------------------------------------------------------------------- strategies


@backends
@props
@given(
    start=wide_contexts,
    values=st.lists(small_ints, min_size=2, max_size=5, unique=True),
    data=st.data(),
)
def test_last_write_wins_takes_the_declaration_last_writer(
    backend: str, start: Wide, values: list[int], data: st.DataObject
) -> None:
    # A beat that writes the original value back writes nothing (three-way merge).
    assume(start.a not in values)
    delays = data.draw(st.lists(st.lists(pauses, min_size=2, max_size=2), min_size=len(values)))
    finished: list[str] = []
    beats = [writer(f"w{i}", {"a": v}, delays[i], finished) for i, v in enumerate(values)]
    result = run_step(backend, snapshot(start), beats, merge=last_write_wins)
    assert result.a == values[-1]
    assert sorted(finished) == sorted(f"w{i}" for i in range(len(values)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_last_write_wins_ignores_completion_order(backend: str) -> None:
    """The declaration-last writer finishes first and still wins."""
    finished: list[str] = []
    beats = [
        writer("slow_first", {"a": 1}, [0, 20], finished),
        writer("middle", {"a": 2}, [0, 10], finished),
        writer("fast_last", {"a": 3}, [0, 0], finished),
    ]
    result = run_step(backend, Wide(), beats, merge=last_write_wins)
    assert finished == ["fast_last", "middle", "slow_first"]
    assert result.a == 3


def appender(name: str, items: list[int], delays: Sequence[int], *, reassign: bool) -> Any:
    async def append(ctx: Wide) -> None:
        for item, delay in zip(items, delays, strict=False):
            await pause(delay)
            if reassign:
                ctx.c = [*ctx.c, item]
            else:
                ctx.c.append(item)

    return named(name, append)


@backends
@props
@given(
    start=wide_contexts,
    appends=st.lists(st.lists(small_ints, max_size=3), min_size=2, max_size=5),
    data=st.data(),
)
def test_smart_merge_appends_list_items_in_declaration_order(
    backend: str, start: Wide, appends: list[list[int]], data: st.DataObject
) -> None:
    # Items are made distinct across beats here; equal appends have their own test below.
    distinct = [[1000 * (i + 1) + item for item in items] for i, items in enumerate(appends)]
    delays = data.draw(st.lists(st.lists(pauses, min_size=3, max_size=3), min_size=len(appends)))
    reassign = data.draw(st.lists(st.booleans(), min_size=len(appends), max_size=len(appends)))
    beats = [
        appender(f"b{i}", items, delays[i], reassign=reassign[i])
        for i, items in enumerate(distinct)
    ]
    result = run_step(backend, snapshot(start), beats, merge=smart_merge)
    assert result.c == start.c + [item for items in distinct for item in items]


@pytest.mark.parametrize("backend", BACKENDS)
def test_smart_merge_keeps_equal_appends_of_two_beats(backend: str) -> None:
    """Two beats that each append the same item: both appends are kept, none is lost."""
    beats = [
        appender("first", [7], [0], reassign=False),
        appender("second", [7], [0], reassign=False),
    ]
    result = run_step(backend, Wide(c=[1]), beats, merge=smart_merge)
    assert result.c == [1, 7, 7]


@st.composite
def dict_plans(draw: st.DrawFn) -> tuple[dict[str, int], list[dict[str, int]], list[set[str]]]:
    """Per beat: keys to set (a key set twice gets one value) and original keys to delete."""
    keys = st.text("abcdef", min_size=1, max_size=2)
    original = draw(st.dictionaries(keys, small_ints, max_size=4))
    values = draw(st.dictionaries(keys, small_ints, max_size=6))
    count = draw(st.integers(2, 4))
    sets: list[dict[str, int]] = []
    for _ in range(count):
        chosen = draw(st.sets(st.sampled_from(sorted(values)))) if values else set()
        sets.append({key: values[key] for key in chosen})
    deletable = sorted(set(original) - set(values))
    deletes = [
        set(draw(st.sets(st.sampled_from(deletable)))) if deletable else set() for _ in range(count)
    ]
    return original, sets, deletes


@backends
@props
@given(plan=dict_plans(), data=st.data())
def test_smart_merge_unites_dict_key_updates(
    backend: str,
    plan: tuple[dict[str, int], list[dict[str, int]], list[set[str]]],
    data: st.DataObject,
) -> None:
    original, sets, deletes = plan
    delays = data.draw(st.lists(st.lists(pauses, min_size=2, max_size=2), min_size=len(sets)))

    def make(i: int) -> Any:
        async def update(ctx: Wide) -> None:
            await pause(delays[i][0])
            ctx.d.update(sets[i])
            await pause(delays[i][1])
            for key in deletes[i]:
                del ctx.d[key]

        return named(f"b{i}", update)

    result = run_step(
        backend, Wide(d=dict(original)), [make(i) for i in range(len(sets))], merge=smart_merge
    )
    expected = dict(original)
    for update in sets:
        expected.update(update)
    for removed in deletes:
        for key in removed:
            expected.pop(key, None)
    assert result.d == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_smart_merge_refuses_one_dict_key_changed_two_ways(backend: str) -> None:
    beats = [
        named("left", lambda ctx: ctx.d.update(k=1)),
        named("right", lambda ctx: ctx.d.update(k=2)),
    ]
    ctx = Wide(d={"k": 0, "other": 5})
    with pytest.raises(MergeConflictError) as caught:
        run_step(backend, ctx, beats, merge=smart_merge)
    assert caught.value.field == "d"
    assert caught.value.beats == ("left", "right")
    assert "disagree on key 'k'" in str(caught.value)
    assert ctx.d == {"k": 0, "other": 5}


@backends
@props
@given(
    original=st.sets(small_ints, max_size=5),
    adds=st.lists(st.sets(small_ints, max_size=4), min_size=2, max_size=4),
    data=st.data(),
)
def test_smart_merge_unites_set_additions(
    backend: str, original: set[int], adds: list[set[int]], data: st.DataObject
) -> None:
    delays = data.draw(st.lists(pauses, min_size=len(adds), max_size=len(adds)))

    def make(i: int) -> Any:
        async def add(ctx: Wide) -> None:
            await pause(delays[i])
            ctx.s |= adds[i]

        return named(f"b{i}", add)

    result = run_step(
        backend, Wide(s=set(original)), [make(i) for i in range(len(adds))], merge=smart_merge
    )
    assert result.s == original.union(*adds)


# --------------------------------------------------------------------- failures


class Boom(Exception):
    pass


@backends
@props
@given(plan=disjoint_plans(), data=st.data())
def test_a_failing_beat_merges_nothing_and_cancels_its_siblings(
    backend: str, plan: tuple[Wide, list[dict[str, Any]], list[bool]], data: st.DataObject
) -> None:
    start, plans, in_place = plan
    count = len(plans)
    failing = data.draw(st.integers(0, count - 1))
    fail_delay = data.draw(pauses)
    in_thread = data.draw(st.booleans())
    waits_forever = data.draw(st.lists(st.booleans(), min_size=count, max_size=count))
    delays = data.draw(delay_schedules(plans))
    started: list[str] = []
    cleaned: list[tuple[str, str]] = []

    def make(i: int) -> Any:
        name = f"b{i}"
        write = writer(name, plans[i], delays[i], [], in_place=in_place[i])

        async def run(ctx: Wide) -> None:
            started.append(name)
            outcome = "returned"
            try:
                await write(ctx)
                if waits_forever[i]:
                    await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                outcome = "cancelled"
                raise
            finally:
                cleaned.append((name, outcome))

        return named(name, run)

    def fail_in_thread(ctx: Wide) -> None:
        started.append(f"b{failing}")
        cleaned.append((f"b{failing}", "raised"))
        raise Boom("boom")

    async def fail(ctx: Wide) -> None:
        started.append(f"b{failing}")
        try:
            await pause(fail_delay)
            raise Boom("boom")
        finally:
            cleaned.append((f"b{failing}", "raised"))

    beats = [make(i) for i in range(count)]
    beats[failing] = named(f"b{failing}", fail_in_thread if in_thread else fail)
    ctx = snapshot(start)

    with pytest.raises(BeatError) as caught:
        run_step(backend, ctx, beats)

    assert caught.value.beat_name == f"step.b{failing}"
    assert caught.value.cadence_name == "props"
    assert isinstance(caught.value.__cause__, Boom)
    assert ctx == start  # no partial merge
    assert sorted(started) == sorted(f"b{i}" for i in range(count))
    assert sorted(name for name, _ in cleaned) == sorted(started)  # each cleaned up once
    outcomes = dict(cleaned)
    assert outcomes[f"b{failing}"] == "raised"
    for i in range(count):
        if i != failing and waits_forever[i]:
            assert outcomes[f"b{i}"] == "cancelled"  # the failure cancelled it


@pytest.mark.parametrize("backend", BACKENDS)
def test_completion_order_really_follows_the_pauses(backend: str) -> None:
    """The knob the properties turn does permute completion order."""
    for delays, expected in (([5, 0, 2], ["b1", "b2", "b0"]), ([0, 3, 6], ["b0", "b1", "b2"])):
        finished: list[str] = []
        beats = [writer(f"b{i}", {}, [d], finished) for i, d in enumerate(delays)]
        run_step(backend, Wide(), beats)
        assert finished == expected
