"""A durable `sync` step's per-branch commits, and its atomic containers across them.

In a plain run the branches of a `sync` step share each `AtomicList` and `AtomicDict` field
and change it in place, at once (`compute` adds to what a sibling added). A commit made when
one branch finishes cannot read that branch's part off the shared container, so each atomic
container tells a context variable the branch sets what it did (`atomic_writes`). Appends and
keys set can be replayed: the branch's commit stores them (in place of the field), and a
resume applies them to the shared container again. A branch that changed one in another way
(`compute`, `pop`, `remove`, ...) or replaced it is not committed on its own: it runs again on
resume, its changes with it. The shared containers are never copied, so the branches see one
another's changes exactly as in a plain run.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import anyio.to_thread
import msgspec
import msgspec.json

from cadence._beat import BeatSpec
from cadence._context import (
    AtomicDict,
    AtomicList,
    AtomicWrites,
    Context,
    atomic_writes,
    context_fields,
    context_info,
)
from cadence._isolation import DELETED, FingerprintCache
from cadence._isolation import _state_of as state_of  # pyright: ignore[reportPrivateUsage] # a branch view's state
from cadence.durable._errors import ProgressDecodeError, RunDecodeError

if TYPE_CHECKING:
    from cadence._steps import Sync
    from cadence.durable._codec import ContextCodec
    from cadence.durable._runner import _Progress  # pyright: ignore[reportPrivateUsage] # the runner's own

__all__ = ["SYNC", "Branches", "branches_done"]

C = TypeVar("C", bound=Context)

SYNC = -1  # the position of a stored frame that holds a `sync` step's finished branches

_Atomic = AtomicList[Any] | AtomicDict[Any, Any]  # Any: any item types


def branches_done(run_id: str, stored: bytes) -> dict[str, bytes]:
    """Read a stored `sync` frame: each finished branch's context, by beat name, in order."""
    try:
        frames = msgspec.json.decode(stored, type=dict[str, msgspec.Raw])
    except msgspec.DecodeError as exc:
        raise ProgressDecodeError(
            run_id, f"run {run_id!r}: its stored parallel branches do not decode: {exc}"
        ) from exc
    return {name: bytes(raw) for name, raw in frames.items()}


def _snapshot(context: C) -> C:
    """Return a shallow copy of `context` made without `__init__` (as the codec's copies)."""
    copy = object.__new__(type(context))
    for name, value in context_fields(context).items():
        object.__setattr__(copy, name, value)
    return copy


class Branches(Generic[C]):
    """A `sync` step's per-branch commits: each finished branch's changes, committed at once.

    A branch that finishes commits the step's context with that branch's changes applied, as a
    frame beside the level's last commit (all finished branches so far, by beat name), unless
    it changed an atomic container (see the module's docstring). On resume, a finished branch
    is not run: its beat is replaced by one that returns the stored context, whose changes the
    step merges as if the branch had just run.
    """

    __slots__ = (
        "_atomic",
        "_codec",
        "_context",
        "_done",
        "_level",
        "_lock",
        "_progress",
        "_untracked",
    )

    def __init__(  # one step's pieces, passed once
        self,
        progress: _Progress,
        level: int,
        codec: ContextCodec[C],
        context: C,
        done: dict[str, bytes],
    ) -> None:
        self._progress = progress
        self._level = level
        self._codec = codec
        self._context = context
        self._done = done
        self._lock = anyio.Lock()
        shared = context_info(type(context)).shared
        self._atomic: dict[str, _Atomic] = {}  # each atomic field, by name
        for name, value in context_fields(context).items():
            if isinstance(value, AtomicList | AtomicDict) and name not in shared:
                self._atomic[name] = value
        # Changes no branch noted (made in a thread a beat started itself) from here on.
        self._untracked = {name: c.untracked_changes for name, c in self._atomic.items()}

    def wrap(self, step: Sync) -> Sync:
        """Return `step` with finished branches restored and the others committing."""
        beats = tuple(
            self._restored(b) if b.name in self._done else self._committing(b) for b in step.beats
        )
        return dataclasses.replace(step, beats=beats)

    def _restored(self, spec: BeatSpec) -> BeatSpec:
        # Decoded before the step runs: a branch stored that does not decode stops the run
        # before its other branches commit anything, so the claim is undone.
        stored, run_id = self._done[spec.name], self._progress.run_id
        try:
            context = self._codec.decode(stored, _snapshot(self._context), run_id)
        except RunDecodeError as exc:
            raise ProgressDecodeError(run_id, str(exc)) from exc.__cause__

        async def restored(_view: Any) -> Any:  # Any: the step's context type
            token = atomic_writes.set(AtomicWrites())  # a replay, not a change to note
            try:
                for name, shared in self._atomic.items():  # the field holds its additions
                    added = getattr(context, name)
                    if isinstance(shared, AtomicDict):
                        shared.update(added)
                    else:
                        shared.extend(added)
                    object.__setattr__(context, name, shared)
            finally:
                atomic_writes.reset(token)
            return context

        return BeatSpec(spec.name, restored, is_async=True, in_thread=False)

    def _committing(self, spec: BeatSpec) -> BeatSpec:
        fn, is_async, in_thread = spec.fn, spec.is_async, spec.in_thread

        async def committing(view: Any) -> Any:  # Any: the step's context and the beat's result
            writes = AtomicWrites()
            token = atomic_writes.set(writes)  # copied into a thread's context, as it is
            try:
                if is_async:
                    result = await fn(view)
                elif in_thread:
                    result = await anyio.to_thread.run_sync(fn, view)
                else:
                    result = fn(view)
                    if result is not None and inspect.isawaitable(result):
                        result = await result
            finally:
                atomic_writes.reset(token)
            final = result if isinstance(result, Context) else view
            added = self._additions(final, writes)
            if added is not None:  # else it runs again on resume, its changes with it
                await self._commit(spec.name, view, final, added)
            return result

        return BeatSpec(spec.name, committing, is_async=True, in_thread=False)

    def _additions(self, final: object, writes: AtomicWrites) -> dict[str, _Atomic] | None:
        """Return, by field, what a branch appended or set, or `None` if it cannot be replayed.

        `None` when it changed an atomic container otherwise, replaced or deleted an atomic
        field, or changed an atomic container that is not one of the context's own fields; and
        when a container changed where no branch noted it (in a thread a beat started itself):
        whose change it was is not known, so the branches finishing after it run again.
        """
        if writes.other:
            return None
        for name, shared in self._atomic.items():
            if shared.untracked_changes != self._untracked[name]:
                return None
        fields = {id(c): name for name, c in self._atomic.items()}
        if any(key not in fields for key in writes.added):
            return None
        added: dict[str, _Atomic] = {}
        for name, shared in self._atomic.items():
            if getattr(final, name, None) is not shared:
                return None
            noted = writes.added.get(id(shared))
            items = () if noted is None else noted[1]
            added[name] = AtomicDict(items) if isinstance(shared, AtomicDict) else AtomicList(items)
        return added

    async def _commit(
        self, name: str, view: object, final: object, added: dict[str, _Atomic]
    ) -> None:
        state = state_of(view)
        if state is None:  # pragma: no cover - a sync step's beats always run on views
            return
        changes = state.changes(final, FingerprintCache())
        if any(value is DELETED for value in changes.values()):
            return  # a deleted field has no stored form: this branch commits with the step
        snapshot = _snapshot(self._context)
        for field_name, value in changes.items():
            object.__setattr__(snapshot, field_name, value)
        for field_name, items in added.items():  # its own additions, not the shared state
            object.__setattr__(snapshot, field_name, items)
        encoded = self._codec.encode(snapshot, self._progress.run_id)
        # One commit at a time, each holding every branch so far. Taken without a checkpoint
        # when free, so the commit is handed to the store before anything else runs.
        try:
            self._lock.acquire_nowait()
        except anyio.WouldBlock:
            await self._lock.acquire()
        try:
            self._done[name] = encoded
            frame = msgspec.json.encode({k: msgspec.Raw(v) for k, v in self._done.items()})
            await self._progress.commit(self._level + 1, SYNC, None, frame)
        finally:
            self._lock.release()
