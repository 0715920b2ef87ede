"""The README's Quick Start, Core Concepts, Context Management and Error Handling examples."""

from __future__ import annotations

import logging
import runpy
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cadence import (
    AtomicDict,
    AtomicList,
    BeatError,
    Cadence,
    CadenceError,
    Context,
    ImmutableContext,
    beat,
)

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- Quick Start


@dataclass
class Item:
    price: float


class FakeDb:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def get_items(self, order_id: str) -> list[Item]:
        self.asked.append(order_id)
        return [Item(10.0), Item(5.5)]


class FakePayments:
    def __init__(self) -> None:
        self.charged: list[tuple[str, float]] = []

    async def charge(self, order_id: str, amount: float) -> None:
        self.charged.append((order_id, amount))


db = FakeDb()
payment_service = FakePayments()


@dataclass
class OrderContext(Context):
    order_id: str
    items: list = None  # type: ignore[type-arg,assignment] # the README's own declaration
    total: float = 0.0
    status: str = "pending"


@beat
async def fetch_items(ctx: OrderContext):
    ctx.items = await db.get_items(ctx.order_id)


@beat
async def calculate_total(ctx: OrderContext):
    ctx.total = sum(item.price for item in ctx.items)


@beat
async def process_payment(ctx: OrderContext):
    await payment_service.charge(ctx.order_id, ctx.total)
    ctx.status = "paid"


checkout = (
    Cadence("checkout", OrderContext(order_id="ORD-123"))
    .then("fetch_items", fetch_items)
    .then("calculate_total", calculate_total)
    .then("process_payment", process_payment)
)


@pytest.mark.anyio
async def test_quick_start_runs_on_a_fresh_copy_of_the_template() -> None:
    payment_service.charged.clear()
    result = await checkout.run()
    assert f"Order {result.order_id}: {result.status}" == "Order ORD-123: paid"
    assert result.total == 15.5
    assert payment_service.charged == [("ORD-123", 15.5)]
    template = checkout.context
    assert template is not None
    assert template is not result
    assert (template.status, template.items, template.total) == ("pending", None, 0.0)


def test_quick_start_run_sync_on_both_backends() -> None:
    assert checkout.run_sync().status == "paid"
    assert checkout.run_sync(backend="trio").status == "paid"


def test_quick_start_example_program_prints_the_final_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "Order ORD-123: paid" in out
    assert "total=14.75" in out
    assert "status='paid'" in out


@pytest.mark.anyio
async def test_beat_leaves_the_function_unchanged() -> None:
    async def plain(ctx: OrderContext) -> None:
        ctx.status = "x"

    # `@beat` marks a copy: the function itself stays a plain, unmarked function.
    marked = beat(plain)
    named = beat(name="renamed")(plain)
    assert marked is not plain
    assert named is not plain
    assert not hasattr(plain, "__cadence_beat__")
    ctx = OrderContext("o")
    await plain(ctx)
    assert ctx.status == "x"
    ctx = OrderContext("o")
    await named(ctx)
    assert ctx.status == "x"


# --------------------------------------------------------------------------- Core Concepts


@dataclass
class MyContext(Context):
    trail: list[str] = field(default_factory=list)


async def do_first(ctx: MyContext) -> None:
    ctx.trail.append("first")


def do_second(ctx: MyContext) -> None:  # a sync beat: it runs in a worker thread
    ctx.trail.append("second")


async def do_third(ctx: MyContext) -> None:
    ctx.trail.append("third")


@pytest.mark.anyio
async def test_sequential_beats_run_in_order() -> None:
    cadence = (
        Cadence("process", MyContext())
        .then("beat1", do_first)
        .then("beat2", do_second)
        .then("beat3", do_third)
    )
    assert (await cadence.run()).trail == ["first", "second", "third"]


@dataclass
class UserContext(Context):
    user_id: str
    profile: dict[str, str] = field(default_factory=dict)
    preferences: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    summary: str = ""


async def fetch_profile(ctx: UserContext) -> None:
    ctx.profile = {"name": f"user {ctx.user_id}"}


async def fetch_preferences(ctx: UserContext) -> None:
    ctx.preferences.append("dark-mode")


def fetch_history(ctx: UserContext) -> None:
    ctx.history = ["order-1", "order-2"]


async def combine_data(ctx: UserContext) -> None:
    ctx.summary = f"{ctx.profile['name']}: {len(ctx.preferences)} prefs, {len(ctx.history)} orders"


@pytest.mark.anyio
async def test_parallel_execution_merges_each_beats_changes() -> None:
    cadence = (
        Cadence("enrich", UserContext(user_id="123"))
        .sync(
            "fetch_data",
            [
                fetch_profile,
                fetch_preferences,
                fetch_history,
            ],
        )
        .then("merge_results", combine_data)
    )
    result = await cadence.run()
    assert result.profile == {"name": "user 123"}
    assert result.preferences == ["dark-mode"]
    assert result.history == ["order-1", "order-2"]
    assert result.summary == "user 123: 1 prefs, 2 orders"


@dataclass
class RoutedOrder(Context):
    premium: bool = False
    trail: list[str] = field(default_factory=list)


async def validate_order(ctx: RoutedOrder) -> None:
    ctx.trail.append("validate")


def is_premium_customer(ctx: RoutedOrder) -> bool:
    return ctx.premium


async def priority_processing(ctx: RoutedOrder) -> None:
    ctx.trail.append("priority")


async def express_shipping(ctx: RoutedOrder) -> None:
    ctx.trail.append("express")


async def standard_processing(ctx: RoutedOrder) -> None:
    ctx.trail.append("standard")


async def regular_shipping(ctx: RoutedOrder) -> None:
    ctx.trail.append("regular")


async def send_confirmation(ctx: RoutedOrder) -> None:
    ctx.trail.append("confirm")


ROUTED = (
    Cadence("order", RoutedOrder())
    .then("validate", validate_order)
    .split(
        "route",
        condition=is_premium_customer,
        if_true=[priority_processing, express_shipping],
        if_false=[standard_processing, regular_shipping],
    )
    .then("confirm", send_confirmation)
)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("premium", "trail"),
    [
        (True, ["validate", "priority", "express", "confirm"]),
        (False, ["validate", "standard", "regular", "confirm"]),
    ],
)
async def test_conditional_branching_takes_one_branch(premium: bool, trail: list[str]) -> None:
    assert (await ROUTED.run(RoutedOrder(premium=premium))).trail == trail


@pytest.mark.anyio
async def test_split_with_async_condition_and_no_false_branch() -> None:
    async def never(ctx: RoutedOrder) -> bool:
        return False

    cadence = Cadence("order", RoutedOrder()).split("maybe", never, priority_processing)
    assert (await cadence.run()).trail == []


@dataclass
class PaymentContext(Context):
    amount: float = 0.0
    charged: bool = False


@dataclass
class ShippingContext(Context):
    address: str = "unknown"
    label: str = ""


@dataclass
class CheckoutContext(Context):
    amount: float = 0.0
    address: str = ""
    paid: bool = False
    label: str = ""
    done: bool = False


async def prepare_order(ctx: CheckoutContext) -> None:
    ctx.amount = 42.0
    ctx.address = "1 Main St"


async def charge(ctx: PaymentContext) -> None:
    ctx.charged = ctx.amount > 0


def print_label(ctx: ShippingContext) -> None:
    ctx.label = f"SHIP TO {ctx.address}"


def merge_payment(parent: CheckoutContext, child: PaymentContext) -> None:
    parent.paid = child.charged


async def merge_shipping(parent: CheckoutContext, child: ShippingContext) -> None:
    parent.label = child.label


async def finalize_order(ctx: CheckoutContext) -> None:
    ctx.done = ctx.paid and bool(ctx.label)


@pytest.mark.anyio
async def test_child_cadences_run_and_merge_into_the_parent() -> None:
    payment_cadence = Cadence("payment", PaymentContext()).then("charge", charge)
    shipping_cadence = Cadence("shipping", ShippingContext()).then("label", print_label)
    checkout_cadence = (
        Cadence("checkout", CheckoutContext())
        .then("prepare", prepare_order)
        .child(
            "process_payment",
            payment_cadence,
            merge_payment,
            context=lambda parent: PaymentContext(amount=parent.amount),
        )
        .child(
            "arrange_shipping",
            shipping_cadence,
            merge_shipping,
            context=lambda parent: ShippingContext(address=parent.address),
        )
        .then("complete", finalize_order)
    )
    result = await checkout_cadence.run()
    assert result.paid
    assert result.label == "SHIP TO 1 Main St"
    assert result.done


@pytest.mark.anyio
async def test_child_without_context_function_runs_on_its_template() -> None:
    shipping = Cadence("shipping", ShippingContext(address="depot")).then("label", print_label)
    cadence = Cadence("checkout", CheckoutContext()).child("ship", shipping, merge_shipping)
    assert (await cadence.run()).label == "SHIP TO depot"
    assert shipping.context is not None
    assert shipping.context.label == ""


# --------------------------------------------------------------------------- Context Management


@dataclass(frozen=True)
class Config(ImmutableContext):
    api_key: str
    timeout: int = 30


def test_immutable_context_with_field_returns_a_new_object() -> None:
    config = Config(api_key="k")
    new_config = config.with_field("timeout", 60)
    assert new_config == Config(api_key="k", timeout=60)
    assert config.timeout == 30
    assert new_config is not config


def test_immutable_context_unknown_field_is_a_clear_error() -> None:
    with pytest.raises(
        AttributeError, match=r"Config has no field 'timout'; did you mean 'timeout'"
    ):
        Config(api_key="k").with_field("timout", 60)


@pytest.mark.anyio
async def test_beats_over_immutable_contexts_return_the_new_context() -> None:
    async def longer(ctx: Config) -> Config:
        return ctx.with_field("timeout", ctx.timeout * 2)

    def rekey(ctx: Config) -> Config:
        return ctx.with_field("api_key", ctx.api_key.upper())

    template = Config(api_key="k")
    cadence = Cadence("config", template).then("longer", longer).then("rekey", rekey)
    assert await cadence.run() == Config(api_key="K", timeout=60)
    assert template == Config(api_key="k")


@dataclass
class AggregatorContext(Context):
    results: AtomicList = None  # type: ignore[type-arg,assignment] # the README's own declaration
    cache: AtomicDict = None  # type: ignore[type-arg,assignment] # the README's own declaration

    def __post_init__(self):
        super().__post_init__()
        self.results = AtomicList()
        self.cache = AtomicDict()


@pytest.mark.anyio
async def test_atomic_fields_collect_from_parallel_beats() -> None:
    async def first(ctx: AggregatorContext) -> None:
        ctx.results.append("first")
        ctx.cache["first"] = 1

    def second(ctx: AggregatorContext) -> None:
        ctx.results.append("second")
        ctx.cache["second"] = 2

    cadence = Cadence("aggregate", AggregatorContext()).sync("gather", [first, second])
    result = await cadence.run()
    assert sorted(result.results) == ["first", "second"]
    assert result.cache == {"first": 1, "second": 2}
    template = cadence.context
    assert template is not None
    assert template.results == []


# --------------------------------------------------------------------------- Error Handling


@dataclass
class HandledContext(Context):
    errors: list[str] = field(default_factory=list)
    cleaned: bool = False


logger = logging.getLogger("tests.spec")


async def risky_operation(ctx: HandledContext) -> None:
    raise ValueError("payment gateway said no")


async def cleanup(ctx: HandledContext) -> None:
    ctx.cleaned = True


async def handle_error(context, error):
    if isinstance(error, BeatError):
        logger.error(f"Beat {error.beat_name} failed: {error}")  # noqa: G004 # the README's own line
        context.errors.append(str(error))


@pytest.mark.anyio
async def test_error_handling_continues_on_error(caplog: pytest.LogCaptureFixture) -> None:
    cadence = (
        Cadence("handled", HandledContext())
        .then("risky", risky_operation)
        .on_error(handle_error, stop=False)  # Continue on error
        .then("cleanup", cleanup)
    )
    with caplog.at_level(logging.ERROR, logger="tests.spec"):
        result = await cadence.run()
    assert result.cleaned
    assert result.errors == [
        "beat 'risky' of cadence 'handled' failed: ValueError: payment gateway said no"
    ]
    assert "Beat risky failed" in caplog.text


@pytest.mark.anyio
async def test_error_handling_stops_by_default_and_chains_the_cause() -> None:
    seen: list[CadenceError] = []
    cadence = (
        Cadence("handled", HandledContext())
        .then("risky", risky_operation)
        .on_error(lambda ctx, error: seen.append(error))
        .then("cleanup", cleanup)
    )
    ctx = HandledContext()
    with pytest.raises(BeatError) as info:
        await cadence.run(ctx)
    assert info.value.beat_name == "risky"
    assert info.value.cadence_name == "handled"
    assert isinstance(info.value.__cause__, ValueError)
    assert seen == [info.value]
    assert not ctx.cleaned
