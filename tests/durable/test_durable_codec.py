"""The durable codec: typed JSON round trips, refused types named by field, corrupted rows."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence import AtomicDict, AtomicList, CadenceDefinitionError, Context, Shared
from cadence.durable import RunDecodeError, StoreError
from cadence.durable._codec import ContextCodec, codec_for


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Address:
    street: str
    zip: str | None = None


@dataclass
class Line:
    sku: str
    price: decimal.Decimal
    address: Address | None = None


@dataclass
class Rich(Context):
    when: datetime.datetime = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    day: datetime.date = datetime.date(2026, 1, 2)
    wait: datetime.timedelta = datetime.timedelta(seconds=90)
    price: decimal.Decimal = decimal.Decimal("19.99")
    id: uuid.UUID = field(default_factory=lambda: uuid.UUID(int=7))
    colour: Colour = Colour.RED
    level: Level = Level.HIGH
    lines: list[Line] = field(default_factory=list)
    by_sku: dict[str, Line] = field(default_factory=dict)
    seen: AtomicList[datetime.datetime] = field(default_factory=AtomicList)
    counts: AtomicDict[str, int] = field(default_factory=AtomicDict)
    maybe: int | None = None
    either: int | str = 0
    mode: Literal["fast", "slow"] = "fast"
    pair: tuple[int, str] = (0, "")
    tags: frozenset[str] = frozenset()
    raw: dict[str, Any] = field(default_factory=dict)
    lock: Shared[threading.Lock] = field(default_factory=threading.Lock)


def test_a_rich_context_round_trips_exactly() -> None:
    codec = codec_for(Rich)
    lock = threading.Lock()
    ctx = Rich(
        when=datetime.datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC),
        price=decimal.Decimal("0.1"),
        id=uuid.uuid4(),
        colour=Colour.BLUE,
        level=Level.LOW,
        lines=[Line("a", decimal.Decimal("1.10"), Address("x", "123"))],
        by_sku={"b": Line("b", decimal.Decimal(2))},
        seen=AtomicList([datetime.datetime(2020, 1, 1)]),  # naive round-trips naive
        counts=AtomicDict(a=1),
        maybe=3,
        either="three",
        mode="slow",
        pair=(1, "one"),
        tags=frozenset({"t"}),
        raw={"nested": [1, "two", None]},
        lock=lock,
    )
    data = codec.encode(ctx, "run")
    assert b"lock" not in data
    fresh_lock = threading.Lock()
    back = codec.decode(data, Rich(lock=fresh_lock), "run")
    assert dataclasses.replace(back, lock=lock) == ctx
    assert back.lock is fresh_lock
    assert type(back.seen) is AtomicList
    assert type(back.counts) is AtomicDict
    assert type(back.lines[0].price) is decimal.Decimal
    assert back.seen.snapshot() == [datetime.datetime(2020, 1, 1)]  # naive as stored
    assert codec.stored_fields == tuple(f.name for f in dataclasses.fields(Rich))[:-1]


class Opaque:
    """Not JSON, and not marked shared."""


@dataclass
class HasResource(Context):
    n: int = 0
    client: Opaque | None = None


@dataclass
class AmbiguousUnion(Context):
    when: datetime.datetime | str = ""


@dataclass
class Nested(Context):
    lines: list[Line] = field(default_factory=list)
    bad: dict[str, list[Opaque]] = field(default_factory=dict)


def test_a_type_that_cannot_be_stored_is_refused_naming_the_field() -> None:
    with pytest.raises(CadenceDefinitionError, match=r"HasResource: field 'client' cannot be"):
        ContextCodec(HasResource)
    with pytest.raises(CadenceDefinitionError, match=r"field 'client'.*mark a resource Shared"):
        ContextCodec(HasResource)
    with pytest.raises(CadenceDefinitionError, match=r"field 'when'.*more than one str-like"):
        ContextCodec(AmbiguousUnion)
    with pytest.raises(CadenceDefinitionError, match=r"field 'bad'.*Opaque"):
        ContextCodec(Nested)


@dataclass
class Loose(Context):
    raw: Any = None


def test_a_value_that_cannot_be_written_names_the_field() -> None:
    codec = codec_for(Loose)
    with pytest.raises(StoreError, match=r"run 'r': field Loose.raw holds a Opaque"):
        codec.encode(Loose(raw=Opaque()), "r")


def test_a_stored_context_that_does_not_decode_names_the_run() -> None:
    codec = codec_for(Rich)
    with pytest.raises(RunDecodeError, match=r"run 'r9': the stored context does not decode"):
        codec.decode(b'{"when": 3}', Rich(), "r9")
    with pytest.raises(RunDecodeError, match="run 'r9'"):
        codec.decode(b"\xff", Rich(), "r9")


# ---------------------------------------------------------------------- generated classes

_KINDS: list[tuple[object, st.SearchStrategy[Any]]] = [
    (int, st.integers(-(2**63), 2**63 - 1)),
    (float, st.floats(allow_nan=False, allow_infinity=False)),  # JSON has no inf or nan
    (str, st.text()),
    (bool, st.booleans()),
    (bytes, st.binary(max_size=20)),
    (
        datetime.datetime,
        st.datetimes(timezones=st.sampled_from([datetime.UTC, None])),
    ),
    (datetime.date, st.dates()),
    (decimal.Decimal, st.decimals(allow_nan=False, allow_infinity=False)),
    (uuid.UUID, st.uuids()),
    (Colour, st.sampled_from(Colour)),
    (Level, st.sampled_from(Level)),
    (int | None, st.none() | st.integers(-5, 5)),
    (int | str, st.integers(-5, 5) | st.text(max_size=5)),
    (list[decimal.Decimal], st.lists(st.decimals(allow_nan=False, allow_infinity=False))),
    (dict[str, datetime.date], st.dictionaries(st.text(max_size=4), st.dates())),
    (
        AtomicList[uuid.UUID],
        st.lists(st.uuids()).map(AtomicList[uuid.UUID]),
    ),
    (
        AtomicDict[str, Colour],
        st.dictionaries(st.text(max_size=4), st.sampled_from(Colour)).map(AtomicDict[str, Colour]),
    ),
    (
        Line,
        st.builds(
            Line,
            st.text(max_size=4),
            st.decimals(allow_nan=False, allow_infinity=False),
            st.none() | st.builds(Address, st.text(max_size=4), st.none() | st.text(max_size=3)),
        ),
    ),
    (Address | None, st.none() | st.builds(Address, st.text(max_size=4))),
]

_counter = iter(range(1_000_000))


@st.composite
def contexts(draw: st.DrawFn) -> Context:
    picks = draw(st.lists(st.sampled_from(range(len(_KINDS))), min_size=1, max_size=6))
    fields = [(f"f{i}", _KINDS[k][0]) for i, k in enumerate(picks)]
    cls = dataclasses.make_dataclass(f"Generated{next(_counter)}", fields, bases=(Context,))
    values = {f"f{i}": draw(_KINDS[k][1]) for i, k in enumerate(picks)}
    return cls(**values)  # type: ignore[no-any-return] # a class made at run time


@settings(max_examples=150, deadline=None)
@given(contexts())
def test_generated_contexts_round_trip(ctx: Context) -> None:
    codec = ContextCodec(type(ctx))
    data = codec.encode(ctx, "gen")
    blank = object.__new__(type(ctx))
    back = codec.decode(data, blank, "gen")
    assert back == ctx
    for name in codec.stored_fields:
        assert type(getattr(back, name)) is type(getattr(ctx, name))
