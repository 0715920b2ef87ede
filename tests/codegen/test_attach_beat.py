"""AttachBeat: appending `.then(...)` to a cadence chain, exactly, and only once."""

from __future__ import annotations

from codemod_helpers import apply_twice

from cadence.codegen import AttachBeat

HEADER = "from cadence import Cadence\n\nfrom shop.contexts import CheckoutContext\n\n"
WITH_IMPORT = (
    "from cadence import Cadence\n\n"
    "from shop.beats import process_payment\n"
    "from shop.contexts import CheckoutContext\n\n"
)


def make(cadence: str | None = None, line_length: int = 88):
    return lambda: AttachBeat(
        "process_payment",
        "process_payment",
        "shop.beats",
        cadence=cadence,
        line_length=line_length,
        first_party="shop",
    )


def test_short_chain_stays_on_one_line():
    before = HEADER + 'c = Cadence("checkout", CheckoutContext())\n'
    after, notes = apply_twice(make(), before)
    assert after.decode() == WITH_IMPORT + (
        'c = Cadence("checkout", CheckoutContext()).then("process_payment", process_payment)\n'
    )
    assert notes == []


def test_a_line_too_long_becomes_one_call_per_line():
    before = (
        HEADER
        + 'checkout_cadence = Cadence("checkout", CheckoutContext()).then("validate", validate)\n'
    )
    after, _ = apply_twice(make(), before)
    assert after.decode() == WITH_IMPORT + (
        "checkout_cadence = (\n"
        '    Cadence("checkout", CheckoutContext())\n'
        '    .then("validate", validate)\n'
        '    .then("process_payment", process_payment)\n'
        ")\n"
    )


def test_chain_spread_over_lines_gets_one_more_line_and_keeps_comments():
    before = HEADER + (
        "checkout = (  # the checkout\n"
        '    Cadence("checkout", CheckoutContext())  # root\n'
        "    # validate first\n"
        '    .then("validate", validate)\n'
        ")\n"
    )
    after, _ = apply_twice(make(), before)
    assert after.decode() == WITH_IMPORT + (
        "checkout = (  # the checkout\n"
        '    Cadence("checkout", CheckoutContext())  # root\n'
        "    # validate first\n"
        '    .then("validate", validate)\n'
        '    .then("process_payment", process_payment)\n'
        ")\n"
    )


def test_cadence_built_in_a_function_keeps_its_quotes_and_indentation():
    before = (
        "def build() -> Cadence[CheckoutContext]:\n"
        '    """Build it."""\n'
        "    return Cadence('checkout', CheckoutContext()).then('validate', validate).then('reserve', reserve)\n"  # noqa: E501 # the exact line is the point
    )
    after, _ = apply_twice(make(), before)
    assert after.decode() == (
        "from shop.beats import process_payment\n\n\n"
        "def build() -> Cadence[CheckoutContext]:\n"
        '    """Build it."""\n'
        "    return (\n"
        "        Cadence('checkout', CheckoutContext())\n"
        "        .then('validate', validate)\n"
        "        .then('reserve', reserve)\n"
        "        .then('process_payment', process_payment)\n"
        "    )\n"
    )


def test_crlf_chain():
    before = (
        HEADER + 'c = (\n    Cadence("checkout", CheckoutContext())\n    .then("a", a)\n)\n'
    ).replace("\n", "\r\n")
    after, _ = apply_twice(make(), before)
    assert after.decode() == (
        WITH_IMPORT
        + 'c = (\n    Cadence("checkout", CheckoutContext())\n    .then("a", a)\n'
        + '    .then("process_payment", process_payment)\n)\n'
    ).replace("\n", "\r\n")


def test_several_cadences_need_a_name():
    before = HEADER + 'a = Cadence("a", CheckoutContext())\nb = Cadence("b", CheckoutContext())\n'
    after, notes = apply_twice(make(), before)
    assert after.decode() == before
    assert notes == ["2 cadences (a, b); pass --cadence NAME to attach the beat to one"]
    after, notes = apply_twice(make("b"), before)
    assert after.decode() == WITH_IMPORT + (
        'a = Cadence("a", CheckoutContext())\n'
        'b = Cadence("b", CheckoutContext()).then("process_payment", process_payment)\n'
    )


def test_cadence_found_by_variable_name_too():
    before = HEADER + 'checkout_cadence = Cadence("shop-checkout", CheckoutContext())\n'
    after, notes = apply_twice(make("checkout"), before)
    assert b'.then("process_payment", process_payment)' in after
    assert notes == []


def test_unknown_cadence_and_no_cadence_are_notes():
    before = HEADER + 'a = Cadence("a", CheckoutContext())\n'
    after, notes = apply_twice(make("zzz"), before)
    assert after.decode() == before
    assert notes == ["no cadence named 'zzz' (cadences: a); the beat is not attached"]
    after, notes = apply_twice(make(), HEADER)
    assert after.decode() == HEADER
    assert notes == ["no cadence to attach the beat to; add it with .then(...)"]


def test_step_already_there_is_left_alone():
    before = HEADER + 'c = Cadence("c", CheckoutContext()).then("process_payment", other)\n'
    after, notes = apply_twice(make(), before)
    assert after.decode() == before
    assert notes == ["cadence 'c' already has a step 'process_payment'; left as it is"]
