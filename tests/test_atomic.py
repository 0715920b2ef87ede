"""AtomicList and AtomicDict: thread safety, serialisation, sharing within a run, pickling."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from cadence import AtomicDict, AtomicList, Cadence, Context, beat
from cadence._context import AtomicWrites, atomic_writes

THREADS = 8
OPERATIONS = 10_000


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads very often, so a read-modify-write race would show."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def hammer(work: Callable[[int], None]) -> None:
    """Run `work(thread_index)` on THREADS threads that start together; re-raise any failure."""
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def body(index: int) -> None:
        start.wait()
        try:
            work(index)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert failures == []


# --------------------------------------------------------------------- thread safety


@pytest.mark.usefixtures("busy_switching")
def test_concurrent_appends_lose_nothing() -> None:
    items: AtomicList[tuple[int, int]] = AtomicList()

    def work(index: int) -> None:
        nonlocal items  # `+=` rebinds the name (to the same list: `__iadd__` returns it)
        for i in range(OPERATIONS):
            if i % 4 == 0:
                items.extend([(index, i), (index, i + 1)])
            elif i % 4 == 1:
                continue  # added by the extend just before
            elif i % 4 == 2:
                items += [(index, i)]
            else:
                items.append((index, i))

    same = items
    hammer(work)
    assert items is same
    assert len(items) == THREADS * OPERATIONS
    assert set(items) == {(t, i) for t in range(THREADS) for i in range(OPERATIONS)}
    for t in range(THREADS):  # each thread's own items stay in its order
        assert [i for (u, i) in items if u == t] == list(range(OPERATIONS))


@pytest.mark.usefixtures("busy_switching")
def test_concurrent_compute_increments_lose_nothing() -> None:
    counts: AtomicDict[str, int] = AtomicDict()

    def bump(value: int | None) -> int:
        return (value or 0) + 1

    def work(index: int) -> None:
        for i in range(OPERATIONS):
            counts.compute("total", bump)
            counts.compute(f"key{i % 16}", bump)

    hammer(work)
    assert counts["total"] == THREADS * OPERATIONS
    assert sum(v for k, v in counts.items() if k != "total") == THREADS * OPERATIONS
    assert all(counts[f"key{k}"] == THREADS * OPERATIONS // 16 for k in range(16))


@pytest.mark.usefixtures("busy_switching")
def test_concurrent_setdefault_and_pop_never_duplicate_or_lose_a_token() -> None:
    """Tokens move between the dict and the threads; every one is in exactly one place."""
    pool: AtomicDict[int, int] = AtomicDict((k, k) for k in range(64))
    held: list[list[int]] = [[] for _ in range(THREADS)]
    placed = [0] * THREADS

    def work(index: int) -> None:
        rng = random.Random(index)
        mine = held[index]
        for _ in range(OPERATIONS):
            key = rng.randrange(64)
            if mine and rng.random() < 0.5:
                token = mine.pop()
                if pool.setdefault(key, token) is token:
                    placed[index] += 1
                else:
                    mine.append(token)  # the key was taken: keep the token
            else:
                token = pool.pop(key, None)
                if token is not None:
                    mine.append(token)

    hammer(work)
    everywhere = list(pool.values()) + [t for mine in held for t in mine]
    assert sorted(everywhere) == list(range(64))
    assert sum(placed) > 1000  # the tokens really moved


@pytest.mark.usefixtures("busy_switching")
def test_concurrent_list_pops_hand_out_each_item_once() -> None:
    items: AtomicList[int] = AtomicList(range(THREADS * OPERATIONS))
    taken: list[list[int]] = [[] for _ in range(THREADS)]

    def work(index: int) -> None:
        for _ in range(OPERATIONS):
            taken[index].append(items.pop())

    hammer(work)
    assert items == []
    assert sorted(t for mine in taken for t in mine) == list(range(THREADS * OPERATIONS))


@pytest.mark.usefixtures("busy_switching")
def test_sorting_takes_the_lock_so_concurrent_appends_survive() -> None:
    """`sort` mutates too: an append racing it must neither be lost nor break the sort.

    (A plain list empties itself while sorting; an append that lands meanwhile is dropped
    and the sort raises "list modified during sort".)
    """
    items: AtomicList[int] = AtomicList(range(2_000))
    sorted_enough = threading.Event()
    appended = [0]

    def work(index: int) -> None:
        if index == 0:
            while not sorted_enough.is_set():
                appended[0] += 1
                items.append(-appended[0])
        elif index == 1:
            try:
                while appended[0] < 100:  # the appender is under way
                    time.sleep(0)
                for _ in range(30):
                    items.sort(key=lambda v: -v)  # a Python key: the GIL can switch mid-sort
            finally:
                sorted_enough.set()
        # the other threads have nothing to do

    hammer(work)
    assert appended[0] > 0
    assert len(items) == 2_000 + appended[0]
    assert sorted(items) == list(range(-appended[0], 2_000))


# --------------------------------------------------------------------- serialisation


@dataclass
class Aggregate(Context):
    name: str = "agg"
    results: AtomicList[Any] = field(default_factory=AtomicList)
    cache: AtomicDict[str, Any] = field(default_factory=AtomicDict)
    nested: dict[str, Any] = field(default_factory=dict)


def test_atomic_containers_are_a_list_and_a_dict() -> None:
    items = AtomicList([1, "two", [3]])
    table = AtomicDict({"a": 1, "b": [2]}, c=3)
    assert isinstance(items, list)
    assert isinstance(table, dict)
    assert items == [1, "two", [3]]
    assert table == {"a": 1, "b": [2], "c": 3}
    assert type(items.snapshot()) is list
    assert items.snapshot() == items
    assert items.snapshot() is not items
    assert type(table.snapshot()) is dict
    assert table.snapshot() == table


def test_atomic_containers_serialise_as_json_list_and_dict() -> None:
    items = AtomicList([1, "two", [3], AtomicDict(x=1)])
    table = AtomicDict({"a": 1, "b": AtomicList([2, 3])})
    assert json.dumps(items) == '[1, "two", [3], {"x": 1}]'
    assert json.dumps(table) == '{"a": 1, "b": [2, 3]}'
    assert json.loads(json.dumps({"items": items, "table": table})) == {
        "items": [1, "two", [3], {"x": 1}],
        "table": {"a": 1, "b": [2, 3]},
    }


def test_a_context_holding_atomic_containers_serialises_with_asdict() -> None:
    ctx = Aggregate(nested={"inner": AtomicList([1])})
    ctx.results.extend([1, 2])
    ctx.cache["k"] = {"deep": AtomicList(["v"])}
    as_dict = dataclasses.asdict(ctx)
    expected = {
        "name": "agg",
        "results": [1, 2],
        "cache": {"k": {"deep": ["v"]}},
        "nested": {"inner": [1]},
    }
    assert as_dict == expected
    assert json.loads(json.dumps(as_dict)) == expected
    # asdict copies: changing the copy leaves the context alone.
    as_dict["results"].append(3)
    assert ctx.results == [1, 2]


# --------------------------------------------------------------------- pickling


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_round_trips(protocol: int) -> None:
    items = AtomicList([1, [2], {"three": 3}])
    table = AtomicDict({"a": AtomicList([1]), "b": {"c": 2}})
    items.append(table)  # nesting survives too

    back = pickle.loads(pickle.dumps(items, protocol=protocol))  # noqa: S301 # our own bytes

    assert type(back) is AtomicList
    assert back == items
    assert back is not items
    inner = back[3]
    assert type(inner) is AtomicDict
    assert type(inner["a"]) is AtomicList
    assert inner == table
    # The copy is a working atomic container of its own, with its own lock.
    back.append(4)
    inner["d"] = 5
    assert back[-1] == 4
    assert len(items) == 4
    assert "d" not in table
    assert inner.compute("d", lambda v: (v or 0) + 1) == 6
    assert back._lock is not items._lock


def test_a_context_holding_atomic_containers_pickles() -> None:
    ctx = Aggregate(nested={"inner": AtomicList([1])})
    ctx.results.append("r")
    ctx.cache["k"] = 1
    back = pickle.loads(pickle.dumps(ctx))  # noqa: S301 # our own bytes
    assert back == ctx
    assert type(back.results) is AtomicList
    assert type(back.cache) is AtomicDict
    assert type(back.nested["inner"]) is AtomicList
    back.results.append("s")
    assert ctx.results == ["r"]


def test_copies_outside_a_run_are_independent() -> None:
    items = AtomicList([[1], 2])
    table = AtomicDict(a=[1])
    for copied_items, copied_table in (
        (copy.copy(items), copy.copy(table)),
        (copy.deepcopy(items), copy.deepcopy(table)),
    ):
        assert type(copied_items) is AtomicList
        assert type(copied_table) is AtomicDict
        assert copied_items == items
        assert copied_table == table
        assert copied_items is not items
        assert copied_table is not table
        copied_items.append(3)
        copied_table["b"] = 2
        assert items == [[1], 2]
        assert table == {"a": [1]}
    deep = copy.deepcopy(items)
    deep[0].append("x")
    assert items[0] == [1]


# --------------------------------------------------------------------- inside cadences


@pytest.mark.anyio
async def test_parallel_copies_share_the_atomic_containers() -> None:
    seen: dict[str, tuple[int, int, int]] = {}
    both_in = anyio.Event()
    arrived: list[str] = []

    def make(name: str) -> Any:
        async def fn(ctx: Aggregate) -> None:
            ctx.results.append(name)
            ctx.cache[name] = len(name)
            ctx.nested["log"].append(name)  # an atomic list at depth is shared too
            arrived.append(name)
            if len(arrived) == 2:
                both_in.set()
            await both_in.wait()
            # Each copy sees the other's item while the step is still running.
            seen[name] = (len(ctx.results), len(ctx.cache), len(ctx.nested["log"]))

        return beat(name=name)(fn)

    ctx = Aggregate(nested={"log": AtomicList()})
    results, cache, log = ctx.results, ctx.cache, ctx.nested["log"]
    out = await Cadence("agg", Aggregate()).sync("fan", [make("left"), make("right")]).run(ctx)

    assert out is ctx
    assert sorted(out.results) == ["left", "right"]
    assert out.cache == {"left": 4, "right": 5}
    assert sorted(out.nested["log"]) == ["left", "right"]
    assert seen == {"left": (2, 2, 2), "right": (2, 2, 2)}
    # Shared, so never merged as a write: the very same objects are still in place.
    assert out.results is results
    assert out.cache is cache
    assert out.nested["log"] is log


@pytest.mark.anyio
async def test_parallel_sync_beats_in_threads_append_without_loss() -> None:
    def make(name: str) -> Any:
        def fn(ctx: Aggregate) -> None:  # a sync beat: it runs in a worker thread
            for i in range(5_000):
                ctx.results.append((name, i))
                ctx.cache.compute("count", lambda v: (v or 0) + 1)

        return beat(name=name)(fn)

    beats = [make(f"t{i}") for i in range(4)]
    out = await Cadence("agg", Aggregate()).sync("fan", beats).run()
    assert len(out.results) == 20_000
    assert set(out.results) == {(f"t{t}", i) for t in range(4) for i in range(5_000)}
    assert out.cache == {"count": 20_000}


@pytest.mark.anyio
async def test_each_fresh_run_gets_its_own_copies_of_the_template() -> None:
    template = Aggregate(nested={"log": AtomicList(["seed"])})
    template.results.append("seed")
    template.cache["seed"] = 0
    template_objects = (template.results, template.cache, template.nested["log"])
    counter = iter(range(100))

    async def add(ctx: Aggregate) -> None:
        n = next(counter)
        await anyio.lowlevel.checkpoint()
        ctx.results.append(n)
        ctx.cache[f"run{n}"] = n
        ctx.nested["log"].append(n)

    async def add_too(ctx: Aggregate) -> None:
        ctx.results.append("sibling")

    cadence = Cadence("agg", template).sync("fan", [add, add_too])
    first = await cadence.run()
    second = await cadence.run()

    assert sorted(map(str, first.results)) == ["0", "seed", "sibling"]
    assert sorted(map(str, second.results)) == ["1", "seed", "sibling"]
    assert first.cache == {"seed": 0, "run0": 0}
    assert second.cache == {"seed": 0, "run1": 1}
    assert first.nested["log"] == ["seed", 0]
    assert second.nested["log"] == ["seed", 1]
    for run in (first, second):
        assert type(run.results) is AtomicList
        assert type(run.cache) is AtomicDict
        assert type(run.nested["log"]) is AtomicList
        assert run.results is not template.results
        assert run.cache is not template.cache
        assert run.nested["log"] is not template.nested["log"]
    assert first.results is not second.results
    assert first.cache is not second.cache
    # The template is untouched: same objects, same contents.
    assert (template.results, template.cache, template.nested["log"]) == (
        ["seed"],
        {"seed": 0},
        ["seed"],
    )
    assert template_objects[0] is template.results
    assert template_objects[1] is template.cache
    assert template_objects[2] is template.nested["log"]


# --------------------------------------------------------------------- the README's pattern


@dataclass
class AggregatorContext(Context):
    results: AtomicList = None  # type: ignore[type-arg,assignment] # the README's own spelling
    cache: AtomicDict = None  # type: ignore[type-arg,assignment] # likewise
    label: str = "agg"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.results = AtomicList()
        self.cache = AtomicDict()


@pytest.mark.anyio
async def test_the_readme_post_init_pattern_works() -> None:
    fresh = AggregatorContext()
    assert type(fresh.results) is AtomicList
    assert type(fresh.cache) is AtomicDict
    assert AggregatorContext().results is not fresh.results  # one pair per instance

    async def fetch_a(ctx: AggregatorContext) -> None:
        await anyio.lowlevel.checkpoint()
        ctx.results.append("a")
        ctx.cache["a"] = 1

    def fetch_b(ctx: AggregatorContext) -> None:
        ctx.results.append("b")
        ctx.cache["b"] = 2

    async def summarise(ctx: AggregatorContext) -> None:
        ctx.label = ",".join(sorted(ctx.results))

    template = AggregatorContext()
    cadence = (
        Cadence("aggregate", template)
        .sync("fetch", [fetch_a, fetch_b])
        .then("summarise", summarise)
    )
    first = await cadence.run()
    second = await cadence.run()
    for result in (first, second):
        assert sorted(result.results) == ["a", "b"]
        assert result.cache == {"a": 1, "b": 2}
        assert result.label == "a,b"
    assert first.results is not second.results
    assert template.results == []
    assert template.cache == {}
    assert template.label == "agg"
    assert json.loads(json.dumps(dataclasses.asdict(first))) == {
        "results": list(first.results),
        "cache": {"a": 1, "b": 2},
        "label": "a,b",
    }


def test_changes_no_durable_branch_noted_are_counted() -> None:
    log, seen = AtomicList[int](), AtomicDict[str, int]()
    log.append(1)
    log.extend([2, 3])
    seen["a"] = 1
    writes = AtomicWrites()
    token = atomic_writes.set(writes)  # a durable branch's: noted there, not counted
    try:
        log.append(4)
        seen.pop("a")
    finally:
        atomic_writes.reset(token)
    assert (log.untracked_changes, seen.untracked_changes) == (2, 1)
    assert writes.added[id(log)][1] == [4]
    assert writes.other
    assert copy.deepcopy(log).untracked_changes == 0  # a copy starts its own count
