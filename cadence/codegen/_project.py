"""Finding the project a command works on: its root, package and the modules codegen edits."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cadence.codegen._errors import CodegenError

__all__ = ["Project", "find_project"]

DEFAULT_LINE_LENGTH = 88


@dataclass(frozen=True, slots=True)
class Project:
    """A cadence project: a `pyproject.toml` and one package whose modules codegen edits.

    Attributes:
        root: The directory holding `pyproject.toml`.
        package: The package's import name.
        package_dir: The package's directory (`src/<package>` or `<package>`).
        line_length: The line length the project formats to (ruff's, else 88).

    """

    root: Path
    package: str
    package_dir: Path
    line_length: int = DEFAULT_LINE_LENGTH

    @property
    def contexts(self) -> Path:
        """The module that holds the context classes."""
        return self.package_dir / "contexts.py"

    @property
    def beats(self) -> Path:
        """The module that holds the beats."""
        return self.package_dir / "beats.py"

    @property
    def cadences(self) -> Path:
        """The module that holds the cadences."""
        return self.package_dir / "cadences.py"

    @property
    def tests(self) -> Path:
        """The test module for the cadences."""
        return self.root / "tests" / "test_cadences.py"

    def module_name(self, path: Path) -> str:
        """Return the import name of a module of the package (`contexts.py` -> `pkg.contexts`)."""
        relative = path.relative_to(self.package_dir).with_suffix("")
        return ".".join((self.package, *relative.parts))

    def relative(self, path: Path) -> str:
        """Return `path` relative to the project root, for messages."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


def find_project(start: Path | None = None) -> Project:
    """Return the project containing `start` (default: the current directory).

    The project is the nearest directory upwards with a `pyproject.toml`; its package is named
    by `[tool.cadence] package = "..."`, else it is the only package under `src/` (or beside
    `pyproject.toml`) that has a `cadences.py`.

    Raises:
        CodegenError: no `pyproject.toml` is found, or its package cannot be told.

    """
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            return _read(directory, pyproject)
    raise CodegenError(
        f"not inside a project: no pyproject.toml in {here} or above "
        "(create one with: cadence init NAME)"
    )


def _table(parent: dict[str, object], key: str) -> dict[str, object]:
    value = parent.get(key)
    return cast("dict[str, object]", value) if isinstance(value, dict) else {}


def _read(root: Path, pyproject: Path) -> Project:
    try:
        config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise CodegenError(f"cannot read {pyproject}: {error}") from None
    tool = _table(config, "tool")
    line_length = _table(tool, "ruff").get("line-length", DEFAULT_LINE_LENGTH)
    if not isinstance(line_length, int) or line_length <= 0:
        line_length = DEFAULT_LINE_LENGTH
    package = _table(tool, "cadence").get("package")
    if isinstance(package, str) and package:
        for base in (root / "src", root):
            if (base / package).is_dir():
                return Project(root, package, base / package, line_length)
        raise CodegenError(
            f"{pyproject}: [tool.cadence] package = {package!r}, but neither src/{package} "
            f"nor {package}/ exists"
        )
    candidates = [
        d
        for base in (root / "src", root)
        if base.is_dir()
        for d in sorted(base.iterdir())
        if (d / "__init__.py").is_file() and (d / "cadences.py").is_file()
    ]
    if len(candidates) == 1:
        return Project(root, candidates[0].name, candidates[0], line_length)
    found = ", ".join(d.name for d in candidates) or "none"
    raise CodegenError(
        f"{pyproject}: cannot tell which package to edit (packages with a cadences.py: "
        f'{found}); name it with [tool.cadence] package = "..."'
    )
