"""The durable runner: claim a run, resume it where it stopped, commit after every step."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import logging
import time
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

import anyio
import msgspec
import msgspec.json

from cadence._beat import BeatSpec
from cadence._context import Context
from cadence._errors import CadenceDefinitionError, CadenceError, RunStoppedError
from cadence._events import (
    CheckpointFailed,
    LeaseLost,
    RunClaimed,
    RunResumed,
    durable_run,
    emit_durable,
    end_durable_run,
)
from cadence._run import execute, run_step
from cadence._steps import Child, Split, Sync
from cadence.durable._branches import SYNC, Branches, branches_done
from cadence.durable._codec import check_storable, codec_for
from cadence.durable._errors import (
    DurableError,
    LeaseLostError,
    PlanChangedError,
    ProgressDecodeError,
    RunCancelledError,
    RunDecodeError,
    RunFailedError,
    RunIdTakenError,
    StoreError,
    lost_run_error,
)
from cadence.durable._plan import (
    describe_plan,
    first_difference,
    plan_fingerprint,
    resume_position,
)
from cadence.durable._plan import (
    step_name as _step_name,
)
from cadence.durable._store import Claim, ErrorInfo, NewRun, undone_to

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType

    from cadence._cadence import Cadence
    from cadence._hooks import Observers
    from cadence._steps import Step
    from cadence.durable._codec import ContextCodec
    from cadence.durable._plan import Migration
    from cadence.durable._store import Leased, RunRecord, Store

__all__ = ["idempotency_key", "run_durable"]

C = TypeVar("C", bound=Context)
T = TypeVar("T")

logger = logging.getLogger("cadence.durable")

_RUN: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cadence_durable_run", default=None
)
_PATH: contextvars.ContextVar[str] = contextvars.ContextVar("cadence_durable_path", default="")


def idempotency_key(suffix: str | None = None) -> str:
    """Return the idempotency key of the beat running now: `run_id:step_path[:suffix]`.

    The key is the same each time the step runs again after a crash, and differs between
    steps and runs: pass it to payment and email APIs so a repeated call is a no-op. Beats
    of a `sync` or `split` step have their own (`run:step.beat`), as do a `child`'s steps
    (`run:child_step.beat`); a beat making several calls tells them apart with `suffix`.

    Raises:
        CadenceError: no durable run is running here.

    """
    run_id = _RUN.get()
    if run_id is None:
        raise CadenceError(
            "idempotency_key() is called from a beat of a durable run "
            "(cadence.run(ctx, run_id=..., store=...)); none is running here"
        )
    key = f"{run_id}:{_PATH.get()}"
    return key if suffix is None else f"{key}:{suffix}"


@functools.cache  # a cadence's names, looked up on each step of each run
def _part(name: str) -> str:
    """Return a step or beat name as one part of a key's path: `.`, `:` and `%` escaped.

    So `child.beat` and a top-level step named "child.beat" have keys of their own. A name
    without them (most names) is itself, as in the keys of runs stored before.
    """
    return name.replace("%", "%25").replace(".", "%2E").replace(":", "%3A")


def _keyed_beat(spec: BeatSpec, path: str) -> BeatSpec:
    """Return `spec` with its idempotency path set while it runs."""
    fn = spec.fn
    if spec.is_async:

        async def keyed_async(context: Any) -> Any:  # Any: the beat's own context and result
            token = _PATH.set(path)
            try:
                return await fn(context)
            finally:
                _PATH.reset(token)

        keyed: Callable[[Any], Any] = keyed_async  # Any: as BeatSpec.fn
    else:

        def keyed_sync(context: Any) -> Any:  # Any: the beat's own context and result
            token = _PATH.set(path)
            try:
                return fn(context)
            finally:
                _PATH.reset(token)

        keyed = keyed_sync
    return BeatSpec(spec.name, keyed, spec.is_async, spec.in_thread)


def _keyed(step: Step, path: str) -> Step:
    """Return `step` with each inner beat keyed by its own path (`path.beat`)."""
    if type(step) is Sync:
        beats = tuple(_keyed_beat(b, f"{path}.{_part(b.name)}") for b in step.beats)
        return dataclasses.replace(step, beats=beats)
    if type(step) is Split:
        yes = tuple(_keyed_beat(b, f"{path}.{_part(b.name)}") for b in step.if_true)
        no = tuple(_keyed_beat(b, f"{path}.{_part(b.name)}") for b in step.if_false)
        return dataclasses.replace(step, if_true=yes, if_false=no)
    return step


class _Progress:
    """A run's committed progress: the top-level context and position, and open `child` frames.

    Level 0 is the run's own cadence; level `i > 0` is the child step being run at level
    `i - 1`, with its own context and position. A commit at one level drops the deeper ones.
    """

    __slots__ = ("cadence", "failed", "frames", "owner", "resume", "run_id", "store", "wrote")

    def __init__(  # noqa: PLR0917 # one run's progress, made in one place
        self,
        cadence: Cadence[Any],
        store: Store,
        run_id: str,
        owner: str,
        position: int,
        step: str | None,
        context: bytes,
    ) -> None:  # Any: the run's own context type
        self.cadence = cadence
        self.store = store
        self.run_id = run_id
        self.owner = owner
        self.frames: list[tuple[int, str | None, bytes]] = [(position, step, context)]
        self.resume: list[tuple[int, bytes]] = []  # stored child frames, consumed on resume
        self.wrote = False  # whether this attempt committed a step
        self.failed: StoreError | None = None  # the first commit that failed (and was told)

    def load_inner(self, inner: bytes | None) -> None:
        """Take the stored child frames of a resumed run."""
        if not inner:
            return
        try:
            frames = msgspec.json.decode(inner, type=list[_Frame])
        except msgspec.DecodeError as exc:
            raise RunDecodeError(
                self.run_id,
                f"run {self.run_id!r}: its stored child progress does not decode: {exc}",
            ) from exc
        self.resume = [(frame.position, bytes(frame.context)) for frame in frames]

    async def commit(self, level: int, position: int, step: str | None, context: bytes) -> None:
        """Commit `context` and `position` at `level` (and keep the levels above it)."""
        self.wrote = True
        frames = [*self.frames[:level], (position, step, context)]
        top_position, top_step, top_context = frames[0]
        inner = None
        if len(frames) > 1:
            inner = msgspec.json.encode([_Frame(p, msgspec.Raw(c)) for p, _, c in frames[1:]])
        try:
            await self.store.checkpoint(
                self.run_id,
                self.owner,
                position=top_position,
                step=top_step,
                context=top_context,
                inner=inner,
            )
        except StoreError as exc:  # told as the run stands: at its last commit
            committed, in_flight, _ = self.frames[0]
            await store_failed(self.cadence, self.run_id, self.owner, committed, in_flight, exc)
            if self.failed is None:
                self.failed = exc
            raise
        self.frames = frames  # what the heartbeat reads: the last commit, once it is one


async def store_failed(  # noqa: PLR0917 # one event's fields
    cadence: Cadence[Any],
    run_id: str,
    owner: str,
    position: int,
    step: str | None,
    error: StoreError,
) -> None:  # Any: any cadence
    """Tell the cadence's observers that a write lost the run or failed."""
    if not cadence.hooks:
        return
    kind = LeaseLost if isinstance(error, LeaseLostError) else CheckpointFailed
    event = kind(
        cadence=cadence.name,
        run_id=run_id,
        at=time.time(),
        owner=owner,
        position=position,
        step=step,
        error=error,
    )
    with anyio.CancelScope(shield=True):
        await emit_durable(cadence, event)


class _Frame(msgspec.Struct, array_like=True):
    """A child step's stored progress: its position and its context."""

    position: int
    context: msgspec.Raw


class _UnstorableChildError(CadenceDefinitionError, RunStoppedError):
    """A child's context type, known once its step built it, cannot be stored.

    It stops the run as itself: not a beat's failure an error handler could pass over.
    """


def _codec_of(cadence: Cadence[C], context: C, prefix: str) -> ContextCodec[C]:
    """Return the codec of a level's context; a child's unstorable one stops the run."""
    try:
        return codec_for(type(context))
    except CadenceDefinitionError as exc:  # a child's, built by its step: known only now
        raise _UnstorableChildError(
            f"{exc} (the context of child step {prefix[:-1]!r}, whose cadence "
            f"{cadence.name!r} declares no context type; give it one to have it checked "
            "before the run starts)"
        ) from exc


class _Walk(Generic[C]):
    """Walk the steps from `position`, committing the context after each but the last."""

    __slots__ = ("_level", "_position", "_prefix", "_progress")

    def __init__(self, progress: _Progress, level: int, position: int, prefix: str) -> None:
        self._progress = progress
        self._level = level
        self._position = position
        self._prefix = prefix

    async def __call__(self, cadence: Cadence[C], context: C, observers: Observers | None) -> C:
        progress, level, prefix = self._progress, self._level, self._prefix
        steps = cadence.steps
        last = len(steps) - 1
        codec = _codec_of(cadence, context, prefix)
        run_id = progress.run_id
        position = self._position
        if level > 0:
            if progress.resume:  # resumed inside this child: its stored context and position
                position, context = _child_resumed(progress, codec, context)
            progress.frames[level:] = [(position, None, codec.encode(context, run_id))]
        run_token = _RUN.set(run_id)
        try:
            for index in range(position, len(steps)):
                step = steps[index]
                path = f"{prefix}{_part(step.name)}"
                path_token = _PATH.set(path)
                try:
                    if type(step) is Child:
                        if index != position:
                            progress.resume.clear()  # stored frames belong to the first step
                        inner = _Walk[Any](progress, level + 1, 0, f"{path}.")
                        context = await run_step(cadence, step, context, observers, inner)
                    elif type(step) is Sync:
                        done: dict[str, bytes] = {}
                        if index != position:
                            progress.resume.clear()
                        elif progress.resume and progress.resume[0][0] == SYNC:
                            done = branches_done(run_id, progress.resume.pop(0)[1])
                        branches = Branches(progress, level, codec, context, done)
                        keyed = branches.wrap(cast("Sync", _keyed(step, path)))
                        context = await run_step(cadence, keyed, context, observers)
                    else:
                        context = await run_step(cadence, _keyed(step, path), context, observers)
                finally:
                    _PATH.reset(path_token)
                # The top level's last step commits with the finish; a child's commits, as its
                # merge into the parent may fail after it.
                if index < last or level > 0:
                    after = steps[index + 1].name if index < last else None
                    await progress.commit(level, index + 1, after, codec.encode(context, run_id))
        finally:
            _RUN.reset(run_token)
        return context


def _child_resumed(progress: _Progress, codec: ContextCodec[C], context: C) -> tuple[int, C]:
    """Return the position and the context a resumed child's stored frame holds.

    Raises:
        ProgressDecodeError: the frame does not decode (it stops the run, not the child step).

    """
    position, stored = progress.resume.pop(0)
    try:
        return position, codec.decode(stored, context, progress.run_id, refill=True)
    except RunDecodeError as exc:
        raise ProgressDecodeError(progress.run_id, str(exc)) from exc.__cause__


_LOOK_FOR = 10.0  # seconds a run whose lease is lost waits to read who holds it now


async def run_durable(
    cadence: Cadence[C],
    context: C,
    run_id: str | None,
    store: Store | None,
    migration: Migration | None,
    *,
    owner: str | None = None,
    claimed: RunRecord | None = None,
) -> C:
    """Run `cadence` durably as `run_id` in `store`: start it, resume it, or return its result.

    `owner` is the token of a claim already made (a worker's), and `claimed` the record that
    claim returned (then the run is not claimed again); by default a new claim is made.
    """
    run_id = checked_run_id(cadence, run_id)
    if store is None:
        raise CadenceDefinitionError(
            f"cadence {cadence.name!r}: run_id={run_id!r} needs a store (store=SQLiteStore(path))"
        )
    if owner is not None and claimed is not None:  # a worker's claim: go on with it
        # The run exists: its template context is not stored, so not encoded (nor refused).
        token, claim = owner, Claim("claimed", claimed)
        plan = describe_plan(cadence)  # its cadences were checked when the worker was made
    else:
        new = new_run(cadence, context, run_id)
        plan = new.plan
        token = store.new_owner() if owner is None else owner
        claim = await _shielded(store.claim(run_id, token, new))
        if claim.outcome == "busy":
            token, claim = await _wait_for(cadence, store, run_id, owner, new)
    try:
        return await _attempt(cadence, context, store, claim, token, plan, migration)
    finally:
        store.done(token)


MAX_RUN_ID_BYTES = 1024
"""A run id's longest, in UTF-8: PostgreSQL's key index holds about 2700 bytes of one."""


def run_id_fault(run_id: object) -> str | None:
    """Say what keeps `run_id` from naming a run in every store, or `None` if nothing does.

    A run id is a non-empty string of at most `MAX_RUN_ID_BYTES` bytes in UTF-8, without NUL
    (PostgreSQL's text holds none). Stores differ past these; refused in all, a route's
    client input that breaks them fails the same way whichever store it meets.
    """
    if not isinstance(run_id, str) or not run_id:
        return f"got {type(run_id).__qualname__} {run_id!r}"
    shown = repr(run_id) if len(run_id) <= 60 else f"{run_id[:40]!r}... ({len(run_id)} characters)"
    if "\x00" in run_id:
        return f"got {shown}, which holds a NUL character"
    try:
        size = len(run_id.encode())
    except UnicodeEncodeError:
        return f"got {shown}, which UTF-8 cannot encode (a lone surrogate)"
    if size > MAX_RUN_ID_BYTES:
        return f"got {shown}, {size} bytes in UTF-8"
    return None


RUN_ID_RULE = f"a non-empty string of at most {MAX_RUN_ID_BYTES} bytes (UTF-8) without NUL"
"""What a run id is, as refusals say it (`run_id_fault` says what one broke)."""


def checked_run_id(cadence: Cadence[Any], run_id: object) -> str:  # Any: any cadence
    """Return `run_id` if it can name a run (`run_id_fault`).

    Raises:
        CadenceDefinitionError: it cannot (the cadence is named).

    """
    fault = run_id_fault(run_id)
    if fault is not None:
        raise CadenceDefinitionError(
            f"cadence {cadence.name!r}: a durable run needs run_id, {RUN_ID_RULE}; {fault}"
        )
    return cast("str", run_id)


def new_run(cadence: Cadence[C], context: C, run_id: str) -> NewRun:
    """Return what a store creates a durable run from, its context type checked.

    Raises:
        CadenceDefinitionError: the context type cannot be stored (the field is named).
        RunEncodeError: the context holds a value that cannot be stored (the field is named).

    """
    codec = codec_for(type(context))
    check_storable(cadence)
    plan = describe_plan(cadence)
    first = cadence.steps[0].name if cadence.steps else None
    return NewRun(cadence.name, plan, plan_fingerprint(plan), codec.encode(context, run_id), first)


async def _shielded(call: Awaitable[T]) -> T:
    """Await a claim even if the caller is cancelled meanwhile.

    A claim that lands must be seen, or its run would stay `running` under this process for
    as long as it lives.
    """
    with anyio.CancelScope(shield=True):
        return await call
    raise AssertionError  # pragma: no cover - nothing cancels a shielded scope no one holds


async def _wait_for(
    cadence: Cadence[Any], store: Store, run_id: str, owner: str | None, new: NewRun
) -> tuple[str, Claim]:  # Any: any cadence
    """Wait for the live caller that owns `run_id`; return the claim made once it stopped.

    Its result is ours (outcome `finished`); a run it handed back is ours to go on with; a
    run it failed is its failure, raised here, not retried: the failed run stays resumable
    by a later call.
    """
    waiting = dataclasses.replace(new, resume_failed=False)
    while True:
        await anyio.sleep(store.poll_interval)
        # A store that does not honour `resume_failed` takes a failed run over: it is read
        # first, and a failure recorded between the read and the claim is put back below.
        seen = await store.get(run_id)
        if seen is not None and seen.status == "failed":
            raise _failed_elsewhere(cadence, seen)
        token = store.new_owner() if owner is None else owner
        claim = await _shielded(store.claim(run_id, token, waiting))
        if claim.outcome == "claimed" and _failed_since(seen, claim.record):
            with anyio.CancelScope(shield=True):
                await store.finish(
                    run_id, token, status="failed", context=None, error=claim.record.error
                )
            claim = Claim("failed", claim.record)
        if claim.outcome == "failed":
            store.done(token)
            raise _failed_elsewhere(cadence, claim.record)
        if claim.outcome != "busy":
            return token, claim
        store.done(token)


def _failed_since(seen: RunRecord | None, claimed: RunRecord) -> bool:
    """Whether a run taken over records an error it did not have when last read (running)."""
    return claimed.error is not None and (seen is None or claimed.error != seen.error)


def _failed_elsewhere(cadence: Cadence[Any], record: RunRecord) -> RunFailedError:  # Any: any
    """Return the error for a run that failed in the caller this one waited for."""
    run_id = record.run_id
    cause = "an unrecorded error" if record.error is None else str(record.error)
    return RunFailedError(
        run_id,
        f"run {run_id!r} of cadence {cadence.name!r} failed at step {record.step!r} in the "
        f"caller this one waited for: {cause}; it is resumable: call run(run_id={run_id!r}) "
        "again to retry it from that step",
        record.step,
    )


async def _settled(
    cadence: Cadence[C], context: C, store: Store, claim: Claim, token: str
) -> C | None:
    """Refuse a claim the run cannot go on from; return a finished run's stored result."""
    name, run_id = cadence.name, claim.record.run_id
    record = claim.record
    if claim.outcome == "cancelled":
        raise RunCancelledError(run_id, f"run {run_id!r} of cadence {name!r} was cancelled")
    if record.cadence != name:
        if claim.outcome == "claimed":
            with anyio.CancelScope(shield=True):
                await store.release(run_id, token, undo=undone_to(claim.previous))
        raise RunIdTakenError(
            run_id,
            f"run {run_id!r} belongs to cadence {record.cadence!r}, not {name!r}; "
            "give each cadence's runs their own ids",
        )
    if claim.outcome == "claimed" and record.attempts > 1:
        logger.info(
            "resuming run %r of cadence %r at step %d (%s), attempt %d",
            run_id,
            name,
            record.position,
            record.step,
            record.attempts,
        )
    if claim.outcome != "finished":
        return None
    if record.context is None:
        raise RunDecodeError(run_id, f"run {run_id!r} completed but has no stored context")
    return codec_for(type(context)).decode(record.context, context, run_id)


async def _attempt(  # noqa: PLR0915, PLR0917 # one attempt, read top to bottom; its pieces passed once
    cadence: Cadence[C],
    context: C,
    store: Store,
    claim: Claim,
    token: str,
    plan: tuple[str, ...],
    migration: Migration | None,
) -> C:
    """Go on with a claimed run (or return a finished one's result)."""
    settled = await _settled(cadence, context, store, claim, token)
    if settled is not None:
        return settled
    record, run_id = claim.record, claim.record.run_id
    codec = codec_for(type(context))
    position = record.position
    progress: _Progress | None = None
    finished: list[C] = []  # the result, once stored

    async def walk_and_finish(c: Cadence[C], ctx: C, observers: Observers | None) -> C:
        """Walk the steps, then store the result: inside the observed run, which ends so."""
        at = cast("_Progress", progress)
        try:
            done = await _Walk[C](at, 0, position, "")(c, ctx, observers)
        except BaseException as exc:
            if not lost.cancel_called:
                raise
            stopped = await _as_lost(cadence, store, at, exc)
            raise stopped from stopped.__cause__
        if lost.cancel_called:  # found lost as the last step ended
            raise await _lease_lost(cadence, store, run_id, token, at.frames[0][:2])
        await _finish(cadence, store, token, codec, done, at)
        finished.append(done)
        return done

    told = bool(cadence.hooks) and claim.outcome in ("created", "claimed")
    began = False  # whether the run was told as claimed and its steps began: then it counts
    try:  # from here on the run is ours: however this attempt stops, `_stop` records it
        with _Watched(store, run_id, token) as lost:  # observers and a resume's decoding too
            inner = None
            if claim.outcome == "claimed":
                context, position, inner = await _resume_at(
                    cadence, store, claim, token, context, codec, plan, migration, told=told
                )
            step = cadence.steps[position].name if position < len(cadence.steps) else None
            progress = _Progress(
                cadence, store, run_id, token, position, step, codec.encode(context, run_id)
            )
            progress.load_inner(inner)
            if told:  # where the steps go on
                await _tell_claim(cadence, claim, token, position, step, in_child=bool(inner))
            began = True
            observed = durable_run(cadence, run_id)
            try:
                await execute(cadence, context, None, walk_and_finish)
            finally:
                end_durable_run(observed)
        if finished:  # stored, even if an observer's end was cancelled after it
            return finished[0]
        # Stopped before the steps began (a run hook), or an observer's end cancelled by it.
        at = (record.position, record.step) if progress is None else progress.frames[0][:2]
        raise await _lease_lost(cadence, store, run_id, token, at)  # noqa: TRY301 # `_stop` records it below
    except BaseException as exc:
        if finished:  # an observer's end failed it after the result was stored
            raise
        # Refused before it began (another plan, a row that does not decode): undo the claim.
        undo = None if began else undone_to(claim.previous)
        with anyio.CancelScope(shield=True):
            await _stop(store, run_id, token, exc, undo)
        raise


async def _as_lost(
    cadence: Cadence[Any], store: Store, progress: _Progress, error: BaseException
) -> BaseException:  # Any: any cadence
    """Return what ends steps the heartbeat stopped, whatever they raised as they stopped.

    The run is lost, and told so once: a `StoreError` a commit raised (told when it was) or,
    else, the lease lost, its cause any error besides the cancellation.
    """
    told = _store_error_in(error) or progress.failed
    if told is not None:
        return told
    at = progress.frames[0][:2]
    lost = await _lease_lost(cadence, store, progress.run_id, progress.owner, at)
    if not _only_cancelled(error):
        lost.__cause__ = error
    return lost


def _store_error_in(error: BaseException) -> StoreError | None:
    """Return `error` if it is a `StoreError`, or the first one a group of errors holds."""
    if isinstance(error, StoreError):
        return error
    if isinstance(error, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", error)
        for inner in group.exceptions:
            found = _store_error_in(inner)
            if found is not None:
                return found
    return None


def _only_cancelled(error: BaseException) -> bool:
    """Whether `error` is a cancellation, or a group of nothing but cancellations."""
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(error, BaseExceptionGroup):
        _, rest = cast("BaseExceptionGroup[BaseException]", error).split(cancelled)
        return rest is None
    return isinstance(error, cancelled)


class _Watched:
    """A block run under a leased store's heartbeat, from the claim on.

    The heartbeat cancels `scope` if it finds the lease lost, and the block stops there
    (`scope.cancel_called` tells it after); on a store without leases nothing cancels it.
    """

    __slots__ = ("_leased", "_owner", "_run_id", "scope")

    def __init__(self, store: Store, run_id: str, owner: str) -> None:
        self.scope = anyio.CancelScope()
        self._run_id, self._owner = run_id, owner
        self._leased = cast("Leased", store) if getattr(store, "watch", None) is not None else None

    def __enter__(self) -> anyio.CancelScope:
        if self._leased is not None:
            self._leased.watch(self._run_id, self._owner, self.scope.cancel)
        return self.scope.__enter__()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        try:
            return self.scope.__exit__(kind, exc, traceback)  # swallows the heartbeat's cancel
        finally:
            if self._leased is not None:
                self._leased.unwatch(self._owner)


async def _finish(  # noqa: PLR0917 # the pieces of one finish, passed once
    cadence: Cadence[C],
    store: Store,
    token: str,
    codec: ContextCodec[C],
    result: C,
    progress: _Progress,
) -> None:
    """Store a run's result (a store failing is told to the observers, and raised)."""
    run_id = progress.run_id
    try:
        with anyio.CancelScope(shield=True):  # the result is ours: a cancel waits for it
            await store.finish(
                run_id,
                token,
                status="completed",
                context=codec.encode(result, run_id),
                error=None,
                position=len(cadence.steps),
            )
    except StoreError as exc:  # told as the run stands (at its last commit), inside the run
        with anyio.CancelScope(shield=True):
            position, in_flight, _ = progress.frames[0]
            await store_failed(cadence, run_id, token, position, in_flight, exc)
        raise


async def _lease_lost(
    cadence: Cadence[Any], store: Store, run_id: str, owner: str, at: tuple[int, str | None]
) -> DurableError:  # Any: any cadence
    """Return why the heartbeat found the lease gone (and tell observers of a lost run).

    `at` is where the run stands (its position and next step). `RunCancelledError` if the run
    was cancelled through the store, else `LeaseLostError` naming who holds it now, or saying
    that the lease could not be renewed in time.
    """
    position, step = at
    record: RunRecord | None = None
    why = "the store did not answer"
    with anyio.CancelScope(shield=True), anyio.move_on_after(_LOOK_FOR):  # cut off, maybe
        try:
            record = await store.get(run_id)
            why = ""
        except CadenceError as exc:
            why = str(exc)
    if why or (record is not None and (record.status, record.owner) == ("running", owner)):
        error: DurableError = LeaseLostError(
            run_id,
            f"run {run_id!r}: this caller could not renew its lease in time, so it gave the run "
            f"up before another could take it over ({why or 'the store holds it still'})",
        )
    else:
        error = lost_run_error(run_id, None if record is None else (record.status, record.owner))
    if isinstance(error, LeaseLostError):
        error = LeaseLostError(
            run_id,
            f"{error} (of cadence {cadence.name!r}, found by the heartbeat; its steps were "
            f"stopped before step {step!r} committed)",
        )
        await store_failed(cadence, run_id, owner, position, step, error)  # shielded
    return error


async def _tell_claim(
    cadence: Cadence[Any],
    claim: Claim,
    owner: str,
    position: int,
    step: str | None,
    *,
    in_child: bool,
) -> None:  # Any: any cadence
    """Send `RunClaimed` (and `RunResumed` for a later attempt) to the cadence's observers.

    `position` and `step` are where the run goes on (after a migration, in its new plan).
    """
    record = claim.record
    name, run_id, attempt = cadence.name, record.run_id, record.attempts
    await emit_durable(
        cadence,
        RunClaimed(
            cadence=name,
            run_id=run_id,
            at=time.time(),
            owner=owner,
            position=position,
            step=step,
            attempt=attempt,
            new=attempt <= 1,
        ),
    )
    if attempt > 1:
        await emit_durable(
            cadence,
            RunResumed(
                cadence=name,
                run_id=run_id,
                at=time.time(),
                owner=owner,
                position=position,
                step=step,
                attempt=attempt,
                in_child=in_child,
            ),
        )


async def _resume_at(  # noqa: PLR0917 # the pieces of one resume, passed once
    cadence: Cadence[C],
    store: Store,
    claim: Claim,
    owner: str,
    context: C,
    codec: ContextCodec[C],
    plan: tuple[str, ...],
    migration: Migration | None,
    *,
    told: bool,
) -> tuple[C, int, bytes | None]:
    """Return the stored context, the position to go on at and its step's stored progress.

    The progress is a child's or a sync's, kept across a changed plan only for the same step.
    A migration commits the run under the new plan; if that fails, observers are `told` of
    the claim and the failure, as the run stands.
    """
    record, count = claim.record, len(cadence.steps)
    run_id = record.run_id
    if record.context is None:
        raise RunDecodeError(run_id, f"run {run_id!r} has no stored context")
    context = codec.decode(record.context, context, run_id)
    fingerprint = plan_fingerprint(plan)
    if record.fingerprint == fingerprint:
        return context, record.position, record.inner
    if migration is None:
        raise PlanChangedError(
            run_id,
            f"run {run_id!r} of cadence {record.cadence!r} was stored under another plan: "
            f"{first_difference(record.plan, plan)}; pass migration=Migration(...) to resume "
            "it under this plan",
        )
    resumption = resume_position(record.plan, record.position, plan, migration)
    position = resumption.position
    if resumption.unrun:
        one = len(resumption.unrun) == 1
        names = ", ".join(map(repr, resumption.unrun))
        raise PlanChangedError(
            run_id,
            f"run {run_id!r} of cadence {record.cadence!r} had not completed "
            f"{'step' if one else 'steps'} {names}, which this plan moved before step "
            f"{resumption.after!r} that it completed: the migration would pass over "
            f"{'it' if one else 'them'} unrun; name {'it' if one else 'them'} in "
            "Migration(skip={...}) to accept that",
        )
    inner = record.inner if resumption.keeps_inner else None  # the step in flight's progress
    try:
        await store.checkpoint(
            run_id,
            owner,
            position=position,
            step=_step_name(plan[position]) if position < count else None,
            context=codec.encode(context, run_id),
            inner=inner,
            plan=plan,
            fingerprint=fingerprint,
        )
    except StoreError as exc:
        if told:
            at, step = record.position, record.step
            await _tell_claim(cadence, claim, owner, at, step, in_child=bool(record.inner))
            await store_failed(cadence, run_id, owner, at, step, exc)
        raise
    return context, position, inner


async def _stop(
    store: Store,
    run_id: str,
    owner: str,
    exc: BaseException,
    undo: Literal["pending", "failed"] | None,
) -> None:
    """Record why a run stopped: failed, or handed back to be resumed.

    `undo` is given when this attempt committed nothing: a resume it refused (another plan, a
    row it cannot decode) then undoes its claim, back to that status.
    """
    if isinstance(exc, RunCancelledError):
        logger.warning("run %r stopped: %s", run_id, exc)
        with contextlib.suppress(CadenceError):  # let go of it: now it may be deleted
            await store.release(run_id, owner)
        return
    if isinstance(exc, StoreError):
        logger.warning("run %r stopped: %s", run_id, exc)
        with contextlib.suppress(CadenceError):
            await store.release(run_id, owner)  # if the store is back: resumable at once
        return
    refused = isinstance(exc, PlanChangedError | RunDecodeError)
    if isinstance(exc, Exception) and not refused:
        try:
            await store.finish(
                run_id, owner, status="failed", context=None, error=ErrorInfo.of(exc)
            )
        except CadenceError as error:  # then at least handed back, resumable
            exc.add_note(f"recording the failure of run {run_id!r} also failed: {error}")
        else:
            return
    try:  # cancelled, not resumable under this plan yet, or its failure not recorded
        await store.release(run_id, owner, undo=undo if refused else None)
    except CadenceError as error:
        exc.add_note(f"handing run {run_id!r} back also failed: {error}")
