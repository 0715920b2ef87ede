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

`fallback` is the one decorator that may change a type, honestly: on a plain function
`Callable[P, R]` a default (or handler value) of type `T` gives `Callable[P, R | T]`; on a beat
(`field=` given, or a mapping default written into the context) the beat keeps its type; and a
handler is typed with the beat's own context.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, assert_type

from cadence import (
    Cadence,
    CircuitBreaker,
    Context,
    ImmutableContext,
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


async def recover_later(ctx: Order, error: Exception) -> float:
    return 0.0


def recover_payment(ctx: Payment, error: Exception) -> bool:
    return False


def no_number(ctx: None, error: Exception) -> None:
    return None


async def cached_body(ctx: None, error: Exception) -> str:
    return str(error)


def small_on_error(ctx: Order, error: Exception) -> bool:
    return False


@dataclass(frozen=True)
class Settings(ImmutableContext):
    region: str = "eu"


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


# ----------------------------------------------------------------- fallback: honest types


@fallback(default=0.0, field="total")
def fallback_named_parameter(ctx: Order) -> None: ...


@fallback(handler=recover_later, field="total")
async def fallback_async_handler(ctx: Order, /) -> None: ...


@fallback(default={"status": "unknown"})
def fallback_mapping_sync(ctx: Order, /) -> None: ...


@fallback(default={"region": "us"})
async def fallback_mapping_immutable(ctx: Settings, /) -> Settings:
    return ctx


@fallback(default=None)
def maybe_parse(text: str, /) -> int:
    return int(text)


@fallback(default=None)
async def maybe_fetch(url: str, /) -> bytes:
    return url.encode()


@fallback(default="n/a")
def label(amount: float, /) -> float:
    return amount


@fallback(handler=no_number)
def parse_or_none(text: str, /) -> int:
    return int(text)


@fallback(handler=cached_body)
async def fetch_or_cached(url: str, /) -> bytes:
    return url.encode()


@fallback(default=False)
@beat
async def is_small(ctx: Order, /) -> bool:
    """A split condition whose failure reads as False."""
    return ctx.total < 10


@fallback(handler=small_on_error)
def is_small_sync(ctx: Order, /) -> bool:
    return ctx.total < 10


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


def case_fallback_is_honest() -> None:
    # Beats keep their type: the value goes into the context.
    assert_type(fallback_named_parameter(ctx=Order()), None)  # field=: exactly F
    assert_type(coroutine_signature(fallback_async_handler), Signature[[Order], None])
    assert_type(fallback_mapping_sync, Callable[[Order], None])
    assert_type(coroutine_signature(fallback_mapping_immutable), Signature[[Settings], Settings])
    # Plain functions may return the default instead.
    assert_type(maybe_parse, Callable[[str], int | None])
    assert_type(coroutine_signature(maybe_fetch), Signature[[str], bytes | None])
    assert_type(label, Callable[[float], float | str])
    assert_type(parse_or_none, Callable[[str], int | None])
    assert_type(coroutine_signature(fetch_or_cached), Signature[[str], bytes | str])
    assert_type(fallback(default=-1)(parse), Callable[[str], int])  # int | int is int
    # A context-first function that is not a beat (a condition) widens likewise.
    assert_type(coroutine_signature(is_small), Signature[[Order], bool])
    assert_type(is_small_sync, Callable[[Order], bool])
    # All of them in a cadence.
    cadence = (
        Cadence("order", Order())
        .then("named", fallback_named_parameter)
        .then("async_handler", fallback_async_handler)
        .then("mapping", fallback_mapping_sync)
        .split("small", is_small, [fallback_mapping_sync], [fallback_async_handler])
        .split("small_sync", is_small_sync, fallback_named_parameter)
    )
    assert_type(cadence, Cadence[Order])
    settings = Cadence("settings", Settings()).then("region", fallback_mapping_immutable)
    assert_type(settings, Cadence[Settings])


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


async def case_fallback_results_are_honest() -> None:
    number: int = maybe_parse("1")  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    also: int = parse_or_none("1")  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    (await maybe_fetch("u")).decode()  # type: ignore[union-attr]  # pyright: ignore[reportOptionalMemberAccess]
    body: bytes = await fetch_or_cached("u")  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    amount: float = label(1.0)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    assert_type((number, also, body, amount), tuple[int, int, bytes, float])


def case_fallback_on_a_beat_without_field_widens() -> None:
    # A non-mapping default without field is returned, not written: the beat now returns it.
    widened = fallback(default=0)(plain_sync)
    assert_type(widened, Callable[[Order], int | None])
    Cadence("order", Order()).then("widened", widened)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def case_fallback_handlers_take_the_beats_context() -> None:
    fallback(handler=recover_payment, field="total")(plain_sync)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    fallback(handler=recover, field="charged")(stacked_payment_sync)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    fallback(handler=small_on_error)(parse)  # type: ignore[arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType]
    fallback(handler=no_arguments, field="total")  # type: ignore[arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType]


def case_decorator_arguments() -> None:
    retry(max_attempts="3")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    retry(on=ValueError("x"))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    retry(on_retry=no_arguments)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    timeout("1.0")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    circuit_breaker(exclude=[KeyError])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    beat(name=1)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
