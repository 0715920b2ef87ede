"""`@beat` marks a copy and leaves the function alone: two names give two distinct beats."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field

import pytest

from cadence import Cadence, CadenceDefinitionError, Context, beat, retry, timeout
from cadence._beat import beat_info


@dataclass
class Ctx(Context):
    seen: list[str] = field(default_factory=list[str])


def record(ctx: Ctx, /, *, tag: str = "plain") -> None:
    ctx.seen.append(tag)


async def record_async(ctx: Ctx, /) -> None:
    ctx.seen.append("async")


def test_beat_does_not_mutate_the_function() -> None:
    before = dict(record.__dict__)
    marked = beat(name="a", blocking=False)(record)
    assert marked is not record
    assert record.__dict__ == before
    assert beat_info(record) is None
    info = beat_info(marked)
    assert info is not None
    assert (info.name, info.blocking) == ("a", False)


def test_two_names_give_two_distinct_beats() -> None:
    a = beat(name="a")(record)
    b = beat(name="b")(record)
    assert a is not b
    assert (beat_info(a), beat_info(b)) != (None, None)
    assert beat_info(a).name == "a"  # type: ignore[union-attr]
    assert beat_info(b).name == "b"  # type: ignore[union-attr]
    cadence = Cadence("c", Ctx()).sync("both", [a, b])
    assert [spec.name for spec in cadence.steps[0].beats] == ["a", "b"]  # type: ignore[attr-defined]
    assert Cadence("c", Ctx()).then("a", a).then("b", b).run_sync().seen == ["plain", "plain"]


def test_the_copy_is_the_same_function() -> None:
    marked = beat(record)
    assert marked.__name__ == "record"
    assert marked.__qualname__ == record.__qualname__
    assert marked.__module__ == record.__module__
    assert inspect.signature(marked) == inspect.signature(record)
    ctx = Ctx()
    marked(ctx, tag="x")
    assert ctx.seen == ["x"]
    # Keyword defaults are the copy's own: changing them leaves the function alone.
    marked.__kwdefaults__["tag"] = "changed"  # type: ignore[attr-defined]
    record(ctx)
    assert ctx.seen == ["x", "plain"]


def test_marking_a_beat_again_renames_only_the_new_copy() -> None:
    first = beat(name="first")(record)
    second = beat(name="second")(first)
    assert beat_info(first).name == "first"  # type: ignore[union-attr]
    assert beat_info(second).name == "second"  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_async_beats_stay_async(anyio_backend: str) -> None:
    marked = beat(name="a")(record_async)
    assert inspect.iscoroutinefunction(marked)
    assert not hasattr(record_async, "__cadence_beat__")
    result = await Cadence("c", Ctx()).then("a", marked).run()
    assert result.seen == ["async"]


def test_partials_and_callable_objects_are_marked_without_mutation() -> None:
    partial = functools.partial(record, tag="partial")
    marked_partial = beat(name="p")(partial)
    assert marked_partial is not partial
    assert beat_info(partial) is None
    assert beat_info(marked_partial).name == "p"  # type: ignore[union-attr]

    class Recorder:
        def __call__(self, ctx: Ctx, /) -> None:
            ctx.seen.append("object")

    recorder = Recorder()
    marked_object = beat(recorder)
    assert beat_info(recorder) is None
    assert marked_object.__name__ == "Recorder"

    class AsyncRecorder:
        async def __call__(self, ctx: Ctx, /) -> None:
            ctx.seen.append("async object")

    marked_async = beat(blocking=False)(AsyncRecorder())
    assert inspect.iscoroutinefunction(marked_async)

    class Service:
        def step(self, ctx: Ctx, /) -> None:
            ctx.seen.append("method")

    service = Service()
    marked_method = beat(name="m")(service.step)
    assert beat_info(Service.step) is None
    result = (
        Cadence("c", Ctx())
        .then("p", marked_partial)
        .then("o", marked_object)
        .then("a", marked_async)
        .then("m", marked_method)
        .run_sync()
    )
    assert result.seen == ["partial", "object", "async object", "method"]


def test_decorators_above_and_below_see_the_beat() -> None:
    above = retry(max_attempts=2)(timeout(5.0)(beat(name="below", blocking=False)(record)))
    below = beat(name="above", blocking=False)(retry(max_attempts=2)(record))
    assert beat_info(above).name == "below"  # type: ignore[union-attr]
    assert beat_info(below).name == "above"  # type: ignore[union-attr]
    assert beat_info(record) is None
    cadence = Cadence("c", Ctx()).sync("both", [above, below])
    assert [s.name for s in cadence.steps[0].beats] == ["below", "above"]  # type: ignore[attr-defined]
    assert all(not s.in_thread for s in cadence.steps[0].beats)  # type: ignore[attr-defined]


def test_non_callables_are_refused() -> None:
    with pytest.raises(CadenceDefinitionError, match="expected a function, got int 3"):
        beat(3)  # type: ignore[call-overload]
