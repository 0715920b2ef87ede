"""The observers' record stack: beats come off it in one step, and never come back."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from cadence import Context
from cadence._events import Frame, Observer, Run, _stack


@dataclass
class Ctx(Context):
    n: int = 0


class Plain(Observer):
    """An observer that only keeps records."""


def kinds(stack: tuple[Run | Frame, ...]) -> list[tuple[str, str]]:
    return [(type(e).__name__, e.cadence if isinstance(e, Run) else e.path) for e in stack]


def test_a_beat_comes_off_the_stack_it_went_on() -> None:
    def scenario() -> None:
        first = Plain()
        ctx = Ctx()
        first.before_cadence("c", ctx)
        before = _stack.get()
        first.before_beat("x", ctx)
        assert kinds(_stack.get()) == [("Run", "c"), ("Frame", "x")]
        first.after_beat("x", ctx, 0.0, None)
        assert _stack.get() == before
        first.after_cadence("c", ctx, 0.0, None)
        assert _stack.get() == ()

    contextvars.Context().run(scenario)


def test_a_frame_removed_below_another_does_not_come_back() -> None:
    def scenario() -> None:
        outer, inner = Plain(), Plain()
        ctx = Ctx()
        outer.before_cadence("outer", ctx)
        outer.before_beat("x", ctx)  # pushed with its token
        inner_ctx = Ctx()
        inner.before_cadence("inner", inner_ctx)
        inner.before_beat("y", inner_ctx)  # its token would restore a stack holding "x"
        outer.after_beat("x", ctx, 0.0, None)  # ends out of order: removed from below
        assert kinds(_stack.get()) == [("Run", "outer"), ("Run", "inner"), ("Frame", "y")]
        inner.after_beat("y", inner_ctx, 0.0, None)
        assert kinds(_stack.get()) == [("Run", "outer"), ("Run", "inner")]

    contextvars.Context().run(scenario)


def test_a_frame_ended_in_another_context_leaves_that_context_alone() -> None:
    observer = Plain()
    ctx = Ctx()

    def start() -> None:
        observer.before_cadence("c", ctx)
        observer.before_beat("x", ctx)

    home = contextvars.Context()
    home.run(start)
    copy = home.copy()
    copy.run(observer.after_beat, "x", ctx, 0.0, None)  # the token is home's: set, not reset
    assert kinds(copy.run(_stack.get)) == [("Run", "c")]
    assert kinds(home.run(_stack.get)) == [("Run", "c"), ("Frame", "x")]
