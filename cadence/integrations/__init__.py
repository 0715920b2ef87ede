"""Serve cadences over HTTP: `cadence.integrations.fastapi` and `cadence.integrations.flask`.

Importing this package imports neither framework; each module needs its extra
(`pip install 'cadence-flow[fastapi]'`, `pip install 'cadence-flow[flask]'`). What they share
is here: the RFC 9457 `Problem` an error answers, the `ErrorMap` that overrides the default
mapping, and the JSON form of a context.
"""

from __future__ import annotations

from cadence.integrations._json import UnencodableError as UnencodableError
from cadence.integrations._json import context_to_dict as context_to_dict
from cadence.integrations._problem import PROBLEM_MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from cadence.integrations._problem import ErrorMap as ErrorMap
from cadence.integrations._problem import ErrorMapper as ErrorMapper
from cadence.integrations._problem import Problem as Problem
from cadence.integrations._problem import problem_for as problem_for

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "ErrorMap",
    "ErrorMapper",
    "Problem",
    "UnencodableError",
    "context_to_dict",
    "problem_for",
]
