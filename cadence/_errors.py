"""The errors cadence raises, one tree rooted at `CadenceError`.

```
Exception
└── CadenceError
    ├── CadenceDefinitionError     a cadence was built wrong (raised by the builder call)
    ├── ContextCopyError           a context field cannot be copied (mark it Shared[...])
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
    "ContextCopyError",
    "MergeConflictError",
]


_E = TypeVar("_E", bound=Exception)
_BaseE = TypeVar("_BaseE", bound=BaseException)


class CadenceError(Exception):
    """Root of every error cadence raises."""


class RunStoppedError(CadenceError):
    """A failure of the run itself, not of a beat: it stops the run as it stands.

    Never wrapped as a beat's failure nor handed to an error handler: a durable run's store
    failing or its cancellation through the store, raised by a commit made inside a `sync`
    or `child` step, reaches the caller as itself.
    """


class CadenceDefinitionError(CadenceError):
    """A cadence was built wrong; raised by the builder call that added the faulty step."""


class ContextCopyError(CadenceError):
    """A context field holds an object that cannot be copied and is not marked shared.

    Fresh runs copy the template, and parallel beats copy what they touch; a resource (a
    client, a session, a lock) must be marked `Shared[...]` to be handed over instead.

    Attributes:
        cadence_name: The cadence that needed the copy.
        step_name: `"template"` for a fresh run's copy, else the parallel beat's path.
        field: The field that cannot be copied.
        field_type: The type of the value it holds.

    """

    def __init__(
        self,
        cadence_name: str,
        step_name: str,
        field: str,
        value: object,
        context_class: type | None = None,
    ) -> None:
        self.cadence_name = cadence_name
        self.step_name = step_name
        self.field = field
        self.field_type = type(value)
        kind = self.field_type
        type_name = f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins.")
        owner = f"{context_class.__name__}." if context_class is not None else ""
        declared = _declared_type(context_class, field) or kind.__qualname__
        where = "template" if step_name == "template" else f"step {step_name!r}"
        super().__init__(
            f"cadence {cadence_name!r}, {where}: field {owner}{field} holds a {type_name}, which "
            f"cannot be copied; if it is a resource (a client, a session, a pool, a lock), mark "
            f"it shared: `{field}: Shared[{declared}]` (from cadence import Shared)"
        )

    def __reduce__(self) -> str | tuple[Any, ...]:  # Any: the signature of object.__reduce__
        return _rebuild_copy_error, (
            self.cadence_name,
            self.step_name,
            self.field,
            self.field_type,
            str(self),
        )


def _declared_type(context_class: type | None, field: str) -> str | None:
    """Return a field's annotation as written, if the class declares it."""
    declared = getattr(context_class, "__dataclass_fields__", {}).get(field)
    if declared is None:
        return None
    annotation = declared.type
    if isinstance(annotation, str):
        return annotation
    module = getattr(annotation, "__module__", "")
    name = getattr(annotation, "__qualname__", None)
    if name is None:
        return repr(annotation)
    return name if module == "builtins" else f"{module}.{name}"


def _rebuild_copy_error(
    cadence_name: str, step_name: str, field: str, field_type: type, message: str
) -> ContextCopyError:
    error = ContextCopyError.__new__(ContextCopyError)
    Exception.__init__(error, message)
    error.cadence_name, error.step_name, error.field = cadence_name, step_name, field
    error.field_type = field_type
    return error


class BeatError(CadenceError):
    """A beat failed while a cadence ran.

    The original exception is chained as `__cause__`, and `str(error)` carries the reason:
    `beat 'pay.charge' of cadence 'checkout' failed: RuntimeError: card declined`.

    Attributes:
        beat_name: What failed, by path: a `then` step's name; `step.beat` for a beat inside
            `sync` or `split`; `step.condition`, `step.context` or `step.merge` for those
            functions; `child_step.beat` for a beat of a child cadence.
        cadence_name: The cadence the beat belongs to (the outermost one, for child beats).

    """

    def __init__(
        self,
        beat_name: str,
        cadence_name: str,
        message: str | None = None,
        *,
        cause: BaseException | None = None,
    ) -> None:
        self.beat_name = beat_name
        self.cadence_name = cadence_name
        if message is None:
            message = f"beat {beat_name!r} of cadence {cadence_name!r} failed"
            if cause is not None:
                message += f": {describe_root(cause)}"
        super().__init__(message)
        if cause is not None:
            self.__cause__ = cause

    def __reduce__(self) -> tuple[type[BeatError], tuple[str, str, str]]:
        return type(self), (self.beat_name, self.cadence_name, str(self))


def root_cause(error: BaseException) -> BaseException:
    """Return the exception at the bottom of `error`'s chain of `BeatError`s."""
    seen: set[int] = set()
    while isinstance(error, BeatError) and error.__cause__ is not None and id(error) not in seen:
        seen.add(id(error))
        error = error.__cause__
    return error


def describe_root(error: BaseException) -> str:
    """Return `Type: message` of the root cause of `error` (just `Type` without a message)."""
    root = root_cause(error)
    text = str(root)
    return f"{type(root).__name__}: {text}" if text else type(root).__name__


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


_STRATEGIES = ("merge=last_write_wins", "merge=smart_merge")


class MergeConflictError(CadenceError):
    """Parallel beats changed fields to different values and the merge strategy refused.

    Attributes:
        cadence_name: The cadence of the parallel step.
        step_name: The parallel step.
        field: The first field the beats disagree on (in declaration order).
        beats: The beats that wrote `field`, in declaration order.
        conflicts: Every refused field, with the beats that wrote it, in declaration order.
        fields: The refused fields, in declaration order.

    """

    def __init__(
        self,
        cadence_name: str,
        step_name: str,
        field: str,
        beats: Sequence[str],
        detail: str = "",
        *,
        refused_by: str | None = None,
        more: Sequence[MergeConflictError] = (),
    ) -> None:
        self.cadence_name = cadence_name
        self.step_name = step_name
        self.field = field
        self.beats = tuple(beats)
        self.detail = detail
        self.refused_by = refused_by
        self.more = tuple(more)
        self.conflicts: dict[str, tuple[str, ...]] = {field: self.beats}
        for other in self.more:
            self.conflicts.setdefault(other.field, other.beats)
        self.fields = tuple(self.conflicts)
        parts = [_conflict_text(self), *(_conflict_text(m) for m in self.more)]
        refusers = {self.refused_by, *(m.refused_by for m in self.more)}
        advice = [s for s in _STRATEGIES if s.removeprefix("merge=") not in refusers]
        options = ", ".join([*advice, "a function of your own"])
        super().__init__(
            f"cadence {cadence_name!r}, step {step_name!r}: {'; '.join(parts)}; write disjoint "
            f"fields, or pass {options}"
        )

    def __reduce__(self) -> str | tuple[Any, ...]:  # Any: the signature of object.__reduce__
        return _rebuild_conflict, (
            self.cadence_name,
            self.step_name,
            self.field,
            self.beats,
            self.detail,
            self.refused_by,
            self.more,
        )


def _rebuild_conflict(  # noqa: PLR0917 # the error's own fields, as pickle passes them
    cadence_name: str,
    step_name: str,
    field: str,
    beats: Sequence[str],
    detail: str,
    refused_by: str | None,
    more: Sequence[MergeConflictError],
) -> MergeConflictError:
    return MergeConflictError(
        cadence_name, step_name, field, beats, detail, refused_by=refused_by, more=more
    )


def _conflict_text(error: MergeConflictError) -> str:
    writers = " and ".join(repr(b) for b in error.beats)
    detail = f" ({error.detail})" if error.detail else ""
    return f"beats {writers} changed field {error.field!r} to different values{detail}"


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
