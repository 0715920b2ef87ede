"""Plain typing of `@beat` and the resilience decorators: each keeps the exact type it is given.

Type-checked only (mypy --strict without the plugin, pyright --strict), never executed. Negative
cases carry a paired ignore: `# type: ignore[<mypy code>]  # pyright: ignore[<rule>]`.

How "exactly the type it was given" is pinned, in a form both checkers accept:

- sync functions take their context positionally (`ctx, /`), so `assert_type(fn, Callable[[Ctx],
  R])` is an exact comparison in both (with a named parameter, both report `def (ctx: Ctx)` as
  different from `Callable[[Ctx], R]`);
- async functions go through `coroutine_signature`, because mypy types a coroutine function as
  returning `Coroutine[Any, Any, R]` and pyright as returning `types.CoroutineType[Any, Any, R]`:
  the helper captures the parameters and `R` exactly and fails if the function is not a
  coroutine function;
- every decorated function is also called with a wrong argument and its result misused (negative
  cases), so a decorator typed to return `Callable[..., Any]` or `Any` would fail the run.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, assert_type

from cadence import (
    Cadence,
    CircuitBreaker,
    Context,
    beat,
    circuit_breaker,
    fallback,
    retry,
    timeout,
)
from cadence.resilience import RetryEvent, get_circuit_breaker

P = ParamSpec("P")
R = TypeVar("R")


class Signature(Generic[P, R]):
    """Stands for the parameters `P` and result `R` of a callable."""


def coroutine_signature(fn: Callable[P, Coroutine[Any, Any, R]], /) -> Signature[P, R]:
    """Capture a coroutine function's parameters and awaited result, exactly."""
    return Signature()


@dataclass
class Order(Context):
    total: float = 0.0
    status: str = "pending"


@dataclass
class Payment(Context):
    charged: bool = False


def on_retry(event: RetryEvent) -> None: ...


def recover(ctx: Order, error: Exception) -> float:
    return 0.0


def no_arguments() -> None: ...


# ----------------------------------------------------------------- undecorated twins


async def plain_async(ctx: Order, /) -> None: ...


def plain_sync(ctx: Order, /) -> None: ...


# ----------------------------------------------------------------- @beat, bare and called


@beat
async def beat_async(ctx: Order, /) -> None: ...


@beat
def beat_sync(ctx: Order, /) -> None: ...


@beat(name="named", blocking=False, description="a cheap sync beat")
def beat_called_sync(ctx: Order, /) -> None: ...


@beat()
async def beat_called_async(ctx: Order, /) -> None: ...


@beat
def beat_named_parameter(ctx: Order) -> Order:
    return ctx


@beat(name="with_options")
def beat_with_options(ctx: Order, *, tag: str = "") -> None: ...


class Service:
    @beat
    async def fetch(self, ctx: Order) -> None:
        """A method: `@beat` looks past `self`."""


# `@beat` rejects a first parameter that is not a `Context`, in every checker (the paired
# ignores sit on the decorator's line, where both checkers report it).


@beat  # type: ignore[type-var]  # pyright: ignore[reportCallIssue, reportArgumentType, reportUntypedFunctionDecorator]
def not_a_beat(text: str) -> None: ...


@beat(name="count")  # type: ignore[type-var]  # pyright: ignore[reportCallIssue, reportArgumentType, reportUntypedFunctionDecorator]
async def not_a_beat_called(n: int) -> None: ...


@beat  # type: ignore[arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType, reportUntypedFunctionDecorator]
def no_context() -> None: ...


# ----------------------------------------------------------------- each decorator alone


@retry(max_attempts=5, delay=0.1, backoff=1.5, max_delay=1.0, jitter=0.1, on_retry=on_retry)
async def retry_async(ctx: Order, /) -> None: ...


@retry(on=(ValueError, KeyError), max_time=3.0)
def retry_sync(ctx: Order, /) -> None: ...


@timeout(1.5)
async def timeout_async(ctx: Order, /) -> None: ...


@timeout(1.5)
def timeout_sync(ctx: Order, /) -> None: ...


@fallback(default=0.0, field="total")
async def fallback_async(ctx: Order, /) -> None: ...


@fallback(handler=recover, field="total", on=ValueError)
def fallback_sync(ctx: Order, /) -> None: ...


@circuit_breaker(failure_threshold=3, recovery_timeout=10.0)
async def breaker_async(ctx: Order, /) -> None: ...


@circuit_breaker(name="plain-typing-shared", exclude=(KeyError,))
def breaker_sync(ctx: Order, /) -> None: ...


# ----------------------------------------------------------------- stacks, in either order


@retry()
@timeout(1.0)
@fallback(default={"status": "failed"})
@circuit_breaker()
@beat
async def stacked_async(ctx: Order, /) -> None: ...


@beat(name="stacked_sync")
@circuit_breaker()
@fallback(default="failed", field="status")
@timeout(1.0)
@retry()
def stacked_sync(ctx: Order, /) -> None: ...


@retry()
@timeout(1.0)
@beat
async def stacked_payment(ctx: Payment, /) -> None: ...


@timeout(1.0)
@beat
def stacked_payment_sync(ctx: Payment) -> None: ...


@retry()
@timeout(1.0)
@beat
async def is_big(ctx: Order) -> bool:
    """A decorated split condition."""
    return ctx.total > 100


# ----------------------------------------------------------------- plain functions and methods


@retry()
@timeout(2.0)
async def fetch(url: str, /) -> bytes:
    return url.encode()


@circuit_breaker()
@fallback(default=-1)
def parse(text: str, /) -> int:
    return int(text)


@retry()
def keyword_only(order_id: str, *, attempt: int = 0) -> str:
    return f"{order_id}:{attempt}"


class Client:
    @retry()
    @timeout(1.0)
    async def get(self, key: str, /) -> bytes:
        return key.encode()

    @circuit_breaker()
    def size(self, key: str, /) -> int:
        return len(key)


# ----------------------------------------------------------------- positive cases


def case_sync_functions_keep_their_type() -> None:
    assert_type(plain_sync, Callable[[Order], None])  # the undecorated twin: the same type
    assert_type(beat_sync, Callable[[Order], None])
    assert_type(beat_called_sync, Callable[[Order], None])
    assert_type(retry_sync, Callable[[Order], None])
    assert_type(timeout_sync, Callable[[Order], None])
    assert_type(fallback_sync, Callable[[Order], None])
    assert_type(breaker_sync, Callable[[Order], None])
    assert_type(stacked_sync, Callable[[Order], None])
    assert_type(stacked_payment_sync(Payment()), None)
    # `@beat` makes the context parameter positional-only (see case_beat_context_is_positional)
    assert_type(beat_named_parameter, Callable[[Order], Order])
    assert_type(beat_with_options(Order(), tag="x"), None)
    assert_type(parse, Callable[[str], int])
    assert_type(keyword_only("a", attempt=1), str)
    assert_type(Client().size, Callable[[str], int])


def case_async_functions_keep_their_type() -> None:
    assert_type(coroutine_signature(plain_async), Signature[[Order], None])  # the twin
    assert_type(coroutine_signature(beat_async), Signature[[Order], None])
    assert_type(coroutine_signature(beat_called_async), Signature[[Order], None])
    assert_type(coroutine_signature(retry_async), Signature[[Order], None])
    assert_type(coroutine_signature(timeout_async), Signature[[Order], None])
    assert_type(coroutine_signature(fallback_async), Signature[[Order], None])
    assert_type(coroutine_signature(breaker_async), Signature[[Order], None])
    assert_type(coroutine_signature(stacked_async), Signature[[Order], None])
    assert_type(coroutine_signature(stacked_payment), Signature[[Payment], None])
    assert_type(coroutine_signature(fetch), Signature[[str], bytes])
    assert_type(coroutine_signature(Client().get), Signature[[str], bytes])


async def case_awaited_results() -> None:
    assert_type(await stacked_async(Order()), None)
    assert_type(await is_big(Order()), bool)
    assert_type(await fetch("https://example.invalid"), bytes)
    assert_type(await Client().get("k"), bytes)


def case_decorator_factories() -> None:
    decorate_retry = retry()
    assert_type(decorate_retry(parse), Callable[[str], int])
    assert_type(timeout(1.0)(parse), Callable[[str], int])
    assert_type(fallback(default=0)(parse), Callable[[str], int])
    assert_type(circuit_breaker()(parse), Callable[[str], int])
    assert_type(beat(plain_sync), Callable[[Order], None])
    assert_type(beat(name="p")(plain_sync), Callable[[Order], None])
    assert_type(coroutine_signature(retry()(fetch)), Signature[[str], bytes])
    breaker = CircuitBreaker("plain-typing-manual", failure_threshold=2)
    assert_type(breaker(parse), Callable[[str], int])
    assert_type(get_circuit_breaker(breaker_sync), CircuitBreaker)
    assert_type(get_circuit_breaker("plain-typing-shared"), CircuitBreaker)


def case_decorated_beats_in_a_cadence() -> None:
    cadence = (
        Cadence("order", Order())
        .then("beat_async", beat_async)
        .then("beat_called_sync", beat_called_sync)
        .then("retry", retry_async)
        .then("timeout", timeout_sync)
        .then("fallback", fallback_async)
        .then("breaker", breaker_sync)
        .then("stacked", stacked_async)
        .sync("parallel", [retry_sync, timeout_async, fallback_sync, breaker_async])
        .split("split", is_big, stacked_sync, [beat_named_parameter])
    )
    assert_type(cadence, Cadence[Order])
    payment = Cadence("payment", Payment()).then("pay", stacked_payment)
    assert_type(payment, Cadence[Payment])


# ----------------------------------------------------------------- negative cases


def case_each_decorator_keeps_the_context() -> None:
    cadence = Cadence("payment", Payment())
    cadence.then("beat", beat_async)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.then("beat", beat_called_sync)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.then("retry", retry_async)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.then("retry", retry_sync)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.then("timeout", timeout_async)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.then("timeout", timeout_sync)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.then("fallback", fallback_async)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.then("fallback", fallback_sync)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.then("breaker", breaker_async)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.then("breaker", breaker_sync)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def case_a_stack_keeps_the_context() -> None:
    cadence = Cadence("order", Order())
    cadence.then("stacked", stacked_payment)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.then("stacked", stacked_payment_sync)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cadence.sync("stacked", [stacked_async, stacked_payment])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    cadence.split("stacked", is_big, stacked_payment)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Cadence("payment", Payment()).then("stacked", stacked_async)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Cadence("payment", Payment()).split("big", is_big, stacked_payment)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def case_beat_context_is_positional() -> None:
    stacked_payment_sync(ctx=Payment())  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    beat_named_parameter(ctx=Order())  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await is_big(ctx=Order())  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    beat_with_options(Order(), tag=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await Service().fetch(Payment())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def case_parameters_are_kept() -> None:
    await stacked_async(Payment())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    stacked_sync(Payment())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    stacked_sync()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    stacked_sync(Order(), Order())  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    stacked_payment_sync(context=Payment())  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await fetch(b"bytes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    parse(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    keyword_only("a", attemp=1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await Client().get(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def case_results_are_kept() -> None:
    text: str = await fetch("u")  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    number: str = parse("1")  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    size: str = Client().size("k")  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    assert_type((text, number, size), tuple[str, str, str])


def case_decorator_arguments() -> None:
    retry(max_attempts="3")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    retry(on=ValueError("x"))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    retry(on_retry=no_arguments)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    timeout("1.0")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    circuit_breaker(exclude=[KeyError])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    beat(name=1)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
