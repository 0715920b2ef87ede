"""AddContext, AddCadence and AddCadenceTest: exact before/after."""

from __future__ import annotations

from codemod_helpers import apply_twice

from cadence.codegen import (
    AddCadence,
    AddCadenceTest,
    AddContext,
    ContextField,
)

ORDER_FIELDS = (
    ContextField("order_id", "str"),
    ContextField("total", "float", "0.0"),
    ContextField("items", "list[str]", "[]"),
)


def context_command(immutable: bool = False, fields=ORDER_FIELDS):
    return lambda: AddContext(
        "OrderContext",
        fields,
        immutable=immutable,
        description="What the order cadence works on.",
        first_party="shop",
    )


def test_context_with_fields_and_a_default_factory():
    before = '"""Contexts."""\n\nfrom cadence import Context\n'
    after, notes = apply_twice(context_command(), before)
    assert after.decode() == (
        '"""Contexts."""\n\n'
        "from dataclasses import dataclass, field\n\n"
        "from cadence import Context\n\n\n"
        "@dataclass\n"
        "class OrderContext(Context):\n"
        '    """What the order cadence works on."""\n\n'
        "    order_id: str\n"
        "    total: float = 0.0\n"
        "    items: list[str] = field(default_factory=list)\n"
    )
    assert notes == []


def test_immutable_context_in_a_new_file():
    after, _ = apply_twice(context_command(True, (ContextField("region", "str", '"eu"'),)), "")
    assert after.decode() == (
        "from __future__ import annotations\n\n"
        "from dataclasses import dataclass\n\n"
        "from cadence import ImmutableContext\n\n\n"
        "@dataclass(frozen=True)\n"
        "class OrderContext(ImmutableContext):\n"
        '    """What the order cadence works on."""\n\n'
        '    region: str = "eu"\n'
    )


def test_existing_context_is_left_alone():
    before = "class OrderContext:\n    pass\n"
    after, notes = apply_twice(context_command(), before)
    assert after.decode() == before
    assert notes == ["OrderContext already exists; left as it is"]


def cadence_command(arguments: str = ""):
    return lambda: AddCadence(
        "checkout",
        "checkout_cadence",
        "CheckoutContext",
        "shop.contexts",
        template_arguments=arguments,
        first_party="shop",
    )


def test_cadence_definition_merges_imports():
    before = (
        '"""Cadences."""\n\n'
        "from cadence import Cadence\n\n"
        "from shop.beats import greet\n"
        "from shop.contexts import GreetingContext\n\n"
        'greeting_cadence = Cadence("greeting", GreetingContext()).then("greet", greet)\n'
    )
    after, notes = apply_twice(cadence_command('order_id=""'), before)
    assert after.decode() == (
        before.replace("import GreetingContext", "import CheckoutContext, GreetingContext")
        + '\ncheckout_cadence = Cadence("checkout", CheckoutContext(order_id=""))\n'
    )
    assert notes == []


def test_cadence_name_taken_by_another_variable_is_a_note():
    before = 'from cadence import Cadence\n\nother = Cadence("checkout", X())\n'
    after, notes = apply_twice(cadence_command(), before)
    assert after.decode() == before
    assert notes == ["a cadence named 'checkout' already exists; left as it is"]


def test_cadence_test_in_a_new_file():
    after, _ = apply_twice(
        lambda: AddCadenceTest(
            "test_checkout_cadence_runs",
            "checkout_cadence",
            "shop.cadences",
            context_class="CheckoutContext",
            context_module="shop.contexts",
            first_party="shop",
        ),
        "",
    )
    assert after.decode() == (
        '"""Tests of the cadences."""\n\n'
        "from shop.cadences import checkout_cadence\n"
        "from shop.contexts import CheckoutContext\n\n\n"
        "def test_checkout_cadence_runs() -> None:\n"
        '    """The checkout cadence runs on a fresh copy of its template."""\n'
        "    result = checkout_cadence.run_sync()\n"
        "    assert isinstance(result, CheckoutContext)\n"
    )
