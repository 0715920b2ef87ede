"""Durable routes: with a store and a run-id function, each request's run is a durable run.

Framework-free, shared by `fastapi.py` and `flask.py`. A retried request that names the same
run (an order id, an `Idempotency-Key` header the factory put in the context) resumes the run
where it stopped, or answers a finished run's stored result without running anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from cadence._context import Context
from cadence._errors import CadenceDefinitionError

if TYPE_CHECKING:
    from cadence._cadence import Cadence
    from cadence.durable import Migration, Store

__all__ = ["RouteRun", "route_run"]

C = TypeVar("C", bound=Context)

# What a store must have for a route to run durably on it: the runner's calls (and the
# `poll_interval` it waits by, checked apart: a property).
_STORE_METHODS = ("claim", "checkpoint", "finish", "release", "get", "new_owner", "done")


class RouteRun(Generic[C]):
    """Run a route's cadence durably, as the run its context names, in one store."""

    __slots__ = ("_cadence", "_migration", "_run_id", "_store", "_where")

    def __init__(
        self,
        cadence: Cadence[C],
        where: str,
        store: Store,
        run_id: Callable[[C], str],
        migration: Migration | None,
    ) -> None:
        self._cadence = cadence
        self._where = where  # "cadence 'checkout' on /orders/{id}", the messages' prefix
        self._store = store
        self._run_id = run_id
        self._migration = migration

    def check_context(self, context_type: type) -> None:
        """Refuse now a context type the store cannot hold (the route and the field named).

        Raises:
            CadenceDefinitionError: it cannot be stored.

        """
        from cadence.durable._codec import codec_for  # noqa: PLC0415 # a store is given: it loads

        try:
            codec_for(context_type)
        except CadenceDefinitionError as exc:
            raise CadenceDefinitionError(f"{self._where}: {exc}") from exc

    def run_id_for(self, context: C) -> str:
        """Return the run this request's context names.

        Raises:
            TypeError: the run-id function returned something that cannot name a run (the
                cadence, the route and the function are named).

        """
        from cadence.durable._runner import RUN_ID_RULE, run_id_fault  # noqa: PLC0415 # durable extra

        name = cast("object", self._run_id(context))  # a str, unless the function lies
        fault = run_id_fault(name)
        if fault is not None:
            raise TypeError(
                f"{self._where}: run_id={getattr(self._run_id, '__qualname__', self._run_id)!r} "
                f"must return {RUN_ID_RULE}; it {fault.replace('got', 'returned', 1)}"
            )
        return cast("str", name)

    async def __call__(self, context: C, run_id: str) -> C:
        """Run (resume, or answer the stored result of) the durable run `run_id`."""
        return await self._cadence.run(
            context, run_id=run_id, store=self._store, migration=self._migration
        )


def route_run(
    cadence: Cadence[C],
    route: str,
    store: Store | None,
    run_id: Callable[[C], str] | None,
    migration: Migration | None,
) -> RouteRun[C] | None:
    """Check a route's durability options; return how it runs durably, or None if it does not.

    Raises:
        CadenceDefinitionError: `store` without `run_id` or the other way round, `migration`
            without both, a `store` that is not one, a `run_id` that is not callable, or a
            context type (the cadence's, or a `child`'s) the store cannot hold (the cadence and
            the route are named).

    """
    where = f"cadence {cadence.name!r} on {route}"
    if store is None and run_id is None:
        if migration is not None:
            raise CadenceDefinitionError(
                f"{where}: migration= needs store= and run_id= (a durable route)"
            )
        return None
    if store is None:
        raise CadenceDefinitionError(
            f"{where}: run_id= needs store= (the store its durable runs commit to, "
            "SQLiteStore(path) or PostgresStore(dsn))"
        )
    if run_id is None:
        raise CadenceDefinitionError(
            f"{where}: store= needs run_id=, a function naming each request's run from its "
            "context (run_id=lambda ctx: f'order-{ctx.order_id}')"
        )
    missing = [name for name in _STORE_METHODS if not callable(getattr(store, name, None))]
    if not hasattr(store, "poll_interval"):
        missing.append("poll_interval")
    if missing:
        raise CadenceDefinitionError(
            f"{where}: store= must be a cadence.durable store (SQLiteStore, PostgresStore), "
            f"got {type(store).__qualname__} {store!r}, which has no {', '.join(missing)}"
        )
    if not callable(run_id):
        raise CadenceDefinitionError(
            f"{where}: run_id= must be a function of the context returning the run's id, got "
            f"{type(run_id).__qualname__} {run_id!r}"
        )
    from cadence.durable._codec import check_storable  # noqa: PLC0415 # a store is given

    try:
        check_storable(cadence)
    except CadenceDefinitionError as exc:
        raise CadenceDefinitionError(f"{where}: {exc}") from exc
    return RouteRun(cadence, where, store, run_id, migration)
