"""The observers' records: a run holds its beat; parallel beats go on their own context's stack.

A beat that comes off the stack never comes back, and a decorator's notice reaches the beat it
was made in, in every context that beat's code runs in.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from cadence import Context
from cadence._events import Frame, Observer, Run, _open_frames, observed


@dataclass
class Ctx(Context):
    n: int = 0


class Plain(Observer):
    """An observer that only keeps records."""


def kinds(stack: tuple[Run | Frame, ...]) -> list[tuple[str, str]]:
    return [(type(e).__name__, e.cadence if isinstance(e, Run) else e.path) for e in stack]


def paths() -> list[str]:
    return [frame.path for frame in _open_frames()]


def test_the_run_holds_its_beat_and_lets_go_of_it() -> None:
    def scenario() -> None:
        first = Plain()
        ctx = Ctx()
        first.before_cadence("c", ctx)
        before = observed.get()
        first.before_beat("x", ctx)
        assert observed.get() is before  # no context variable was set
        assert paths() == ["x"]
        first.after_beat("x", ctx, 0.0, None)
        assert paths() == []
        first.after_cadence("c", ctx, 0.0, None)
        assert observed.get() == ()

    contextvars.Context().run(scenario)


def test_a_parallel_beat_goes_on_its_own_stack_and_each_sees_its_own() -> None:
    observer = Plain()
    ctx, left_ctx, right_ctx = Ctx(), Ctx(), Ctx()
    home = contextvars.Context()
    home.run(observer.before_cadence, "c", ctx)
    left, right = home.copy(), home.copy()
    left.run(observer.before_beat, "s.a", left_ctx)  # takes the run's slot
    right.run(observer.before_beat, "s.b", right_ctx)  # the slot is taken: pushed
    assert kinds(left.run(observed.get)) == [("Run", "c")]
    assert kinds(right.run(observed.get)) == [("Run", "c"), ("Frame", "s.b")]
    assert left.run(paths) == ["s.a"]
    assert right.run(paths) == ["s.b"]
    right.run(observer.after_beat, "s.b", right_ctx, 0.0, None)
    assert kinds(right.run(observed.get)) == [("Run", "c")]
    assert left.run(paths) == ["s.a"]
    left.run(observer.after_beat, "s.a", left_ctx, 0.0, None)
    assert left.run(paths) == []


def test_two_observers_of_one_run_both_hold_the_beat() -> None:
    def scenario() -> None:
        first, second = Plain(), Plain()
        ctx = Ctx()
        first.before_cadence("c", ctx)
        second.before_cadence("c", ctx)
        first.before_beat("x", ctx)
        second.before_beat("x", ctx)
        assert kinds(observed.get()) == [("Run", "c"), ("Run", "c")]
        assert [(f.owner, f.path) for f in _open_frames()] == [(second, "x"), (first, "x")]
        second.after_beat("x", ctx, 0.0, None)
        first.after_beat("x", ctx, 0.0, None)
        assert _open_frames() == []

    contextvars.Context().run(scenario)


def test_a_nested_run_hides_the_outer_beat_of_the_same_observer() -> None:
    def scenario() -> None:
        observer = Plain()
        outer_ctx, inner_ctx = Ctx(), Ctx()
        observer.before_cadence("outer", outer_ctx)
        observer.before_beat("x", outer_ctx)
        observer.before_cadence("inner", inner_ctx)
        assert paths() == []  # between the inner run's beats: not the outer beat's notice
        observer.before_beat("y", inner_ctx)
        assert paths() == ["y"]
        observer.after_beat("y", inner_ctx, 0.0, None)
        observer.after_cadence("inner", inner_ctx, 0.0, None)
        assert paths() == ["x"]

    contextvars.Context().run(scenario)


def test_a_frame_removed_below_another_does_not_come_back() -> None:
    def scenario() -> None:
        outer, inner = Plain(), Plain()
        ctx = Ctx()
        outer.before_cadence("outer", ctx)
        outer.before_beat("w", ctx)  # held by the run: the next of its beats is pushed
        outer.before_beat("x", ctx)  # pushed with its token
        inner_ctx = Ctx()
        inner.before_cadence("inner", inner_ctx)
        inner.before_beat("y", inner_ctx)  # held by the inner run
        inner.before_beat("z", inner_ctx)  # pushed: its token would restore a stack with "x"
        outer.after_beat("x", ctx, 0.0, None)  # ends out of order: removed from below
        assert kinds(observed.get()) == [("Run", "outer"), ("Run", "inner"), ("Frame", "z")]
        inner.after_beat("z", inner_ctx, 0.0, None)
        assert kinds(observed.get()) == [("Run", "outer"), ("Run", "inner")]

    contextvars.Context().run(scenario)


def test_a_frame_ended_in_another_context_leaves_that_context_alone() -> None:
    observer = Plain()
    ctx = Ctx()

    def start() -> None:
        observer.before_cadence("c", ctx)
        observer.before_beat("w", ctx)  # held by the run
        observer.before_beat("x", ctx)  # pushed

    home = contextvars.Context()
    home.run(start)
    copy = home.copy()
    copy.run(observer.after_beat, "x", ctx, 0.0, None)  # the token is home's: set, not reset
    assert kinds(copy.run(observed.get)) == [("Run", "c")]
    assert kinds(home.run(observed.get)) == [("Run", "c"), ("Frame", "x")]
