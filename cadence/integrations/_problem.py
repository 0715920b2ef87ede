"""Errors as RFC 9457 problem details: which status a cadence error answers, and its body.

Framework-free: `fastapi.py` and `flask.py` turn a `Problem` into their own response object.

The default mapping walks the error's cause chain (outermost first):

| found in the chain                | status | `type`                                  |
|-----------------------------------|--------|-----------------------------------------|
| an `error_map` entry (by MRO)     | yours  | yours, or `about:blank`                 |
| the framework's HTTP exception    | its    | `about:blank` (its detail is for users) |
| `CircuitOpenError`                | 503    | `urn:cadence:problem:circuit-open`, Retry-After |
| `BeatTimeoutError`                | 504    | `urn:cadence:problem:beat-timeout`      |
| `MergeConflictError`              | 500    | `urn:cadence:problem:merge-conflict`    |
| any other `CadenceError`          | 500    | `urn:cadence:problem:beat-failed`       |

A durable run's own error (raised by the run, not by a beat, which would be the beat's failure)
is looked at before the chain (after `error_map` and the framework's HTTP exceptions):
`PlanChangedError`, `RunCancelledError` and `RunIdTakenError` answer 409
(`urn:cadence:problem:plan-changed`, `run-cancelled`, `run-id-taken`), `StoreError`
(`LeaseLostError` included) 503 (`store-failed`: a retry resumes the run), `RunFailedError` 500
(`run-failed`: it failed in the request this one waited for; the body names its `step`),
`RunEncodeError` 500 (`run-unencodable`), `RunDecodeError` 500 (`run-undecodable`); the body
carries the `run_id`.

A `BeatErrorGroup` maps each of its errors; when they agree on the status the group answers it,
otherwise 500; the body lists each failed beat under `errors`. A context factory's `ValueError` or
`TypeError` is 422 (`urn:cadence:problem:invalid-input`).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import TypeAlias

from cadence._errors import (
    BeatError,
    BeatErrorGroup,
    BeatTimeoutError,
    CircuitOpenError,
    MergeConflictError,
)

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "ErrorMap",
    "ErrorMapper",
    "HttpTranslator",
    "Problem",
    "beat_path",
    "factory_problem",
    "log_problem",
    "problem_for",
    "problem_schema",
    "server_problem",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE = "urn:cadence:problem:"

logger = logging.getLogger("cadence.integrations")


@dataclass(frozen=True)
class Problem:
    """An RFC 9457 problem: the status, headers and body of an error response.

    Args:
        status: The HTTP status code.
        title: A short summary of the problem type; default: the status's reason phrase.
        detail: What happened this time, for the client (never an exception message unless
            the route's debug flag is set).
        type: A URI naming the problem type (`about:blank` when the status says it all).
        instance: A URI naming this occurrence, if you have one.
        headers: Extra response headers (`Retry-After` for an open circuit).
        extensions: More members of the body (`cadence`, `beat`, `errors`, ...).

    """

    status: int
    title: str | None = None
    detail: str | None = None
    type: str = "about:blank"
    instance: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    extensions: Mapping[str, object] = field(default_factory=dict[str, object])

    def body(self) -> dict[str, object]:
        """Return the JSON body: the RFC's members first, then the extensions."""
        out: dict[str, object] = {
            "type": self.type,
            "title": self.title or _phrase(self.status),
            "status": self.status,
        }
        if self.detail is not None:
            out["detail"] = self.detail
        if self.instance is not None:
            out["instance"] = self.instance
        for key, value in self.extensions.items():
            out.setdefault(key, value)
        return out

    def to_json(self) -> str:
        """Return the body as compact JSON (values with no JSON form written as text)."""
        return json.dumps(self.body(), ensure_ascii=False, separators=(",", ":"), default=str)


ErrorMapper: TypeAlias = Callable[[BaseException], Problem]
"""Turns an exception into the problem a route answers."""

ErrorMap: TypeAlias = Mapping[type[BaseException], int | ErrorMapper]
"""Per exception type: the status to answer, or a function building the whole `Problem`."""

HttpTranslator: TypeAlias = Callable[[BaseException], Problem | None]
"""The framework's own HTTP exception as a `Problem` (None for any other exception)."""


_PHRASES = {413: "Content Too Large", 422: "Unprocessable Content"}  # RFC 9110's names


def _phrase(status: int) -> str:
    if status in _PHRASES:
        return _PHRASES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _chain(error: BaseException) -> Iterator[BaseException]:
    """Yield `error` and its explicit causes (`raise ... from ...`), outermost first.

    Implicit contexts (an exception raised while handling another) are not followed: the
    exception being handled is often unrelated, and must not decide the status.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def beat_path(error: BaseException) -> str | None:
    """Return the path of the failed beat, through child cadences (`payment.charge`)."""
    path: str | None = None
    for link in _chain(error):
        if not isinstance(link, BeatError):
            if isinstance(link, BeatErrorGroup | MergeConflictError) and path is None:
                return link.step_name
            continue
        name = link.beat_name
        if path is None or name.startswith(f"{path}."):
            path = name  # the first one, or a name that already holds the whole path
        elif not path.endswith(f".{name}") and path != name:
            path = f"{path}.{name}"
    return path


def _mapped(error: BaseException, error_map: ErrorMap | None) -> Problem | None:
    if not error_map:
        return None
    for link in _chain(error):
        for kind in type(link).__mro__:
            entry = error_map.get(kind)
            if entry is None:
                continue
            if isinstance(entry, int):
                return Problem(entry)
            return entry(link)
    return None


def _retry_after(seconds: float) -> int:
    return max(0, math.ceil(seconds))


def _durable_problem(error: BaseException, cadence_name: str) -> Problem | None:
    """Return the problem of a durable run's own error (not one a beat raised), or None."""
    # Only a durable run raises these, and it has loaded their module: a route that runs
    # nothing durable neither imports cadence.durable nor needs its extra to map its errors.
    if "cadence.durable._errors" not in sys.modules:
        return None
    from cadence.durable._errors import (  # noqa: PLC0415 # loaded already: see above
        DurableError,
        PlanChangedError,
        RunCancelledError,
        RunDecodeError,
        RunEncodeError,
        RunFailedError,
        RunIdTakenError,
        StoreError,
    )

    if not isinstance(error, DurableError):
        return None
    members: dict[str, object] = {"run_id": error.run_id}
    if isinstance(error, PlanChangedError):
        status, kind, what = 409, "plan-changed", "it was stored under another plan"
    elif isinstance(error, RunCancelledError):
        status, kind, what = 409, "run-cancelled", "it was cancelled"
    elif isinstance(error, RunIdTakenError):
        status, kind, what = 409, "run-id-taken", "its id names a run of another cadence"
    elif isinstance(error, StoreError):
        status, kind = 503, "store-failed"
        what = "its store failed; retry later, and it resumes where it stopped"
    elif isinstance(error, RunFailedError):
        status, kind = 500, "run-failed"
        what = "it failed in another request; retry to run it again from the step it failed at"
        members["step"] = error.step
    elif isinstance(error, RunEncodeError):
        status, kind, what = 500, "run-unencodable", "a value of its context cannot be stored"
    elif isinstance(error, RunDecodeError):
        status, kind, what = 500, "run-undecodable", "its stored record does not decode"
    else:
        return None
    return Problem(
        status,
        detail=f"the durable run of cadence {cadence_name!r} could not go on: {what}",
        type=f"{_TYPE}{kind}",
        extensions=members,
    )


def _default(error: BaseException, cadence_name: str) -> Problem:
    durable = _durable_problem(error, cadence_name)
    if durable is not None:
        return durable
    for link in _chain(error):
        if isinstance(link, CircuitOpenError):
            return Problem(
                503,
                detail=f"cadence {cadence_name!r} refused the request: a circuit breaker is "
                "open; retry later",
                type=f"{_TYPE}circuit-open",
                headers={"Retry-After": str(_retry_after(link.retry_after))},
                extensions={"retry_after": _retry_after(link.retry_after)},
            )
        if isinstance(link, BeatTimeoutError):
            return Problem(
                504,
                detail=f"a beat of cadence {cadence_name!r} ran past its deadline",
                type=f"{_TYPE}beat-timeout",
            )
        if isinstance(link, MergeConflictError):
            return Problem(
                500,
                detail=f"parallel beats of cadence {cadence_name!r} wrote one field differently",
                type=f"{_TYPE}merge-conflict",
            )
    return Problem(
        500,
        detail=f"a beat of cadence {cadence_name!r} failed",
        type=f"{_TYPE}beat-failed",
    )


def _debug_members(error: BaseException) -> dict[str, object]:
    return {
        "exception": [f"{type(link).__qualname__}: {link}" for link in _chain(error)],
        "traceback": "".join(traceback.format_exception(error)),
    }


def _finish(problem: Problem, error: BaseException, cadence_name: str, *, debug: bool) -> Problem:
    extensions: dict[str, object] = {"cadence": cadence_name}
    path = beat_path(error)
    if path is not None:
        extensions["beat"] = path
    extensions.update(problem.extensions)
    if debug:
        extensions.update(_debug_members(error))
    return replace(problem, extensions=extensions)


def problem_for(
    error: BaseException,
    cadence_name: str,
    *,
    error_map: ErrorMap | None = None,
    http: HttpTranslator | None = None,
    debug: bool = False,
) -> Problem:
    """Return the problem a route answers for `error`, raised while `cadence_name` ran.

    The body names the cadence and the beat path; with `debug`, it also carries the exception
    chain and traceback.
    """
    problem = _mapped(error, error_map)
    if problem is None and http is not None:
        problem = next((p for link in _chain(error) if (p := http(link)) is not None), None)
    if problem is None:
        # A parallel step's failures, also when they reach us through a child cadence.
        group = next((link for link in _chain(error) if isinstance(link, BeatErrorGroup)), None)
        if group is not None:
            problem = _group(group, cadence_name, error_map, http)
    if problem is None:
        problem = _default(error, cadence_name)
    return _finish(problem, error, cadence_name, debug=debug)


def _group(
    group: BeatErrorGroup,
    cadence_name: str,
    error_map: ErrorMap | None,
    http: HttpTranslator | None,
) -> Problem:
    parts = [problem_for(e, cadence_name, error_map=error_map, http=http) for e in group.exceptions]
    errors = [{"beat": p.extensions.get("beat"), "status": p.status, "type": p.type} for p in parts]
    statuses = {p.status for p in parts}
    if len(statuses) == 1:
        first = parts[0]
        headers = dict(first.headers)
        # Whole seconds only: an HTTP-date a user's mapping chose is left as the first one set.
        waits = [int(v) for p in parts if (v := p.headers.get("Retry-After", "")).isdigit()]
        if waits:
            headers["Retry-After"] = str(max(waits))
        return replace(
            first,
            detail=f"{len(parts)} parallel beats of cadence {cadence_name!r} failed",
            headers=headers,
            extensions={  # a mapping's own members, but the group names its own step
                **{k: v for k, v in first.extensions.items() if k not in {"beat", "cadence"}},
                "errors": errors,
            },
        )
    return Problem(
        500,
        detail=f"{len(parts)} parallel beats of cadence {cadence_name!r} failed",
        type=f"{_TYPE}beats-failed",
        extensions={"errors": errors},
    )


def factory_problem(
    error: Exception,
    cadence_name: str,
    *,
    error_map: ErrorMap | None = None,
    http: HttpTranslator | None = None,
    debug: bool = False,
) -> Problem | None:
    """Return the problem for an error of a route's context factory, or None to re-raise it.

    A `ValueError` or `TypeError` rejects the input (422); the framework's HTTP exceptions and
    `error_map` entries answer as they say; anything else goes to the framework's own handlers.
    """
    problem = _mapped(error, error_map)
    if problem is None and http is not None:
        problem = http(error)
    if problem is None and isinstance(error, ValueError | TypeError):
        problem = Problem(
            422,
            detail=f"the input was rejected by the context factory of cadence {cadence_name!r}",
            type=f"{_TYPE}invalid-input",
        )
    if problem is None:
        return None
    extensions: dict[str, object] = {"cadence": cadence_name, **problem.extensions}
    if debug:
        extensions.update(_debug_members(error))
    return replace(problem, extensions=extensions)


def server_problem(error: BaseException, cadence_name: str, *, debug: bool = False) -> Problem:
    """Return the 500 problem for a defect of the route itself, not of a beat.

    A factory that returned no context, or a context field with no JSON form: the body says only
    that the route failed; the log names what went wrong.
    """
    extensions: dict[str, object] = {"cadence": cadence_name}
    if debug:
        extensions.update(_debug_members(error))
    return Problem(
        500,
        detail=f"cadence {cadence_name!r} could not answer this request",
        type=f"{_TYPE}route-failed",
        extensions=extensions,
    )


def log_problem(problem: Problem, error: BaseException, cadence_name: str, route: str) -> None:
    """Log `error` with its whole cause chain: 5xx as errors (503 as a warning), 4xx as info."""
    if problem.status >= 500 and problem.status != 503:
        level = logging.ERROR
    elif problem.status == 503:
        level = logging.WARNING
    else:
        level = logging.INFO
    if logger.isEnabledFor(level):
        beat = problem.extensions.get("beat")
        logger.log(
            level,
            "cadence %r on %s answered %d%s",
            cadence_name,
            route,
            problem.status,
            f" (beat {beat!r})" if beat else "",
            exc_info=error,
        )


def problem_schema() -> dict[str, object]:
    """Return the JSON schema of a problem body, for OpenAPI documents."""
    return {
        "title": "Problem",
        "type": "object",
        "description": "An RFC 9457 problem detail; cadence adds the cadence and the beat path.",
        "properties": {
            "type": {"type": "string", "format": "uri-reference", "default": "about:blank"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string", "format": "uri-reference"},
            "cadence": {"type": "string", "description": "The cadence that ran"},
            "beat": {"type": "string", "description": "The path of the beat that failed"},
            "errors": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["type", "title", "status"],
        "additionalProperties": True,
    }
