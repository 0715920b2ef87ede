"""The framework-free parts: a context's JSON form and the problem an error answers."""

from __future__ import annotations

import datetime as dt
import enum
import inspect
import json
import math
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import PurePosixPath

import pytest
from pydantic import BaseModel, TypeAdapter

import cadence.integrations
import cadence.integrations.fastapi
import cadence.integrations.flask
from cadence import (
    AtomicDict,
    AtomicList,
    BeatError,
    BeatErrorGroup,
    BeatTimeoutError,
    CircuitOpenError,
    Context,
    MergeConflictError,
)
from cadence.integrations import Problem, UnencodableError, context_to_dict, problem_for
from cadence.integrations._json import dumps
from cadence.integrations._problem import beat_path, factory_problem

IDENT = uuid.UUID(int=2)
PATH = PurePosixPath("/srv/x")


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Point(BaseModel):
    x: int
    y: int


@dataclass
class Inner:
    when: dt.date
    tags: AtomicList[str] = field(default_factory=AtomicList[str])


@dataclass
class Everything(Context):
    text: str = "é"
    number: int = 7
    flag: bool = True
    nothing: None = None
    ratio: float = 0.5
    nan: float = math.nan
    inf: float = math.inf
    items: tuple[int, ...] = (1, 2)
    letters: frozenset[str] = frozenset({"b", "a"})
    mixed: set[object] = field(default_factory=lambda: {1, "a"})
    by_color: dict[Color, int] = field(default_factory=lambda: {Color.RED: 1})
    by_number: dict[int, str] = field(default_factory=lambda: {1: "one"})
    by_id: AtomicDict[uuid.UUID, str] = field(
        default_factory=lambda: AtomicDict({uuid.UUID(int=1): "first"})
    )
    color: Color = Color.RED
    level: Level = Level.HIGH
    at: dt.datetime = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    day: dt.date = dt.date(2026, 1, 2)
    clock: dt.time = dt.time(3, 4)
    wait: dt.timedelta = dt.timedelta(days=1, hours=2, minutes=3, seconds=4.5)
    price: Decimal = Decimal("1.10")
    ident: uuid.UUID = IDENT
    path: PurePosixPath = PATH
    raw: bytes = b"\x00\xff"
    point: Point = field(default_factory=lambda: Point(x=1, y=2))
    inner: Inner = field(default_factory=lambda: Inner(dt.date(2026, 5, 6), AtomicList(["t"])))


def test_every_supported_value_has_its_json_form() -> None:
    answered = context_to_dict(Everything())
    mixed = answered.pop("mixed")  # items that do not sort keep the set's own order
    assert isinstance(mixed, list)
    assert sorted(mixed, key=str) == [1, "a"]
    assert answered == {
        "text": "é",
        "number": 7,
        "flag": True,
        "nothing": None,
        "ratio": 0.5,
        "nan": None,
        "inf": None,
        "items": [1, 2],
        "letters": ["a", "b"],
        "by_color": {"red": 1},
        "by_number": {"1": "one"},
        "by_id": {str(uuid.UUID(int=1)): "first"},
        "color": "red",
        "level": 3,
        "at": "2026-01-02T03:04:05+00:00",
        "day": "2026-01-02",
        "clock": "03:04:00",
        "wait": "P1DT2H3M4.5S",
        "price": "1.10",
        "ident": str(uuid.UUID(int=2)),
        "path": "/srv/x",
        "raw": "AP8=",
        "point": {"x": 1, "y": 2},
        "inner": {"when": "2026-05-06", "tags": ["t"]},
    }
    body = dumps(Everything())
    assert json.loads(body)["text"] == "é"
    assert "é".encode() in body  # UTF-8, not \u escapes
    assert b", " not in body  # compact


@pytest.mark.parametrize(
    "delta",
    [
        dt.timedelta(0),
        dt.timedelta(seconds=1),
        dt.timedelta(minutes=90),
        dt.timedelta(days=2),
        dt.timedelta(days=1, microseconds=5),
        dt.timedelta(seconds=-90),
        dt.timedelta(hours=-25),
    ],
)
def test_durations_are_written_as_pydantic_writes_them(delta: dt.timedelta) -> None:
    @dataclass
    class Waiting(Context):
        wait: dt.timedelta

    expected = json.loads(TypeAdapter(dt.timedelta).dump_json(delta))
    assert context_to_dict(Waiting(delta)) == {"wait": expected}


def test_an_unencodable_value_names_the_cadence_and_field() -> None:
    @dataclass
    class Holder(Context):
        handle: object = field(default_factory=object)

    with pytest.raises(UnencodableError, match=r"^cadence 'c': field 'handle' of Holder holds"):
        context_to_dict(Holder(), "c")
    with pytest.raises(UnencodableError, match="a dict key of type tuple"):
        context_to_dict(Everything(by_number={(1, 2): "x"}))  # type: ignore[dict-item]


# --------------------------------------------------------------------------- problems


def beat_error(beat: str, cadence: str, cause: BaseException) -> BeatError:
    error = BeatError(beat, cadence)
    error.__cause__ = cause
    return error


def test_problem_body_puts_the_rfc_members_first() -> None:
    problem = Problem(418, detail="short and stout", extensions={"status": 1, "extra": True})
    assert list(problem.body()) == ["type", "title", "status", "detail", "extra"]
    assert problem.body()["status"] == 418  # an extension never overrides a member
    assert problem.body()["title"] == "I'm a Teapot"
    assert Problem(599).body()["title"] == "Error"


@pytest.mark.parametrize(
    ("retry_after", "header"), [(0.0, "0"), (0.2, "1"), (1.0, "1"), (29.01, "30")]
)
def test_retry_after_is_whole_seconds_rounded_up(retry_after: float, header: str) -> None:
    error = beat_error("call", "c", CircuitOpenError("b", retry_after))
    problem = problem_for(error, "c")
    assert problem.status == 503
    assert problem.headers == {"Retry-After": header}


def test_beat_path_runs_through_child_cadences() -> None:
    inner = beat_error("charge", "payment", RuntimeError())
    outer = beat_error("payment", "checkout", inner)
    assert beat_path(outer) == "payment.charge"
    # a core that already puts the whole path in beat_name gives the same answer
    full = beat_error("payment.charge", "checkout", beat_error("charge", "payment", ValueError()))
    assert beat_path(full) == "payment.charge"
    assert beat_path(RuntimeError()) is None


def test_the_error_map_matches_by_mro_and_the_outermost_link_first() -> None:
    class DomainError(Exception):
        pass

    class DeclinedError(DomainError):
        pass

    error = beat_error("pay", "c", DeclinedError())
    assert problem_for(error, "c", error_map={DomainError: 402}).status == 402
    assert problem_for(error, "c", error_map={BeatError: 502, DomainError: 402}).status == 502
    mapped = problem_for(
        error, "c", error_map={DeclinedError: lambda exc: Problem(400, detail=type(exc).__name__)}
    )
    assert (mapped.status, mapped.detail) == (400, "DeclinedError")
    assert mapped.extensions == {"cadence": "c", "beat": "pay"}


def test_implicit_exception_contexts_do_not_decide_the_status() -> None:
    try:
        try:
            raise CircuitOpenError("b", 5.0)
        except CircuitOpenError:
            raise RuntimeError("unrelated") from None
    except RuntimeError as exc:
        error = beat_error("x", "c", exc)
    assert problem_for(error, "c").status == 500


def test_groups_agree_or_fall_back_to_500() -> None:
    timeouts = BeatErrorGroup(
        "both",
        "c",
        [
            beat_error("both.a", "c", BeatTimeoutError("a", 1.0)),
            beat_error("both.b", "c", BeatTimeoutError("b", 1.0)),
        ],
    )
    agreed = problem_for(timeouts, "c")
    assert agreed.status == 504
    assert [e["beat"] for e in agreed.extensions["errors"]] == ["both.a", "both.b"]  # type: ignore[index,union-attr]
    mixed = BeatErrorGroup(
        "both",
        "c",
        [
            beat_error("both.a", "c", BeatTimeoutError("a", 1.0)),
            beat_error("both.b", "c", ValueError()),
        ],
    )
    disagreed = problem_for(mixed, "c")
    assert (disagreed.status, disagreed.type) == (500, "urn:cadence:problem:beats-failed")


def test_merge_conflicts_are_server_errors() -> None:
    problem = problem_for(MergeConflictError("c", "both", "status", ["a", "b"]), "c")
    assert (problem.status, problem.type) == (500, "urn:cadence:problem:merge-conflict")
    assert problem.extensions["beat"] == "both"


def test_factory_errors_map_or_propagate() -> None:
    invalid = factory_problem(ValueError("bad"), "c")
    assert invalid is not None
    assert invalid.status == 422
    assert "bad" not in json.dumps(invalid.body())
    assert factory_problem(KeyError("x"), "c") is None  # the framework's handlers take it
    assert factory_problem(KeyError("x"), "c", error_map={LookupError: 404}).status == 404  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "module", [cadence.integrations, cadence.integrations.fastapi, cadence.integrations.flask]
)
def test_public_modules_export_what_they_define(module: object) -> None:
    names = list(module.__all__)  # type: ignore[attr-defined]
    assert len(names) == len(set(names))
    for name in names:
        value = getattr(module, name)
        if inspect.isfunction(value) or inspect.isclass(value):
            assert value.__doc__, f"{name} has no docstring"


def test_a_group_inside_a_child_cadence_answers_like_the_group() -> None:
    group = BeatErrorGroup(
        "fan",
        "child",
        [
            beat_error("fan.a", "child", CircuitOpenError("a", 2.5)),
            beat_error("fan.b", "child", CircuitOpenError("b", 7.1)),
        ],
    )
    nested = beat_error("pay.fan", "parent", group)
    problem = problem_for(nested, "parent")
    assert (problem.status, problem.headers["Retry-After"]) == (503, "8")
    assert [e["beat"] for e in problem.extensions["errors"]] == ["fan.a", "fan.b"]  # type: ignore[index,union-attr]


def test_a_mapped_http_date_retry_after_in_a_group_is_no_crash() -> None:
    group = BeatErrorGroup(
        "fan",
        "c",
        [beat_error("fan.a", "c", KeyError("a")), beat_error("fan.b", "c", KeyError("b"))],
    )
    date = "Wed, 21 Oct 2026 07:28:00 GMT"
    mapping = {KeyError: lambda error: Problem(429, headers={"Retry-After": date})}
    problem = problem_for(group, "c", error_map=mapping)
    assert (problem.status, problem.headers["Retry-After"]) == (429, date)
