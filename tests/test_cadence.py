"""Building a cadence: immutability, and the errors a wrong definition gets at build time."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import pytest

from cadence import (
    BeatError,
    BeatErrorGroup,
    BeatTimeoutError,
    Cadence,
    CadenceDefinitionError,
    CadenceError,
    CircuitOpenError,
    Context,
    ImmutableContext,
    MergeConflictError,
    Split,
    Sync,
    Then,
    beat,
    last_write_wins,
)


@dataclass
class Ctx(Context):
    n: int = 0


async def inc(ctx: Ctx) -> None:
    ctx.n += 1


async def double(ctx: Ctx) -> None:
    ctx.n *= 2


def test_builder_methods_return_new_cadences_and_leave_the_receiver_alone() -> None:
    base = Cadence("base", Ctx()).then("inc", inc)
    one = base.then("double", double)
    two = base.then("again", inc)
    assert [s.name for s in base.steps] == ["inc"]
    assert [s.name for s in one.steps] == ["inc", "double"]
    assert [s.name for s in two.steps] == ["inc", "again"]
    assert one.run_sync().n == 2
    assert two.run_sync().n == 2
    assert base.on_error(lambda c, e: None).error_handler is not None
    assert base.error_handler is None
    assert base.with_hooks([]).hooks == ()


def test_steps_are_plain_records() -> None:
    async def other(ctx: Ctx) -> None: ...

    cadence = (
        Cadence("c", Ctx())
        .then("one", inc)
        .sync("par", [double, other], merge=last_write_wins)
        .split("branch", lambda c: c.n > 0, inc)
    )
    then, sync, split = cadence.steps
    assert isinstance(then, Then)
    assert then.beat.name == "one"
    assert then.beat.is_async
    assert isinstance(sync, Sync)
    assert [b.name for b in sync.beats] == ["double", "other"]
    assert sync.merge is last_write_wins
    assert isinstance(split, Split)
    assert [b.name for b in split.if_true] == ["inc"]
    assert split.if_false == ()
    assert repr(cadence) == "Cadence('c', steps=[then 'one', sync 'par', split 'branch'])"


def test_run_without_any_context_is_a_clear_error() -> None:
    with pytest.raises(CadenceDefinitionError, match="cadence 'bare' has no template context"):
        Cadence[Ctx]("bare").then("inc", inc).run_sync()
    assert Cadence[Ctx]("bare").then("inc", inc).run_sync(Ctx(3)).n == 4


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Cadence("", Ctx()), "the name must be a non-empty string"),
        (lambda: Cadence("c", object()), "must be an instance of a Context subclass"),  # type: ignore[type-var]
        (lambda: Cadence("c", Ctx()).then("", inc), r"cadence 'c', then: the step name"),
        (
            lambda: Cadence("c", Ctx()).then("a", inc).then("a", inc),
            r"cadence 'c', step 'a' \(then\): a step named 'a' already exists",
        ),
        (
            lambda: Cadence("c", Ctx()).then("a", 3),  # type: ignore[arg-type]
            r"cadence 'c', step 'a' \(then\): a beat must be callable, got int 3",
        ),
        (
            lambda: Cadence("c", Ctx()).sync("p", []),
            r"cadence 'c', step 'p' \(sync\): beats must not be empty",
        ),
        (
            lambda: Cadence("c", Ctx()).sync("p", "ab"),  # type: ignore[arg-type]
            r"step 'p' \(sync\): beats must be a beat or a list of beats, got str",
        ),
        (
            lambda: Cadence("c", Ctx()).sync("p", [inc, None]),  # type: ignore[list-item]
            r"step 'p' \(sync\), beats\[1\]: a beat must be callable, got NoneType",
        ),
        (
            lambda: Cadence("c", Ctx()).sync("p", [inc, inc]),
            r"beats\[0\] and beats\[1\] are both named 'inc'; name them apart with @beat",
        ),
        (
            lambda: Cadence("c", Ctx()).sync("p", [inc], merge="smart"),  # type: ignore[arg-type]
            r"step 'p' \(sync\): merge must be a merge strategy",
        ),
        (
            lambda: Cadence("c", Ctx()).split("s", True, inc),  # type: ignore[arg-type]
            r"step 's' \(split\): condition must be callable, got bool True",
        ),
        (
            lambda: Cadence("c", Ctx()).split("s", bool, []),
            r"step 's' \(split\): if_true must not be empty",
        ),
        (
            lambda: Cadence("c", Ctx()).split("s", bool, inc, [inc, 1]),  # type: ignore[list-item]
            r"step 's' \(split\), if_false\[1\]: a beat must be callable",
        ),
        (
            lambda: Cadence("c", Ctx()).child("k", "other", lambda p, c: None),  # type: ignore[arg-type]
            r"step 'k' \(child\): expected a Cadence to run as a child, got str",
        ),
        (
            lambda: Cadence("c", Ctx()).child("k", Cadence("o", Ctx()), None),  # type: ignore[arg-type]
            r"step 'k' \(child\): merge must be a function merge\(parent, child\)",
        ),
        (
            lambda: Cadence("c", Ctx()).child("k", Cadence[Ctx]("o"), lambda p, c: None),
            r"step 'k' \(child\): child cadence 'o' has no template context",
        ),
        (
            lambda: Cadence("c", Ctx()).on_error("log"),  # type: ignore[arg-type]
            r"cadence 'c', on_error: the handler must be callable",
        ),
        (
            lambda: Cadence("c", Ctx()).with_hooks(object()),  # type: ignore[arg-type]
            r"cadence 'c', with_hooks: .* has none of the hook methods",
        ),
        (
            lambda: Cadence("c", Ctx()).with_reporter(42),  # type: ignore[arg-type]
            r"cadence 'c', with_reporter: the reporter must be callable",
        ),
        (lambda: beat(name="")(inc), r"@beat: name must be a non-empty string"),
    ],
)
def test_wrong_definitions_fail_at_build_time(build: object, message: str) -> None:
    with pytest.raises(CadenceDefinitionError, match=message):
        build()  # type: ignore[operator]


def test_context_classes_are_checked() -> None:
    class NotADataclass(Context):
        pass

    @dataclass
    class NotFrozen(ImmutableContext):
        x: int = 0

    with pytest.raises(
        CadenceDefinitionError, match="NotADataclass is a Context but not a dataclass"
    ):
        Cadence("c", NotADataclass())
    with pytest.raises(
        CadenceDefinitionError, match=r"NotFrozen is an ImmutableContext but not frozen"
    ):
        Cadence("c", NotFrozen())


def test_run_rejects_a_non_context() -> None:
    with pytest.raises(CadenceDefinitionError, match="run\\(\\) needs a Context, got dict"):
        Cadence("c", Ctx()).run_sync({"n": 1})  # type: ignore[arg-type]


def test_error_tree() -> None:
    assert issubclass(CadenceDefinitionError, CadenceError)
    assert issubclass(BeatError, CadenceError)
    assert issubclass(MergeConflictError, CadenceError)
    assert issubclass(BeatTimeoutError, CadenceError)
    assert issubclass(BeatTimeoutError, TimeoutError)
    assert issubclass(CircuitOpenError, CadenceError)
    assert issubclass(BeatErrorGroup, CadenceError)
    assert issubclass(BeatErrorGroup, ExceptionGroup)


@pytest.mark.parametrize(
    "error",
    [
        BeatError("b", "c"),
        BeatTimeoutError("b", 1.5),
        CircuitOpenError("breaker", 2.0),
        MergeConflictError("c", "s", "f", ["a", "b"]),
        BeatErrorGroup("s", "c", [BeatError("s.a", "c"), BeatError("s.b", "c")]),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_pickle_with_their_attributes(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 # our own object
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert {k: v for k, v in vars(copy).items() if not k.startswith("__")} == {
        k: v for k, v in vars(error).items() if not k.startswith("__")
    }


def test_error_messages_name_what_failed() -> None:
    assert str(BeatError("b", "c")) == "beat 'b' of cadence 'c' failed"
    assert "retry after 2.000s" in str(CircuitOpenError("breaker", 2.0))
    conflict = MergeConflictError("enrich", "fetch", "total", ["a", "b"])
    assert "cadence 'enrich', step 'fetch': beats 'a' and 'b' changed field 'total'" in str(
        conflict
    )
    group = BeatErrorGroup("p", "c", [BeatError("p.a", "c"), BeatError("p.b", "c")])
    assert group.message == "2 beats of step 'p' in cadence 'c' failed: 'p.a', 'p.b'"
    assert (group.step_name, group.cadence_name) == ("p", "c")
