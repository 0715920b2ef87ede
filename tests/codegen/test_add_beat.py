"""AddBeat: exact before/after, and a second run changes nothing."""

from __future__ import annotations

from codemod_helpers import apply_twice

from cadence.codegen import AddBeat, Decorator

RETRY_TIMEOUT = (
    Decorator("retry(max_attempts=3)", "cadence", "retry"),
    Decorator("timeout(seconds=30.0)", "cadence", "timeout"),
    Decorator("beat", "cadence", "beat"),
)

BEAT = '''\
@retry(max_attempts=3)
@timeout(seconds=30.0)
@beat
async def process_payment(ctx: CheckoutContext) -> None:
    """Process payment."""
'''


def make(*, is_async: bool = True, decorators: tuple[Decorator, ...] = RETRY_TIMEOUT):
    return lambda: AddBeat(
        "process_payment",
        "CheckoutContext",
        "shop.contexts",
        is_async=is_async,
        decorators=decorators,
        first_party="shop",
    )


def test_new_empty_file_gets_future_import_and_sections():
    after, notes = apply_twice(make(), "")
    assert after.decode() == (
        "from __future__ import annotations\n\n"
        "from cadence import beat, retry, timeout\n\n"
        "from shop.contexts import CheckoutContext\n\n\n" + BEAT
    )
    assert notes == []


def test_file_without_imports_gets_them_after_its_docstring():
    after, _ = apply_twice(make(), '"""Beats."""\n')
    assert after.decode() == (
        '"""Beats."""\n\n'
        "from cadence import beat, retry, timeout\n\n"
        "from shop.contexts import CheckoutContext\n\n\n" + BEAT
    )


def test_existing_imports_are_merged_in_sorted_order():
    before = '''\
"""Beats."""

from __future__ import annotations

from cadence import beat

from shop.contexts import GreetingContext


@beat
async def greet(ctx: GreetingContext) -> None:
    """Greet."""
'''
    after, _ = apply_twice(make(), before)
    assert after.decode() == (
        before.replace(
            "from cadence import beat\n", "from cadence import beat, retry, timeout\n"
        ).replace("import GreetingContext", "import CheckoutContext, GreetingContext")
        + "\n\n"
        + BEAT
    )


def test_unsorted_imports_get_new_names_at_the_end():
    before = "from cadence import timeout, beat\n"
    after, _ = apply_twice(make(), before)
    assert after.decode().startswith("from cadence import timeout, beat, retry\n")


def test_crlf_file_keeps_crlf_everywhere():
    before = b'"""Beats."""\r\n\r\nfrom cadence import beat\r\n\r\n\r\n@beat\r\ndef a(ctx: C) -> None:\r\n    """A."""\r\n'  # noqa: E501 # the exact line is the point
    after, _ = apply_twice(make(), before)
    assert after == (
        b'"""Beats."""\r\n\r\nfrom cadence import beat, retry, timeout\r\n\r\n'
        b"from shop.contexts import CheckoutContext\r\n\r\n\r\n"
        b'@beat\r\ndef a(ctx: C) -> None:\r\n    """A."""\r\n\r\n\r\n'
        + BEAT.replace("\n", "\r\n").encode()
    )
    assert b"\n" not in after.replace(b"\r\n", b"")


def test_comments_and_encoding_are_kept():
    before = (
        b"# -*- coding: latin-1 -*-\n"
        b'"""Caf\xe9."""\n\n'
        b"import os  # the os\n\n"
        b"X = os.sep  # a separator\n\n"
        b"# trailing comment\n"
    )
    after, _ = apply_twice(make(), before)
    assert after == (
        b"# -*- coding: latin-1 -*-\n"
        b'"""Caf\xe9."""\n\n'
        b"import os  # the os\n\n"
        b"from cadence import beat, retry, timeout\n\n"
        b"from shop.contexts import CheckoutContext\n\n"
        b"X = os.sep  # a separator\n\n\n" + BEAT.encode() + b"\n# trailing comment\n"
    )


def test_sync_beat_without_decorators_but_beat():
    after, _ = apply_twice(
        make(is_async=False, decorators=(Decorator("beat", "cadence", "beat"),)), ""
    )
    assert after.decode().endswith(
        '@beat\ndef process_payment(ctx: CheckoutContext) -> None:\n    """Process payment."""\n'
    )


def test_existing_definition_is_never_rewritten():
    before = "def process_payment(ctx):\n    return 1\n"
    after, notes = apply_twice(make(), before)
    assert after.decode() == before
    assert notes == ["process_payment already exists; left as it is"]


def test_tab_indented_file_gets_tab_indented_beat():
    before = "from cadence import beat\n\n\n@beat\ndef a(ctx: C) -> None:\n\tpass\n"
    after, _ = apply_twice(make(), before)
    assert after.decode().endswith(
        'async def process_payment(ctx: CheckoutContext) -> None:\n\t"""Process payment."""\n'
    )
