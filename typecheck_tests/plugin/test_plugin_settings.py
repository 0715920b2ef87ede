"""Service settings as an immutable context, type-checked with the cadence_mypy plugin.

Type-checked only, never collected as tests (see test_plugin_checkout.py for the conventions):
correct code at module level, each mistake the plugin reports in a function that is never
called or in a class of its own, silenced by `# type: ignore[<code>]` on the reported line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, assert_type

from cadence import Cadence, Context, ImmutableContext, beat

Region = Literal["eu", "us"]
Tunable = Literal["timeout", "retries"]

# ----------------------------------------------------------------- contexts


@dataclass(frozen=True)
class Settings(ImmutableContext):
    api_url: str
    timeout: float = 30.0
    retries: int = 3
    region: Region = "eu"
    loaded_at: float = field(default=0.0, init=False)


@dataclass(frozen=True, slots=True)
class RegionalSettings(Settings):
    """An indirect `ImmutableContext` subclass, frozen like its base."""

    zone: str = "a"


@dataclass
class Audit(Context):
    entries: list[str] = field(default_factory=list[str])


TIMEOUT_FIELD: Final = "timeout"

# ----------------------------------------------------------------- beats


@beat
def tighten(ctx: Settings) -> Settings:
    return ctx.with_field("timeout", 5.0).with_fields(retries=1, region="us")


@beat(name="relax", blocking=False)
def relax(ctx: Settings) -> Settings:
    return ctx.with_field(TIMEOUT_FIELD, 60)  # an int is a float


def tune(ctx: Settings, name: Tunable, value: int) -> Settings:
    """Every member of a `Literal` union is checked: both fields take an int."""
    return ctx.with_field(name, value)


def set_any(ctx: Settings, name: str, value: object) -> Settings:
    """A plain `str` name is checked at run time, not by the plugin."""
    return ctx.with_field(name, value)


def move(ctx: RegionalSettings, region: Region) -> RegionalSettings:
    return ctx.with_fields(region=region, zone="b")


settings_flow = (
    Cadence("settings", Settings(api_url="https://api.example.com"))
    .then("tighten", tighten)
    .then("relax", relax)
)

assert_type(settings_flow, Cadence[Settings])


def check_types(ctx: Settings, regional: RegionalSettings) -> None:
    assert_type(ctx.with_field("timeout", 1.0), Settings)
    assert_type(ctx.with_fields(retries=2), Settings)
    assert_type(regional.with_field("zone", "c"), RegionalSettings)
    assert_type(tune(ctx, "retries", 5), Settings)
    assert_type(tighten(ctx), Settings)
    assert_type(relax(ctx), Settings)


# ----------------------------------------------------------------- mistakes the plugin reports


def wrong_fields(ctx: Settings, name: Literal["timeout", "retry"]) -> None:
    ctx.with_field("timout", 5.0)  # type: ignore[cadence-field]
    ctx.with_field("retries", "3")  # type: ignore[cadence-field]
    ctx.with_field("loaded_at", 1.0)  # type: ignore[cadence-field]
    ctx.with_field(name, 1)  # type: ignore[cadence-field]
    ctx.with_fields(retries=3, regoin="us")  # type: ignore[cadence-field]
    ctx.with_fields(region="asia")  # type: ignore[cadence-field]


class Draft(Context):  # type: ignore[cadence-dataclass]
    note: str = ""


@dataclass
class MutableSettings(ImmutableContext):  # type: ignore[cadence-dataclass]
    api_url: str = ""


class DerivedAudit(Audit):  # type: ignore[cadence-dataclass]
    """Indirect subclasses must be dataclasses too."""


def beats_over_non_contexts() -> None:
    """Reported on the decorator's line."""

    # mypy rejects these itself (`beat` binds the first parameter to a Context type variable);
    # the plugin's `cadence-beat` note follows its error and goes with its ignore.
    @beat  # type: ignore[type-var]
    def count(n: int) -> None: ...

    @beat(name="label")  # type: ignore[type-var]
    def label(text: str) -> None: ...

    @beat  # type: ignore[arg-type]
    def no_context() -> None: ...

    # mypy (and pyright) take this for a method, `(self, ctx)`: accepted.
    @beat
    def context_second(n: int, ctx: Audit) -> None: ...


def immutable_beats_returning_none() -> None:
    """A beat over an ImmutableContext must return the new context; mypy accepts None."""

    @beat  # reported where it is used, below
    def drop(ctx: Settings) -> None:
        ctx.with_field("timeout", 1.0)

    def drop_plain(ctx: Settings) -> None:
        ctx.with_field("timeout", 1.0)

    async def drop_async(ctx: Settings) -> None:
        ctx.with_fields(retries=1)

    def maybe(ctx: Settings) -> Settings | None:
        return None

    base = Cadence("settings", Settings(api_url="u"))
    base.then("drop", drop_plain)  # type: ignore[cadence-immutable]
    base.then("drop_marked", drop)  # type: ignore[cadence-immutable]
    base.sync("both", [tighten, drop_async])  # type: ignore[cadence-immutable]
    base.then("maybe", maybe).then("tighten", tighten)
