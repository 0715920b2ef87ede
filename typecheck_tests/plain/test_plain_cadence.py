"""Plain typing of `Cadence[C]`: construction, builders, running, hooks, reporters, children.

Type-checked only (mypy --strict without the plugin, pyright --strict), never executed: the
cases sit in functions so importing this module runs nothing. Positive cases use `assert_type`;
each negative case is one line carrying a paired ignore, `# type: ignore[<mypy code>]` for mypy
and `# pyright: ignore[<rule>]` for pyright. Both checkers report an ignore that is not needed,
so an expected error that does not happen fails the run.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import assert_type

from cadence import (
    Cadence,
    CadenceError,
    CadenceHooks,
    Context,
    ErrorHandler,
    FieldConflict,
    LoggingHooks,
    Reporter,
    TimingHooks,
    beat,
    last_write_wins,
    retry,
    smart_merge,
    timeout,
)

# ----------------------------------------------------------------- contexts


@dataclass
class Order(Context):
    order_id: str = ""
    total: float = 0.0
    items: list[str] = field(default_factory=list[str])


@dataclass
class PremiumOrder(Order):
    """A subclass context: beats written for `Order` must be accepted over it."""

    tier: int = 1


@dataclass
class Payment(Context):
    charged: bool = False


class NotAContext:
    """Not a `Context`: a cadence over it must be rejected."""


# ----------------------------------------------------------------- beats and callbacks


async def fetch_items(ctx: Order) -> None:
    ctx.items.append("item")


def calculate_total(ctx: Order) -> None:
    ctx.total = float(len(ctx.items))


def replace_order(ctx: Order) -> Order:
    return Order(order_id=ctx.order_id)


async def replace_order_async(ctx: Order) -> Order | None:
    return None


def any_context(ctx: Context) -> None:
    """A beat over the base `Context`: fits every cadence."""


def premium_only(ctx: PremiumOrder) -> None:
    ctx.tier += 1


async def charge(ctx: Payment) -> None:
    ctx.charged = True


def is_big(ctx: Order) -> bool:
    return ctx.total > 100


async def is_big_async(ctx: Order) -> bool:
    return ctx.total > 100


def is_paid(ctx: Payment) -> bool:
    return ctx.charged


def label(ctx: Order) -> str:
    return ctx.order_id


async def label_async(ctx: Order) -> str:
    return ctx.order_id


def merge_payment(parent: Order, child: Payment) -> None:
    parent.total = 0.0 if child.charged else parent.total


async def merge_payment_async(parent: Order, child: Payment) -> Order:
    return parent


def merge_swapped(child: Payment, parent: Order) -> None: ...


def merge_parent_only(parent: Order) -> None: ...


def payment_for(parent: Order) -> Payment:
    return Payment()


def order_for(parent: Order) -> Order:
    return parent


def handle_error(ctx: Order, error: CadenceError) -> None: ...


async def handle_error_async(ctx: Context, error: CadenceError) -> None: ...


def handle_payment_error(ctx: Payment, error: CadenceError) -> None: ...


def report(beat_name: str, elapsed: float, ctx: Order) -> None: ...


async def report_async(beat_name: str, elapsed: float, ctx: Context) -> None: ...


def report_payment(beat_name: str, elapsed: float, ctx: Payment) -> None: ...


def report_two_args(beat_name: str, ctx: Order) -> None: ...


def report_swapped(ctx: Order, beat_name: str, elapsed: float) -> None: ...


def report_returns_int(beat_name: str, elapsed: float, ctx: Order) -> int:
    return 0


def keep_first(conflict: FieldConflict) -> object:
    return conflict


class OrderHooks(CadenceHooks[Order]):
    def after_beat(
        self,
        beat_name: str,
        context: Order,
        duration: float,
        error: BaseException | None = None,
    ) -> None: ...


class PaymentHooks(CadenceHooks[Payment]):
    async def before_beat(self, beat_name: str, context: Payment) -> None: ...


class StructuralOrderHooks:
    """All five hook methods, without subclassing `CadenceHooks`: the protocol is structural."""

    def before_cadence(self, cadence_name: str, context: Order) -> None: ...

    def after_cadence(
        self,
        cadence_name: str,
        context: Order,
        duration: float,
        error: BaseException | None = None,
    ) -> Awaitable[None] | None: ...

    async def before_beat(self, beat_name: str, context: Order) -> None: ...

    def after_beat(
        self,
        beat_name: str,
        context: Order,
        duration: float,
        error: BaseException | None = None,
    ) -> None: ...

    def on_error(self, beat_name: str, context: Order, error: Exception) -> None: ...


@retry(max_attempts=2)
@timeout(1.0)
@beat
async def charge_stacked(ctx: Payment) -> None:
    """A beat for `Payment` under a decorator stack: the stack must not hide its context."""
    ctx.charged = True


@beat(name="charge_named", blocking=False)
@timeout(1.0)
@retry()
def charge_stacked_sync(ctx: Payment) -> None:
    ctx.charged = True


@retry()
@timeout(2.0)
@beat
async def fetch_stacked(ctx: Order) -> None:
    ctx.items.append("stacked")


class OrderCadence(Cadence[Order]):
    """A subclass: the builders return `Self`, so they keep it."""


# ----------------------------------------------------------------- positive cases


def case_construction() -> None:
    assert_type(Cadence("checkout", Order()), Cadence[Order])
    assert_type(Cadence("checkout", PremiumOrder()), Cadence[PremiumOrder])
    declared = Cadence("checkout", context_type=Order)
    assert_type(declared, Cadence[Order])
    assert_type(Cadence("checkout", context=Order()), Cadence[Order])
    assert_type(Cadence("premium", context_type=PremiumOrder), Cadence[PremiumOrder])
    assert_type(declared.name, str)
    assert_type(declared.context, Order | None)
    assert_type(declared.context_type, type[Order] | None)
    assert_type(declared.fresh_context(), Order)
    assert_type(declared.error_handler, ErrorHandler[Order] | None)


def case_builders_keep_the_type() -> None:
    cadence = Cadence("checkout", Order())
    payment = Cadence("payment", Payment())
    assert_type(cadence.then("fetch", fetch_items), Cadence[Order])
    assert_type(cadence.then("total", calculate_total), Cadence[Order])
    assert_type(cadence.then("replace", replace_order), Cadence[Order])
    assert_type(cadence.then("replace_async", replace_order_async), Cadence[Order])
    assert_type(cadence.then("lambda", lambda ctx: ctx.items.clear()), Cadence[Order])
    assert_type(cadence.then("stacked", fetch_stacked), Cadence[Order])
    assert_type(cadence.sync("both", [fetch_items, calculate_total]), Cadence[Order])
    assert_type(cadence.sync("lww", [fetch_items], merge=last_write_wins), Cadence[Order])
    assert_type(cadence.sync("smart", [fetch_items], merge=smart_merge), Cadence[Order])
    assert_type(cadence.sync("own", [fetch_items], merge=keep_first), Cadence[Order])
    assert_type(cadence.split("big", is_big, fetch_items), Cadence[Order])
    assert_type(cadence.split("big2", is_big_async, [fetch_items], calculate_total), Cadence[Order])
    assert_type(cadence.split("big3", is_big, fetch_items, [calculate_total]), Cadence[Order])
    assert_type(cadence.split("big4", lambda ctx: ctx.total > 1, fetch_items), Cadence[Order])
    assert_type(cadence.child("pay", payment, merge_payment), Cadence[Order])
    assert_type(cadence.child("pay2", payment, merge_payment_async), Cadence[Order])
    assert_type(
        cadence.child(
            "pay3", Cadence("p", context_type=Payment), merge_payment, context=payment_for
        ),
        Cadence[Order],
    )
    assert_type(cadence.child("same", cadence, lambda _parent, _child: None), Cadence[Order])
    assert_type(cadence.on_error(handle_error), Cadence[Order])
    assert_type(cadence.on_error(handle_error_async, stop=False), Cadence[Order])
    assert_type(cadence.with_hooks(LoggingHooks()), Cadence[Order])
    assert_type(cadence.with_hooks([LoggingHooks(), TimingHooks()]), Cadence[Order])
    assert_type(cadence.with_hooks(OrderHooks()), Cadence[Order])
    assert_type(cadence.with_hooks(StructuralOrderHooks()), Cadence[Order])
    assert_type(cadence.with_reporter(report), Cadence[Order])
    assert_type(cadence.with_reporter(report_async), Cadence[Order])
    assert_type(cadence.with_reporter(lambda _name, _elapsed, _ctx: None), Cadence[Order])
    chained = (
        cadence.then("a", fetch_items)
        .sync("b", [calculate_total, any_context])
        .split("c", is_big, [fetch_items], calculate_total)
        .child("d", payment, merge_payment)
        .on_error(handle_error)
        .with_hooks(LoggingHooks())
        .with_reporter(report)
    )
    assert_type(chained, Cadence[Order])


def case_builders_return_self() -> None:
    cadence = OrderCadence("checkout", Order())
    assert_type(cadence.then("fetch", fetch_items), OrderCadence)
    assert_type(cadence.sync("both", [fetch_items]), OrderCadence)
    assert_type(cadence.split("big", is_big, fetch_items), OrderCadence)
    assert_type(cadence.child("pay", Cadence("p", Payment()), merge_payment), OrderCadence)
    assert_type(cadence.on_error(handle_error), OrderCadence)
    assert_type(cadence.with_hooks(LoggingHooks()), OrderCadence)
    assert_type(cadence.with_reporter(report), OrderCadence)


def case_base_context_beats_fit_a_subclass_cadence() -> None:
    premium = Cadence("premium", PremiumOrder())
    assert_type(premium.then("fetch", fetch_items), Cadence[PremiumOrder])
    assert_type(premium.then("stacked", fetch_stacked), Cadence[PremiumOrder])
    assert_type(premium.then("any", any_context), Cadence[PremiumOrder])
    assert_type(premium.then("own", premium_only), Cadence[PremiumOrder])
    assert_type(
        premium.sync("mix", [fetch_items, premium_only, any_context]), Cadence[PremiumOrder]
    )
    assert_type(
        premium.split("big", is_big, fetch_items, [premium_only, any_context]),
        Cadence[PremiumOrder],
    )
    assert_type(premium.child("pay", Cadence("p", Payment()), merge_payment), Cadence[PremiumOrder])
    assert_type(premium.on_error(handle_error), Cadence[PremiumOrder])
    assert_type(premium.with_hooks(OrderHooks()), Cadence[PremiumOrder])
    assert_type(premium.with_reporter(report), Cadence[PremiumOrder])
    assert_type(Cadence("any", Payment()).then("any", any_context), Cadence[Payment])


async def case_running() -> None:
    cadence = Cadence("checkout", Order()).then("fetch", fetch_items)
    assert_type(await cadence.run(), Order)
    assert_type(await cadence.run(Order()), Order)
    assert_type(await cadence.run(PremiumOrder()), Order)
    assert_type(cadence.run_sync(), Order)
    assert_type(cadence.run_sync(Order(), backend="trio"), Order)
    assert_type(await OrderCadence("o", Order()).run(), Order)
    premium = await Cadence("premium", PremiumOrder()).then("fetch", fetch_items).run()
    assert_type(premium, PremiumOrder)
    assert_type(premium.tier, int)


def case_aliases() -> None:
    as_reporter: Reporter[Order] = report
    as_handler: ErrorHandler[Order] = handle_error
    assert_type(Cadence("c", Order()).with_reporter(as_reporter), Cadence[Order])
    assert_type(Cadence("c", Order()).on_error(as_handler), Cadence[Order])


# ----------------------------------------------------------------- negative cases


def case_beat_for_another_context() -> None:
    cadence = Cadence("checkout", Order())
    cadence.then("charge", charge)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.sync("both", [fetch_items, charge])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    cadence.split("big", is_big, charge)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.split("big", is_big, [fetch_items, charge])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    cadence.split("big", is_big, fetch_items, charge)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.split("big", is_big, fetch_items, [charge])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    cadence.split("paid", is_paid, fetch_items)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def case_beat_for_a_subclass_context() -> None:
    cadence = Cadence("checkout", Order())
    cadence.then("premium", premium_only)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.sync("premium", [premium_only])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]


def case_beat_returning_the_wrong_type() -> None:
    premium = Cadence("premium", PremiumOrder())
    # Over the subclass, a beat returning the base context could replace it with an `Order`.
    premium.then("replace", replace_order)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Cadence("checkout", Order()).then("label", label)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def case_condition_not_returning_bool() -> None:
    cadence = Cadence("checkout", Order())
    cadence.split("label", label, fetch_items)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.split("label", label_async, fetch_items)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def case_child_merge_and_context() -> None:
    cadence = Cadence("checkout", Order())
    payment = Cadence("payment", Payment())
    cadence.child("pay", payment, merge_swapped)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.child("pay", payment, merge_parent_only)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.child("pay", payment, merge_payment, context=order_for)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def case_not_a_context() -> None:
    Cadence("bad", NotAContext())  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    Cadence("bad", context_type=NotAContext)  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]


def case_no_context_type() -> None:
    """A cadence given neither a template nor a `context_type` is rejected, not `Never`."""
    Cadence("bare")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    Cadence[Order]("bare")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    Cadence("both", Order(), context_type=Order)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]


def case_decorator_stack_keeps_the_context() -> None:
    cadence = Cadence("checkout", Order())
    cadence.then("charge", charge_stacked)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.then("charge", charge_stacked_sync)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.sync("charge", [fetch_stacked, charge_stacked])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]


async def case_run_with_the_wrong_context() -> None:
    cadence = Cadence("checkout", Order())
    await cadence.run(Payment())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.run_sync(Payment())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.run_sync(backend="curio")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def case_hooks_for_another_context() -> None:
    cadence = Cadence("checkout", Order())
    cadence.with_hooks(PaymentHooks())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.with_hooks([LoggingHooks(), PaymentHooks()])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    Cadence("payment", Payment()).with_hooks(OrderHooks())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def case_reporter_with_the_wrong_signature() -> None:
    cadence = Cadence("checkout", Order())
    cadence.with_reporter(report_two_args)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.with_reporter(report_swapped)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.with_reporter(report_payment)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.with_reporter(report_returns_int)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def case_error_handler_for_another_context() -> None:
    Cadence("checkout", Order()).on_error(handle_payment_error)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
