"""Edits planned in memory, shown as a diff, and written all together or not at all."""

from __future__ import annotations

import contextlib
import difflib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FileChange", "Plan"]


@dataclass(frozen=True, slots=True)
class FileChange:
    """The new content of one file (`before` is `None` for a file to create)."""

    path: Path
    before: bytes | None
    after: bytes
    encoding: str = "utf-8"

    @property
    def changed(self) -> bool:
        """Whether writing it would change the file."""
        return self.before != self.after

    def diff(self, label: str) -> str:
        """Return the unified diff of the change, with `label` naming the file."""
        before = [] if self.before is None else _lines(self.before, self.encoding)
        after = _lines(self.after, self.encoding)
        return "".join(
            difflib.unified_diff(
                before,
                after,
                fromfile="/dev/null" if self.before is None else f"a/{label}",
                tofile=f"b/{label}",
            )
        )


def _lines(data: bytes, encoding: str) -> list[str]:
    text = data.decode(encoding, errors="replace")
    lines = text.splitlines(keepends=True)
    # keep the diff readable (and each line ending in one newline) whatever the file's newlines
    return [line.rstrip("\r\n") + "\n" for line in lines]


@dataclass
class Plan:
    """The files an operation writes, and what it has to say (definitions left unchanged, ...).

    Nothing touches the disk until `write()`, which writes every changed file or none.
    """

    root: Path
    changes: dict[Path, FileChange] = field(default_factory=dict[Path, FileChange])
    notes: list[str] = field(default_factory=list[str])

    def current(self, path: Path) -> bytes | None:
        """Return the content `path` has in this plan: planned, else on disk, else `None`."""
        if path in self.changes:
            return self.changes[path].after
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def put(self, path: Path, after: bytes, encoding: str = "utf-8") -> None:
        """Plan `path` to hold `after`."""
        before = self.changes[path].before if path in self.changes else self._on_disk(path)
        self.changes[path] = FileChange(path, before, after, encoding)

    def note(self, message: str) -> None:
        """Record a message for the user (shown on stderr by the CLI)."""
        if message not in self.notes:
            self.notes.append(message)

    @staticmethod
    def _on_disk(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    @property
    def changed(self) -> list[FileChange]:
        """The changes that would alter a file, in planning order."""
        return [c for c in self.changes.values() if c.changed]

    def label(self, path: Path) -> str:
        """Return `path` relative to the plan's root, for diffs and messages."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def diff(self) -> str:
        """Return the unified diff of every change."""
        return "".join(c.diff(self.label(c.path)) for c in self.changed)

    def write(self) -> list[Path]:
        """Write every changed file, or none: return the paths written.

        Each file goes to a temporary file beside it first; only when all are written are
        they moved into place, and a failure while moving restores the files already moved.

        Raises:
            OSError: a file could not be written (the project is left as it was).

        """
        changes = self.changed
        staged: list[tuple[FileChange, Path]] = []
        try:
            for change in changes:
                change.path.parent.mkdir(parents=True, exist_ok=True)
                temporary = change.path.with_name(f".{change.path.name}.cadence-{os.getpid()}.tmp")
                temporary.write_bytes(change.after)
                with contextlib.suppress(FileNotFoundError):
                    mode = stat.S_IMODE(change.path.stat().st_mode)
                    temporary.chmod(mode)
                staged.append((change, temporary))
        except BaseException:
            for _, temporary in staged:
                temporary.unlink(missing_ok=True)
            raise
        moved: list[FileChange] = []
        try:
            for change, temporary in staged:
                temporary.replace(change.path)
                moved.append(change)
        except BaseException:
            for change in moved:
                if change.before is None:
                    change.path.unlink(missing_ok=True)
                else:
                    change.path.write_bytes(change.before)
            for _, temporary in staged:
                temporary.unlink(missing_ok=True)
            raise
        return [c.path for c in changes]
