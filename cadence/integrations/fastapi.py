"""Serve cadences as FastAPI routes: `CadenceRouter` and its `@router.cadence(path, cadence)`.

```python skip
router = CadenceRouter()

@router.cadence("/orders/{order_id}", checkout_cadence)
async def create_order(order_id: str) -> OrderContext:
    return OrderContext(order_id=order_id)

app.include_router(router)
```

The decorated function is the context factory: its parameters are the endpoint's (path, query,
body, headers, `Depends`), resolved and documented by FastAPI. Its context is run through the
cadence and answered as JSON (shared fields left out); errors answer RFC 9457 problem details.
"""

from __future__ import annotations

try:
    from fastapi import APIRouter, Request
    from pydantic import TypeAdapter, create_model
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "cadence.integrations.fastapi needs FastAPI; install it with "
        "pip install 'cadence-flow[fastapi]'"
    ) from _missing

import asyncio
import contextvars
import dataclasses
import functools
import inspect
import logging
import types
import typing
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, Union, cast

import anyio
import anyio.to_thread
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from cadence._cadence import Cadence
from cadence._context import AtomicDict, AtomicList, Context
from cadence._errors import CadenceError
from cadence.integrations._durable import RouteRun, route_run
from cadence.integrations._json import UnencodableError, context_to_dict, dumps, json_fields
from cadence.integrations._problem import (
    PROBLEM_MEDIA_TYPE,
    ErrorMap,
    Problem,
    factory_problem,
    log_problem,
    problem_for,
    problem_schema,
    server_problem,
)

if TYPE_CHECKING:
    from cadence.durable import Migration, Store

__all__ = ["CadenceRoute", "CadenceRouter", "context_schema"]

C = TypeVar("C", bound=Context)
FactoryT = TypeVar("FactoryT", bound=Callable[..., Any])  # Any: a factory's own parameters

logger = logging.getLogger("cadence.integrations")

# The route's handler puts the request here for the endpoint: cheaper than a `Request` parameter
# FastAPI would resolve on every call, and it keeps the factory's signature as written.
_current_request: contextvars.ContextVar[Request] = contextvars.ContextVar("cadence_request")
# A run that is still going after this many seconds gets a watcher for client disconnects.
_WATCH_AFTER = 0.02
_ROUTE_ATTRIBUTE = "__cadence_route__"


class _Default:
    """The `response_model` default: the context's own schema."""

    def __repr__(self) -> str:
        return "<the context's schema>"


_CONTEXT_SCHEMA: Any = _Default()  # Any: FastAPI's own response_model parameter is Any


@dataclasses.dataclass(frozen=True)
class _RouteSettings:
    cadence_name: str
    error_map: ErrorMap | None
    debug: bool | None
    path: str


def _http_problem(error: BaseException) -> Problem | None:
    if isinstance(error, StarletteHTTPException):
        return Problem(error.status_code, detail=error.detail, headers=dict(error.headers or {}))
    return None


def _is_debug(settings: _RouteSettings, request: Request) -> bool:
    if settings.debug is not None:
        return settings.debug
    return bool(getattr(request.app, "debug", False))


def _server_error(error: Exception, settings: _RouteSettings, request: Request) -> Response:
    problem = server_problem(error, settings.cadence_name, debug=_is_debug(settings, request))
    log_problem(problem, error, settings.cadence_name, settings.path)
    return _problem_response(problem)


def _problem_response(problem: Problem) -> Response:
    return Response(
        problem.to_json().encode("utf-8"),
        status_code=problem.status,
        headers=dict(problem.headers),
        media_type=PROBLEM_MEDIA_TYPE,
    )


class CadenceRoute(APIRoute):
    """An `APIRoute` whose validation errors (and dependencies' HTTP errors) answer problems."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Return FastAPI's handler, with validation failures turned into problem details."""
        handler = super().get_route_handler()
        settings: _RouteSettings | None = getattr(self.endpoint, _ROUTE_ATTRIBUTE, None)
        if settings is None:
            return handler

        async def app(request: Request) -> Response:
            token = _current_request.set(request)
            try:
                return await handler(request)
            except RequestValidationError as exc:
                problem = Problem(
                    422,
                    detail=f"the request does not fit the input of cadence "
                    f"{settings.cadence_name!r}",
                    type="urn:cadence:problem:invalid-input",
                    extensions={
                        "cadence": settings.cadence_name,
                        "errors": jsonable_encoder(exc.errors()),
                    },
                )
                log_problem(problem, exc, settings.cadence_name, settings.path)
                return _problem_response(problem)
            except StarletteHTTPException as exc:  # from a dependency (auth, lookups, ...)
                answer = factory_problem(exc, settings.cadence_name, http=_http_problem)
                if answer is None:  # pragma: no cover - every HTTPException maps
                    raise
                log_problem(answer, exc, settings.cadence_name, settings.path)
                return _problem_response(answer)
            finally:
                _current_request.reset(token)

        return app


class CadenceRouter(APIRouter):
    """An `APIRouter` that also serves cadences: `@router.cadence(path, cadence)`."""

    def cadence(
        self,
        path: str,
        cadence: Cadence[C],
        *,
        methods: Sequence[str] = ("POST",),
        response_model: Any = _CONTEXT_SCHEMA,  # Any: whatever FastAPI accepts as a model
        status_code: int = 200,
        error_map: ErrorMap | None = None,
        debug: bool | None = None,
        responses: Mapping[int | str, dict[str, Any]] | None = None,  # Any: FastAPI's type
        store: Store | None = None,
        run_id: Callable[[C], str] | None = None,
        migration: Migration | None = None,
        **route_options: Any,  # Any: APIRouter.add_api_route's options, passed on unchanged
    ) -> Callable[[FactoryT], FactoryT]:
        """Serve `cadence` at `path`; the decorated function builds each request's context.

        Args:
            path: The route's path, with FastAPI's `{parameters}`.
            cadence: The cadence each request runs.
            methods: HTTP methods; POST by default, since a run usually changes something.
            response_model: The documented (and enforced) response model; by default the
                context's own schema (shared fields left out) and the context's JSON answered
                as is; `None` documents no schema.
            status_code: The status of a successful run.
            error_map: Per exception type (found anywhere in the error's cause chain), the
                status or a function returning the `Problem` to answer instead of the default.
            debug: Put exception messages and tracebacks in error bodies; default: the
                app's `debug` flag.
            responses: More OpenAPI responses; they override the documented error responses.
            store: Run each request durably in this store (`cadence.durable`), as the run
                `run_id` names: a retried request resumes the run where it stopped, or answers
                a finished run's stored result without running anything.
            run_id: With `store`: the run a request's context names (`lambda ctx:
                f"order-{ctx.order_id}"`).
            migration: With `store`: how runs stored under an earlier plan resume.
            **route_options: Any other `APIRouter.add_api_route` option (`tags`, `summary`,
                `dependencies`, `name`, ...).

        Returns:
            A decorator that registers the factory and returns it unchanged.

        Raises:
            CadenceDefinitionError: `store` without `run_id` or the other way round,
                `migration` without both, either of the wrong kind, or a context type the
                store cannot hold.

        """
        cadence_name = cadence.name
        durable = route_run(cadence, self.prefix + path, store, run_id, migration)

        def decorate(factory: FactoryT) -> FactoryT:
            signature = _resolved_signature(factory)
            context_type = _context_type(signature, cadence)
            if durable is not None and context_type is not None:
                durable.check_context(context_type)  # the factory's return type, if annotated
            settings = _RouteSettings(cadence_name, error_map, debug, self.prefix + path)
            documented = _documented_model(response_model, context_type)
            endpoint = _endpoint(
                factory,
                signature,
                cadence,
                settings,
                status_code,
                validate=response_model is not _CONTEXT_SCHEMA and response_model is not None,
                durable=durable,
            )
            self.add_api_route(
                path,
                endpoint,
                methods=list(methods),
                response_model=documented,
                status_code=status_code,
                responses={**_error_responses(durable=durable is not None), **(responses or {})},
                route_class_override=CadenceRoute,
                **route_options,
            )
            return factory

        return decorate


def _endpoint(
    factory: Callable[..., Any],  # Any: the factory's own parameters and result
    signature: inspect.Signature,
    cadence: Cadence[C],
    settings: _RouteSettings,
    status_code: int,
    *,
    validate: bool,
    durable: RouteRun[C] | None,
) -> Callable[..., Awaitable[object]]:
    is_async = inspect.iscoroutinefunction(factory)
    cadence_name = cadence.name
    route = settings.path
    plain_run: Callable[[C], Awaitable[C]] = cadence.run  # bound once, not per request

    async def endpoint(**values: Any) -> object:  # noqa: PLR0911 # Any: the factory's parameters
        request = _current_request.get()
        try:
            if is_async:
                context = await factory(**values)
            else:
                context = await anyio.to_thread.run_sync(functools.partial(factory, **values))
        except Exception as exc:
            problem = factory_problem(
                exc,
                cadence_name,
                error_map=settings.error_map,
                http=_http_problem,
                debug=_is_debug(settings, request),
            )
            if problem is None:
                raise
            log_problem(problem, exc, cadence_name, route)
            return _problem_response(problem)
        if not isinstance(context, Context):
            wrong = TypeError(
                f"cadence {cadence_name!r} on {route}: the context factory "
                f"{getattr(factory, '__qualname__', factory)!r} returned "
                f"{type(context).__qualname__}; it must return the cadence's Context"
            )
            return _server_error(wrong, settings, request)
        run = plain_run
        if durable is not None:
            try:
                name = durable.run_id_for(cast("C", context))
            except Exception as exc:  # noqa: BLE001 # the route's own defect: a logged 500
                return _server_error(exc, settings, request)
            run = functools.partial(durable, run_id=name)
        outcome = await _run_watched(run, cast("C", context), request)
        if isinstance(outcome, _Disconnected):
            logger.info(
                "cadence %r on %s: the client disconnected; run cancelled", cadence_name, route
            )
            return Response(status_code=499)
        if isinstance(outcome, BaseException):
            problem = problem_for(
                outcome,
                cadence_name,
                error_map=settings.error_map,
                http=_http_problem,
                debug=_is_debug(settings, request),
            )
            log_problem(problem, outcome, cadence_name, route)
            return _problem_response(problem)
        try:
            if validate:
                return context_to_dict(outcome, cadence_name)  # FastAPI checks it with the model
            body = dumps(outcome, cadence_name)
        except UnencodableError as exc:
            return _server_error(exc, settings, request)
        return Response(body, status_code, media_type="application/json")

    endpoint.__signature__ = signature.replace(  # type: ignore[attr-defined] # FastAPI reads the factory's parameters from here
        return_annotation=inspect.Signature.empty
    )
    for attribute in ("__name__", "__qualname__", "__doc__", "__module__"):
        if hasattr(factory, attribute):
            setattr(endpoint, attribute, getattr(factory, attribute))
    setattr(endpoint, _ROUTE_ATTRIBUTE, settings)
    return endpoint


class _Disconnected:
    """The client went away before the run finished."""


_DISCONNECTED = _Disconnected()


async def _run_watched(
    run: Callable[[C], Awaitable[C]], context: C, request: Request
) -> C | CadenceError | _Disconnected:
    """Run the cadence on `context`; cancel the run if the client disconnects first.

    A watcher reads the request's `receive` channel until `http.disconnect` (the body is read
    already) and then cancels the run's anyio cancel scope, so shielded work inside the run (a
    beat in a worker thread, a shielded commit, the hooks' closing calls) still finishes. On
    asyncio the watcher is a plain task, started only once the run has taken `_WATCH_AFTER`
    seconds: a short run finishes before a disconnect could save anything, and a watcher per
    request in an anyio task group cost a quarter of a small route's time. Other backends use
    a task group at once.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio)
        return await _run_in_group(run, context, request)
    scope = anyio.CancelScope()
    watchers: list[asyncio.Task[None]] = []

    def watch() -> None:
        watchers.append(loop.create_task(_watch_disconnect(request, scope.cancel)))

    timer = loop.call_later(_WATCH_AFTER, watch)
    try:
        with scope:
            return await run(context)
    except CadenceError as exc:
        return exc
    finally:
        timer.cancel()
        for watcher in watchers:
            watcher.cancel()
    return _DISCONNECTED  # the scope absorbed the cancellation: the client went away


async def _run_in_group(
    run: Callable[[C], Awaitable[C]], context: C, request: Request
) -> C | CadenceError | _Disconnected:
    outcome: C | CadenceError | _Disconnected = _DISCONNECTED
    failure: Exception | None = None
    async with anyio.create_task_group() as group:
        group.start_soon(_watch_disconnect, request, group.cancel_scope.cancel)
        try:
            outcome = await run(context)
        except CadenceError as exc:
            outcome = exc
        except Exception as exc:  # noqa: BLE001 # re-raised below, outside the task group
            failure = exc
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return outcome


async def _watch_disconnect(request: Request, cancel: Callable[[], object]) -> None:
    receive = request.receive
    try:
        while True:
            message = await receive()
            if message.get("type") == "http.disconnect":
                cancel()
                return
    except Exception:  # noqa: BLE001 # a broken channel means no disconnect to report
        return


# --------------------------------------------------------------------------- signatures


def _resolved_signature(factory: Callable[..., Any]) -> inspect.Signature:  # Any: any factory
    """Return the factory's signature with its string annotations evaluated where possible."""
    try:
        return inspect.signature(factory, eval_str=True)
    except (NameError, TypeError):
        return inspect.signature(factory)


def _context_type(
    signature: inspect.Signature, cadence: Cadence[Any]
) -> type | None:  # Any: any context
    annotation = signature.return_annotation
    origin = typing.get_origin(annotation)
    if origin is not None and isinstance(origin, type) and issubclass(origin, Awaitable):
        args = typing.get_args(annotation)
        annotation = args[-1] if args else None
    if isinstance(annotation, type) and issubclass(annotation, Context):
        return annotation
    template: Context | None = cadence.context
    return type(template) if template is not None else None


# --------------------------------------------------------------------------- OpenAPI


def _error_responses(*, durable: bool) -> dict[int | str, dict[str, Any]]:  # Any: OpenAPI
    schema = problem_schema()

    def entry(description: str, **extra: Any) -> dict[str, Any]:  # Any: an OpenAPI object
        return {
            "description": description,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
            **extra,
        }

    failed = ", or the durable run failed elsewhere, or cannot be stored or read" if durable else ""
    responses: dict[int | str, dict[str, Any]] = {  # Any: OpenAPI objects
        422: entry("The input was rejected (validation, or the context factory refused it)"),
        500: entry("A beat failed (or parallel beats wrote one field differently)" + failed),
        503: entry(
            "A circuit breaker is open (with Retry-After)"
            + (", or the durable run's store failed" if durable else ""),
            headers={
                "Retry-After": {
                    "description": "Whole seconds until the breaker lets a call through",
                    "schema": {"type": "integer"},
                }
            },
        ),
        504: entry("A beat ran past its deadline"),
    }
    if durable:
        responses[409] = entry(
            "The durable run was cancelled, stored under another plan, or its id names a run "
            "of another cadence"
        )
    return responses


def _documented_model(response_model: Any, context_type: type | None) -> Any:  # Any: a model
    if response_model is not _CONTEXT_SCHEMA:
        return response_model
    if context_type is None:
        return None
    return context_schema(context_type)


_schemas: dict[type, Any] = {}  # Any: a pydantic model class made at run time
_building: set[type] = set()


def context_schema(context_type: type) -> Any:  # Any: a pydantic model class made at run time
    """Return a pydantic model documenting the JSON form of a dataclass context.

    Shared fields are left out; `AtomicList[T]`/`AtomicDict[K, V]` document as `list[T]`/
    `dict[K, V]`; nested dataclasses as objects; a field whose type pydantic cannot describe
    documents as any value.
    """
    model = _schemas.get(context_type)
    if model is not None:
        return model
    try:
        hints = typing.get_type_hints(context_type, include_extras=True)
    except (NameError, TypeError):
        hints = {}
    fields: dict[str, Any] = {}  # Any: create_model's field definitions
    _building.add(context_type)
    try:
        for name in json_fields(context_type):
            fields[name] = (_describable(_plain(hints.get(name, Any))), ...)
    finally:
        _building.discard(context_type)
    doc = context_type.__doc__
    if doc and doc.startswith(f"{context_type.__name__}("):
        doc = None  # the signature dataclasses write when a class has no docstring
    model = create_model(context_type.__name__, __doc__=doc, **fields)
    model.__module__ = context_type.__module__
    _schemas[context_type] = model
    return model


def _describable(annotation: Any) -> Any:  # Any: a type expression
    try:
        TypeAdapter(annotation).json_schema(mode="serialization")
    except Exception:  # noqa: BLE001 # pydantic raises several kinds; any means "cannot describe"
        return Any
    return annotation


def _plain(annotation: Any) -> Any:  # noqa: PLR0911 # Any: a type expression, rebuilt
    """Rewrite a field type into one pydantic describes as the JSON the context answers."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        return _plain(args[0])
    if isinstance(annotation, type):
        cls = cast("type[object]", annotation)
        if issubclass(cls, AtomicList):
            return list[Any]
        if issubclass(cls, AtomicDict):
            return dict[Any, Any]
        if dataclasses.is_dataclass(cls) and not issubclass(cls, Enum):
            if cls in _building:
                return Any  # a recursive dataclass: documented as any value below itself
            return context_schema(cls)
        return cls
    if origin is None or not args:
        return annotation
    plain_args = tuple(_plain(a) for a in args)
    if isinstance(origin, type) and issubclass(origin, AtomicList):
        return list[plain_args[0]]  # type: ignore[valid-type]
    if isinstance(origin, type) and issubclass(origin, AtomicDict):
        return dict[plain_args[0], plain_args[1]]  # type: ignore[valid-type]
    if origin is Union or origin is types.UnionType:
        return Union[plain_args]  # noqa: UP007 # rebuilt from runtime arguments
    if origin is typing.Literal:
        return annotation
    generic = cast("Any", origin)  # Any: a runtime generic, subscripted again
    try:
        return generic[plain_args]
    except TypeError:
        return annotation
