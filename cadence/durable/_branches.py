"""A durable `sync` step's per-branch commits, and its atomic containers across them.

In a plain run the branches of a `sync` step share each `AtomicList` and `AtomicDict` field
and change it in place. A commit made when one branch finishes cannot tell which of the
shared container's changes are that branch's and which belong to branches still running, and
a resume must replay exactly the finished branches' changes. So in a durable run each branch
works on a private copy of every atomic field, and when it finishes its changes join the
shared container (in the order branches finish), just before its commit: the shared
container then always holds what the finished branches did, and each commit stores that.
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
from cadence._context import AtomicDict, AtomicList, Context, context_fields, context_info
from cadence._isolation import DELETED, FingerprintCache
from cadence._isolation import _state_of as state_of  # pyright: ignore[reportPrivateUsage] # a branch view's state
from cadence.durable._errors import RunDecodeError

if TYPE_CHECKING:
    from cadence._steps import Sync
    from cadence.durable._codec import ContextCodec
    from cadence.durable._runner import _Progress  # pyright: ignore[reportPrivateUsage] # the runner's own

__all__ = ["SYNC", "Branches", "branches_done"]

C = TypeVar("C", bound=Context)

SYNC = -1  # the position of a stored frame that holds a `sync` step's finished branches

_Atomic = AtomicList[Any] | AtomicDict[Any, Any]  # Any: any item types
_Plain = list[Any] | dict[Any, Any]  # Any: as above; an atomic container's snapshot


def branches_done(run_id: str, stored: bytes) -> dict[str, bytes]:
    """Read a stored `sync` frame: each finished branch's context, by beat name, in order."""
    try:
        frames = msgspec.json.decode(stored, type=dict[str, msgspec.Raw])
    except msgspec.DecodeError as exc:
        raise RunDecodeError(
            run_id, f"run {run_id!r}: its stored parallel branches do not decode: {exc}"
        ) from exc
    return {name: bytes(raw) for name, raw in frames.items()}


def _snapshot(context: C) -> C:
    """Return a shallow copy of `context` made without `__init__` (as the codec's copies)."""
    copy = object.__new__(type(context))
    for name, value in context_fields(context).items():
        object.__setattr__(copy, name, value)
    return copy


def _join(shared: _Atomic, base: _Plain, private: _Atomic) -> None:
    """Apply what a branch did to its private copy (made from `base`) to the shared one."""
    if isinstance(shared, AtomicDict):
        assert isinstance(base, dict)  # noqa: S101 # copies of the same container
        assert isinstance(private, dict)  # noqa: S101
        changed = {k: v for k, v in private.items() if k not in base or base[k] is not v}
        with shared._lock:  # pyright: ignore[reportPrivateUsage] # one step, under its lock
            shared.update(changed)
            for key in base:
                if key not in private:
                    shared.pop(key, None)
        return
    assert isinstance(base, list)  # noqa: S101
    assert isinstance(private, list)  # noqa: S101
    n = len(base)
    with shared._lock:  # pyright: ignore[reportPrivateUsage] # as above
        if len(private) >= n and all(a is b for a, b in zip(private, base, strict=False)):
            shared.extend(private[n:])  # appended: after what others appended meanwhile
        elif len(shared) >= n and all(a is b for a, b in zip(shared, base, strict=False)):
            shared[:] = [*private, *shared[n:]]  # edited, then others' appends after it
        else:
            shared[:] = private  # both edited: this branch's edit, as the later one


class Branches(Generic[C]):
    """A `sync` step's per-branch commits: each finished branch's changes, committed at once.

    A branch that finishes commits the step's context with that branch's changes applied, as a
    frame beside the level's last commit (all finished branches so far, by beat name). On
    resume, a finished branch is not run: its beat is replaced by one that returns the stored
    context, whose changes the step merges as if the branch had just run, and the atomic
    containers hold again what the finished branches had done to them.
    """

    __slots__ = (
        "_atomic",
        "_codec",
        "_context",
        "_done",
        "_level",
        "_lock",
        "_progress",
        "_stopped",
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
        shared = context_info(type(context)).shared
        self._atomic: dict[str, _Atomic] = {
            name: value
            for name, value in context_fields(context).items()
            if isinstance(value, AtomicList | AtomicDict) and name not in shared
        }
        self._lock = anyio.Lock()
        self._stopped = False  # a branch that could not commit: the rest commit with the step
        if done and self._atomic:  # the last commit holds every finished branch's changes
            last = codec.decode(list(done.values())[-1], _snapshot(context), progress.run_id)
            for name, container in self._atomic.items():
                stored = getattr(last, name)
                with container._lock:  # pyright: ignore[reportPrivateUsage] # as in _join
                    if isinstance(container, AtomicDict):
                        container.clear()
                        container.update(stored)
                    else:
                        container[:] = stored

    def wrap(self, step: Sync) -> Sync:
        """Return `step` with finished branches restored and the others committing."""
        beats = tuple(
            self._restored(b) if b.name in self._done else self._committing(b) for b in step.beats
        )
        return dataclasses.replace(step, beats=beats)

    def _restored(self, spec: BeatSpec) -> BeatSpec:
        stored, codec, run_id = self._done[spec.name], self._codec, self._progress.run_id

        async def restored(_view: Any) -> Any:  # Any: the step's context type
            context = codec.decode(stored, _snapshot(self._context), run_id)
            for name, container in self._atomic.items():  # restored already, in __init__
                object.__setattr__(context, name, container)
            return context

        return BeatSpec(spec.name, restored, is_async=True, in_thread=False)

    def _committing(self, spec: BeatSpec) -> BeatSpec:
        fn, is_async, in_thread = spec.fn, spec.is_async, spec.in_thread

        async def committing(view: Any) -> Any:  # Any: the step's context and the beat's result
            copies = {name: self._private(view, name, c) for name, c in self._atomic.items()}
            if is_async:
                result = await fn(view)
            elif in_thread:
                result = await anyio.to_thread.run_sync(fn, view)
            else:
                result = fn(view)
                if result is not None and inspect.isawaitable(result):
                    result = await result
            final = result if isinstance(result, Context) else view
            for name, (base, private) in copies.items():
                if getattr(final, name) is private:  # else replaced: an ordinary write
                    shared = self._atomic[name]
                    _join(shared, base, private)
                    object.__setattr__(final, name, shared)
            await self._commit(spec.name, view, final)
            return result

        return BeatSpec(spec.name, committing, is_async=True, in_thread=False)

    @staticmethod
    def _private(view: Any, name: str, shared: _Atomic) -> tuple[_Plain, _Atomic]:  # Any: a view
        """Give `view` a private copy of atomic field `name`; return its base and the copy."""
        base: _Plain = shared.snapshot()
        private: _Atomic = AtomicDict(base) if isinstance(base, dict) else AtomicList(base)
        view.__dict__[name] = private
        return base, private

    async def _commit(self, name: str, view: object, final: object) -> None:
        state = state_of(view)
        if state is None:  # pragma: no cover - a sync step's beats always run on views
            return
        if self._stopped:
            return
        changes = state.changes(final, FingerprintCache())
        if any(value is DELETED for value in changes.values()):
            # A deleted field has no stored form: this branch commits with the step. Its
            # atomic changes are in the shared containers now, so no later commit of this
            # step may store them (the branch runs again on resume): the rest wait too.
            self._stopped = True
            return
        snapshot = _snapshot(self._context)
        for field_name, value in changes.items():
            object.__setattr__(snapshot, field_name, value)
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
