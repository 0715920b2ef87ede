"""Serve cadences as Flask views: `CadenceBlueprint` and its `@bp.cadence_route(rule, cadence)`.

```python skip
bp = CadenceBlueprint("orders", __name__)

@bp.cadence_route("/orders/<order_id>", checkout_cadence)
def create_order(order_id: str) -> OrderContext:
    return OrderContext(order_id=order_id)

app.register_blueprint(bp)
```

The decorated function builds the request's context (sync, or `async def`); the cadence runs
on one long-lived event loop in a background thread of the process (the *portal*), and the
final context is answered as JSON. Every request thread hands its run to that loop, so
async resources that live longer than a request (clients, pools, circuit breakers, locks) stay
on the one loop that made them. See docs/design.md, "Web integrations", for why.
"""

from __future__ import annotations

try:
    from flask import Blueprint, Response, current_app, request
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "cadence.integrations.flask needs Flask; install it with pip install 'cadence-flow[flask]'"
    ) from _missing

import asyncio
import atexit
import contextvars
import inspect
import os
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
from anyio.from_thread import BlockingPortal
from werkzeug.exceptions import HTTPException

from cadence._cadence import Cadence
from cadence._context import Context
from cadence._errors import CadenceError
from cadence.integrations._durable import RouteRun, route_run
from cadence.integrations._json import UnencodableError, dumps
from cadence.integrations._problem import (
    PROBLEM_MEDIA_TYPE,
    ErrorMap,
    Problem,
    factory_problem,
    log_problem,
    problem_for,
    server_problem,
)

if TYPE_CHECKING:
    from cadence.durable import Migration, Store

__all__ = ["CadenceBlueprint", "run_in_portal", "stop_portal"]

C = TypeVar("C", bound=Context)
T = TypeVar("T")
FactoryT = TypeVar("FactoryT", bound=Callable[..., Any])  # Any: a factory's own parameters


class CadenceBlueprint(Blueprint):
    """A Flask `Blueprint` that also serves cadences: `@bp.cadence_route(rule, cadence)`."""

    def cadence_route(
        self,
        rule: str,
        cadence: Cadence[C],
        *,
        methods: Sequence[str] = ("POST",),
        status_code: int = 200,
        error_map: ErrorMap | None = None,
        debug: bool | None = None,
        endpoint: str | None = None,
        store: Store | None = None,
        run_id: Callable[[C], str] | None = None,
        migration: Migration | None = None,
        **options: Any,  # Any: Blueprint.add_url_rule's options, passed on unchanged
    ) -> Callable[[FactoryT], FactoryT]:
        """Serve `cadence` at `rule`; the decorated view function builds each request's context.

        Args:
            rule: The URL rule, with Flask's `<converters>`; its variables are the view's
                keyword arguments.
            cadence: The cadence each request runs.
            methods: HTTP methods; POST by default, since a run usually changes something.
            status_code: The status of a successful run.
            error_map: Per exception type (found anywhere in the error's cause chain), the
                status or a function returning the `Problem` to answer instead of the default.
            debug: Put exception messages and tracebacks in error bodies; default: the app's
                `debug` flag.
            endpoint: The endpoint name; default: the function's name.
            store: Run each request durably in this store (`cadence.durable`), as the run
                `run_id` names: a retried request resumes the run where it stopped, or answers
                a finished run's stored result without running anything.
            run_id: With `store`: the run a request's context names (`lambda ctx:
                f"order-{ctx.order_id}"`).
            migration: With `store`: how runs stored under an earlier plan resume.
            **options: Any other `add_url_rule` option.

        Returns:
            A decorator that registers the factory and returns it unchanged.

        Raises:
            CadenceDefinitionError: `store` without `run_id` or the other way round,
                `migration` without both, either of the wrong kind, or a context type the
                store cannot hold.

        """
        durable = route_run(cadence, rule, store, run_id, migration)

        def decorate(factory: FactoryT) -> FactoryT:
            view = _view(factory, cadence, rule, status_code, error_map, debug, durable)
            self.add_url_rule(
                rule, endpoint or factory.__name__, view, methods=list(methods), **options
            )
            return factory

        return decorate


def _http_problem(error: BaseException) -> Problem | None:
    if isinstance(error, HTTPException) and error.code is not None:
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        return Problem(error.code, detail=error.description, headers=headers)
    return None


def _server_error(error: Exception, cadence_name: str, rule: str, debug: bool) -> Response:
    problem = server_problem(error, cadence_name, debug=debug)
    log_problem(problem, error, cadence_name, _route(rule))
    return _problem_response(problem)


def _problem_response(problem: Problem) -> Response:
    return current_app.response_class(
        problem.to_json(),
        status=problem.status,
        headers=dict(problem.headers),
        mimetype=PROBLEM_MEDIA_TYPE,
    )


def _view(  # noqa: PLR0917 # the route's settings, passed once at registration
    factory: Callable[..., Any],  # Any: the factory's own parameters and result
    cadence: Cadence[C],
    rule: str,
    status_code: int,
    error_map: ErrorMap | None,
    debug: bool | None,
    durable: RouteRun[C] | None,
) -> Callable[..., Response]:
    is_async = inspect.iscoroutinefunction(factory)
    cadence_name = cadence.name

    def view(**values: Any) -> Response:  # Any: the rule's variables
        show = current_app.debug if debug is None else debug
        try:
            context = run_in_portal(factory, **values) if is_async else factory(**values)
        except Exception as exc:
            problem = factory_problem(
                exc, cadence_name, error_map=error_map, http=_http_problem, debug=show
            )
            if problem is None:
                raise
            log_problem(problem, exc, cadence_name, _route(rule))
            return _problem_response(problem)
        if not isinstance(context, Context):
            wrong = TypeError(
                f"cadence {cadence_name!r} on {_route(rule)}: the view "
                f"{getattr(factory, '__qualname__', factory)!r} returned "
                f"{type(context).__qualname__}; it must return the cadence's Context"
            )
            return _server_error(wrong, cadence_name, rule, show)
        try:
            if durable is None:
                result = run_in_portal(cadence.run, cast("C", context))
            else:
                try:
                    name = durable.run_id_for(cast("C", context))
                except Exception as exc:  # noqa: BLE001 # the route's own defect: a logged 500
                    return _server_error(exc, cadence_name, rule, show)
                result = run_in_portal(durable, cast("C", context), name)
        except CadenceError as exc:
            problem = problem_for(
                exc, cadence_name, error_map=error_map, http=_http_problem, debug=show
            )
            log_problem(problem, exc, cadence_name, _route(rule))
            return _problem_response(problem)
        try:
            body = dumps(result, cadence_name)
        except UnencodableError as exc:
            return _server_error(exc, cadence_name, rule, show)
        return current_app.response_class(body, status=status_code, mimetype="application/json")

    view.__name__ = getattr(factory, "__name__", "cadence_view")
    view.__qualname__ = getattr(factory, "__qualname__", view.__name__)
    view.__doc__ = getattr(factory, "__doc__", None)
    view.__module__ = getattr(factory, "__module__", __name__)
    return view


def _route(rule: str) -> str:
    url_rule = request.url_rule
    return url_rule.rule if url_rule is not None else rule


# --------------------------------------------------------------------------- the portal


class _Portal:
    """One event loop in a daemon thread, started on first use (again after a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._portal: BlockingPortal | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._registered = False

    def get(self) -> BlockingPortal:
        portal, thread = self._portal, self._thread
        if portal is not None and self._pid == os.getpid() and thread and thread.is_alive():
            return portal
        with self._lock:
            thread = self._thread
            alive = thread is not None and thread.is_alive()
            if self._portal is None or self._pid != os.getpid() or not alive:
                self._start()
            return cast("BlockingPortal", self._portal)

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's lock and loop (the thread did not survive)."""
        self._lock = threading.Lock()
        self._portal = self._thread = None

    def _start(self) -> None:
        ready = threading.Event()
        box: list[BlockingPortal] = []

        async def serve() -> None:
            async with BlockingPortal() as portal:
                box.append(portal)
                ready.set()
                await portal.sleep_until_stopped()

        thread = threading.Thread(
            target=anyio.run, args=(serve,), name="cadence-flask-portal", daemon=True
        )
        thread.start()
        ready.wait()
        self._portal, self._thread, self._pid = box[0], thread, os.getpid()
        if not self._registered:
            atexit.register(self.stop)
            self._registered = True

    def stop(self) -> None:
        with self._lock:
            portal, thread = self._portal, self._thread
            self._portal = self._thread = None
        if portal is None or thread is None or self._pid != os.getpid():
            return
        try:
            portal.call(portal.stop, True)  # noqa: FBT003 # cancel_remaining
        except RuntimeError:  # the loop is already gone
            return
        thread.join(timeout=5)


_portal = _Portal()
if hasattr(os, "register_at_fork"):  # a fork while another thread held the lock: start clean
    os.register_at_fork(after_in_child=_portal.forget_after_fork)


async def _in_context(
    context: contextvars.Context,
    fn: Callable[..., Coroutine[Any, Any, T]],
    args: tuple[Any, ...],  # Any: fn's own arguments
    kwargs: dict[str, Any],  # Any: fn's own arguments
) -> T:
    """Run `fn` as a task in the caller's `context`, so Flask's `request`, `g` and traces work."""
    task: asyncio.Task[T] = asyncio.get_running_loop().create_task(
        fn(*args, **kwargs), context=context
    )
    return await task


def run_in_portal(
    fn: Callable[..., Coroutine[Any, Any, T]], /, *args: Any, **kwargs: Any
) -> T:  # Any: fn's own arguments
    """Run the async function `fn` on the shared event loop and return its result.

    It blocks the calling (request) thread until `fn` finishes. `fn` sees the caller's
    context variables (Flask's `request` and `g`, logging and tracing context).
    """
    portal = _portal.get()
    result: T = portal.call(_in_context, contextvars.copy_context(), fn, args, kwargs)
    return result


def stop_portal() -> None:
    """Stop the shared event loop, cancelling what still runs on it (it restarts on next use)."""
    _portal.stop()
