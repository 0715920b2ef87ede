"""A cadence without a template declares its context class, and records it at run time."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cadence import Cadence, CadenceDefinitionError, Context


@dataclass
class Ctx(Context):
    n: int = 0


@dataclass
class Other(Context):
    m: int = 0


class NotAContext:
    pass


def inc(ctx: Ctx) -> None:
    ctx.n += 1


def test_context_type_declares_the_class_without_a_template() -> None:
    cadence = Cadence("c", context_type=Ctx).then("inc", inc)
    assert cadence.context is None
    assert cadence.context_type is Ctx
    assert cadence.run_sync(Ctx(2)).n == 3
    with pytest.raises(CadenceDefinitionError, match="no template context"):
        cadence.run_sync()


def test_a_template_records_its_class() -> None:
    assert Cadence("c", Ctx()).context_type is Ctx
    assert Cadence("c", Ctx()).then("inc", inc).context_type is Ctx


def test_the_subscripted_form_records_the_class_at_run_time() -> None:
    cadence = Cadence[Ctx]("c")  # type: ignore[call-overload]
    assert cadence.context_type is Ctx
    assert cadence.then("inc", inc).context_type is Ctx


def test_an_untyped_bare_cadence_has_no_class() -> None:
    cadence = Cadence("c")  # type: ignore[call-overload]
    assert cadence.context_type is None
    assert cadence.then("inc", inc).run_sync(Ctx()).n == 1


def test_context_type_is_checked() -> None:
    with pytest.raises(CadenceDefinitionError, match="cadence 'c': context_type must be a Context"):
        Cadence("c", context_type=NotAContext)  # type: ignore[type-var]
    with pytest.raises(CadenceDefinitionError, match="not both"):
        Cadence("c", Ctx(), context_type=Ctx)  # type: ignore[call-overload]


def test_a_child_without_a_template_needs_a_context_factory() -> None:
    child = Cadence("child", context_type=Other)
    with pytest.raises(CadenceDefinitionError, match="no template context"):
        Cadence("parent", Ctx()).child("k", child, lambda p, c: None)
    parent = Cadence("parent", Ctx()).child(
        "k", child, lambda p, c: None, context=lambda p: Other(p.n)
    )
    assert parent.run_sync().n == 0
