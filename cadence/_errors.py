"""The errors cadence raises, one tree rooted at `CadenceError`.

```
Exception
└── CadenceError
    ├── CadenceDefinitionError     a cadence was built wrong (raised by the builder call)
    ├── BeatError                  a beat failed; the original exception is its __cause__
    ├── BeatErrorGroup             several parallel beats failed (also an ExceptionGroup)
    ├── MergeConflictError         parallel beats changed one field to different values
    ├── BeatTimeoutError           a beat ran past its deadline (also a TimeoutError)
    └── CircuitOpenError           a circuit breaker is open and refused the call
```

`BeatTimeoutError` and `CircuitOpenError` are raised by the resilience decorators; inside a
cadence they reach the caller as the `__cause__` of the failed beat's `BeatError`.

Cancellation is never wrapped: it passes through every layer untouched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BeatError",
    "BeatErrorGroup",
    "BeatTimeoutError",
    "CadenceDefinitionError",
    "CadenceError",
    "CircuitOpenError",
    "MergeConflictError",
]


_E = TypeVar("_E", bound=Exception)
_BaseE = TypeVar("_BaseE", bound=BaseException)


class CadenceError(Exception):
    """Root of every error cadence raises."""


class CadenceDefinitionError(CadenceError):
    """A cadence was built wrong; raised by the builder call that added the faulty step."""


class BeatError(CadenceError):
    """A beat failed while a cadence ran.

    The original exception is chained as `__cause__`.

    Attributes:
        beat_name: What failed: a `then` step's name; `step.beat` for a beat inside `sync` or
            `split`; `step.condition`, `step.context` or `step.merge` for those functions; a
            `child` step's name when its cadence failed (the child's own error is the cause).
        cadence_name: The cadence the beat belongs to.

    """

    def __init__(self, beat_name: str, cadence_name: str, message: str | None = None) -> None:
        self.beat_name = beat_name
        self.cadence_name = cadence_name
        super().__init__(message or f"beat {beat_name!r} of cadence {cadence_name!r} failed")

    def __reduce__(self) -> tuple[type[BeatError], tuple[str, str, str]]:
        return type(self), (self.beat_name, self.cadence_name, str(self))


class BeatTimeoutError(CadenceError, TimeoutError):
    """A beat ran past its deadline; inside a cadence it is the `__cause__` of a `BeatError`.

    Attributes:
        beat_name: The beat (or function) that timed out.
        seconds: The deadline that was exceeded.

    """

    def __init__(self, beat_name: str, seconds: float) -> None:
        self.beat_name = beat_name
        self.seconds = seconds
        super().__init__(f"beat {beat_name!r} timed out after {seconds}s")

    def __reduce__(self) -> tuple[type[BeatTimeoutError], tuple[str, float]]:
        return type(self), (self.beat_name, self.seconds)


class BeatErrorGroup(CadenceError, ExceptionGroup[BeatError]):  # noqa: N818 # it is a group, named like ExceptionGroup
    """Several beats of one parallel step failed; catch it with `except*` or as a `CadenceError`.

    Attributes:
        step_name: The parallel step whose beats failed.
        cadence_name: The cadence the step belongs to.

    """

    step_name: str
    cadence_name: str

    def __new__(
        cls, step_name: str, cadence_name: str, errors: Sequence[BeatError]
    ) -> BeatErrorGroup:
        names = ", ".join(repr(e.beat_name) for e in errors)
        message = (
            f"{len(errors)} beats of step {step_name!r} in cadence {cadence_name!r} failed: {names}"
        )
        self = super().__new__(cls, message, errors)
        self.step_name = step_name
        self.cadence_name = cadence_name
        return self

    def __init__(self, step_name: str, cadence_name: str, errors: Sequence[BeatError]) -> None:
        super().__init__(self.message, errors)

    def __reduce__(self) -> str | tuple[Any, ...]:  # Any: the signature of object.__reduce__
        return type(self), (self.step_name, self.cadence_name, self.exceptions)

    @overload
    def derive(self, excs: Sequence[_E], /) -> ExceptionGroup[_E]: ...
    @overload
    def derive(self, excs: Sequence[_BaseE], /) -> BaseExceptionGroup[_BaseE]: ...
    def derive(self, excs: Sequence[BaseException], /) -> BaseExceptionGroup[BaseException]:
        """Return a group of the same step and cadence holding `excs` (used by `except*`)."""
        if all(isinstance(e, BeatError) for e in excs):
            beat_errors = cast("Sequence[BeatError]", excs)
            return BeatErrorGroup(self.step_name, self.cadence_name, beat_errors)
        return BaseExceptionGroup(self.message, excs)


class MergeConflictError(CadenceError):
    """Parallel beats changed one field to different values and the merge strategy refused.

    Attributes:
        cadence_name: The cadence of the parallel step.
        step_name: The parallel step.
        field: The field the beats disagree on.
        beats: The beats that wrote the field, in declaration order.

    """

    def __init__(
        self,
        cadence_name: str,
        step_name: str,
        field: str,
        beats: Sequence[str],
        detail: str = "",
    ) -> None:
        self.cadence_name = cadence_name
        self.step_name = step_name
        self.field = field
        self.beats = tuple(beats)
        writers = " and ".join(repr(b) for b in self.beats)
        super().__init__(
            f"cadence {cadence_name!r}, step {step_name!r}: beats {writers} changed field "
            f"{field!r} to different values{f' ({detail})' if detail else ''}; write disjoint "
            "fields, or pass merge=last_write_wins, merge=smart_merge or a function of your own"
        )

    def __reduce__(
        self,
    ) -> tuple[type[MergeConflictError], tuple[str, str, str, tuple[str, ...]]]:
        return type(self), (self.cadence_name, self.step_name, self.field, self.beats)


class CircuitOpenError(CadenceError):
    """A circuit breaker is open and refused the call without making it.

    Attributes:
        breaker_name: The breaker that refused.
        retry_after: Seconds until the breaker lets a probe call through.

    """

    def __init__(self, breaker_name: str, retry_after: float) -> None:
        self.breaker_name = breaker_name
        self.retry_after = retry_after
        super().__init__(f"circuit {breaker_name!r} is open; retry after {retry_after:.3f}s")

    def __reduce__(self) -> tuple[type[CircuitOpenError], tuple[str, float]]:
        return type(self), (self.breaker_name, self.retry_after)
