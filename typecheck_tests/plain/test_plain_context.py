"""Plain typing of contexts: `ImmutableContext`, `AtomicList`, `AtomicDict`.

Type-checked only (mypy --strict without the plugin, pyright --strict), never executed. Negative
cases carry a paired ignore: `# type: ignore[<mypy code>]  # pyright: ignore[<rule>]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import assert_type

from cadence import AtomicDict, AtomicList, Cadence, Context, ImmutableContext, beat


@dataclass(frozen=True)
class Frozen(ImmutableContext):
    count: int = 0
    name: str = ""


@dataclass(frozen=True)
class SubFrozen(Frozen):
    extra: bool = False


@dataclass
class Shared(Context):
    seen: AtomicList[int] = field(default_factory=AtomicList[int])
    scores: AtomicDict[str, int] = field(default_factory=AtomicDict[str, int])


def bump(ctx: Frozen) -> Frozen:
    return ctx.with_field("count", ctx.count + 1)


async def bump_async(ctx: Frozen) -> Frozen:
    return ctx.with_fields(count=ctx.count + 1, name="bumped")


def bump_sub(ctx: SubFrozen) -> SubFrozen | None:
    return ctx.with_field("extra", not ctx.extra)


@beat
def bump_marked(ctx: Frozen) -> Frozen:
    return ctx.with_field("count", ctx.count + 1)


@beat(name="maybe")
async def maybe_bump(ctx: Frozen) -> Frozen | None:
    """May return `None` (nothing changed): accepted."""
    return None


def record(ctx: Shared) -> None:
    ctx.seen.append(1)
    ctx.scores["a"] = 1


def as_frozen(ctx: Frozen) -> Frozen:
    return ctx


def as_list(items: list[int]) -> list[int]:
    """An `AtomicList[int]` is a `list[int]`."""
    return items


def as_dict(scores: dict[str, int]) -> dict[str, int]:
    """An `AtomicDict[str, int]` is a `dict[str, int]`."""
    return scores


# ----------------------------------------------------------------- positive cases


def case_immutable_context() -> None:
    frozen = Frozen()
    assert_type(frozen.with_field("count", 1), Frozen)
    assert_type(frozen.with_fields(count=1, name="x"), Frozen)
    sub = SubFrozen()
    assert_type(sub.with_field("count", 1), SubFrozen)
    assert_type(sub.with_fields(extra=True), SubFrozen)
    assert_type(as_frozen(sub).with_field("count", 1), Frozen)
    cadence = (
        Cadence("frozen", Frozen())
        .then("bump", bump)
        .then("async", bump_async)
        .then("marked", bump_marked)
        .then("maybe", maybe_bump)
    )
    assert_type(cadence, Cadence[Frozen])
    assert_type(cadence.run_sync(), Frozen)
    sub_cadence = Cadence("sub", SubFrozen()).then("bump", bump_sub)
    assert_type(sub_cadence.run_sync(), SubFrozen)


def case_atomic_list() -> None:
    items = AtomicList[int]()
    assert_type(items, AtomicList[int])
    assert_type(AtomicList([1, 2]), AtomicList[int])
    assert_type(AtomicList(["a"]), AtomicList[str])
    assert_type(items.pop(), int)
    assert_type(items.snapshot(), list[int])
    assert_type(items[0], int)
    assert_type(items[1:], list[int])
    items.append(1)
    items.extend([2, 3])
    items.insert(0, 4)
    items[0] = 5
    items[1:] = [6, 7]
    items += [8]
    items.sort()
    items.sort(key=lambda item: -item, reverse=True)
    assert_type(as_list(items), list[int])


def case_atomic_dict() -> None:
    scores = AtomicDict[str, int]()
    assert_type(scores, AtomicDict[str, int])
    declared: AtomicDict[str, int] = AtomicDict()
    assert_type(declared, AtomicDict[str, int])
    assert_type(scores["a"], int)
    assert_type(scores.get("a"), int | None)
    assert_type(scores.pop("a"), int)
    assert_type(scores.pop("a", 0), int)
    assert_type(scores.pop("a", None), int | None)
    assert_type(scores.setdefault("a", 0), int)
    assert_type(scores.popitem(), tuple[str, int])
    assert_type(scores.snapshot(), dict[str, int])
    assert_type(scores.compute("a", lambda current: (current or 0) + 1), int)
    scores["b"] = 2
    scores.update({"c": 3})
    scores.update([("d", 4)], e=5)
    scores |= {"f": 6}
    assert_type(as_dict(scores), dict[str, int])


def case_shared_fields() -> None:
    ctx = Cadence("shared", Shared()).then("record", record).run_sync()
    assert_type(ctx.seen, AtomicList[int])
    assert_type(ctx.scores, AtomicDict[str, int])


# ----------------------------------------------------------------- negative cases


def case_atomic_element_types() -> None:
    items = AtomicList[int]()
    items.append("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    items.extend(["x"])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    scores = AtomicDict[str, int]()
    scores["a"] = "x"  # type: ignore[assignment]  # pyright: ignore[reportArgumentType]
    scores.compute("a", lambda _current: "x")  # type: ignore[arg-type,return-value]  # pyright: ignore[reportArgumentType]
    scores.update(a="x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def case_immutable_beat_for_another_context() -> None:
    Cadence("sub", SubFrozen()).then("bump", bump)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Cadence("frozen", Frozen()).then("bump", bump_sub)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
