"""`cadence init`: the files of a new project, ready to test and type-check."""

from __future__ import annotations

import keyword
import re
import sys
from pathlib import Path

from cadence.codegen._errors import CodegenError
from cadence.codegen._plan import Plan

__all__ = ["init_project", "package_name"]

_PROJECT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*$")
_RESERVED = frozenset({"cadence", "cadence_mypy", "test", "tests", "src"})


def package_name(project_name: str) -> str:
    """Return the import name of a project (`my-project` -> `my_project`).

    Raises:
        CodegenError: the name is not a valid project name, or makes an unusable package name.

    """
    if not _PROJECT_NAME.match(project_name):
        raise CodegenError(
            f"{project_name!r} is not a valid project name: use letters and digits, separated "
            "by single '-', '_' or '.', starting with a letter (e.g. my-project)"
        )
    package = re.sub(r"[-.]", "_", project_name).lower()
    if keyword.iskeyword(package) or package in sys.stdlib_module_names or package in _RESERVED:
        raise CodegenError(
            f"project name {project_name!r} makes the package {package!r}, which would shadow "
            "a module Python or cadence needs; choose another name"
        )
    return package


def _files(project: str, package: str, version: str) -> dict[str, str]:
    title = project.replace("-", " ").replace("_", " ").replace(".", " ").title()
    return {
        "pyproject.toml": f"""\
[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[project]
name = "{project}"
version = "0.1.0"
description = "Service logic built with cadence."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["cadence-flow>={version}"]

[dependency-groups]
dev = [
    "cadence-flow[cli,mypy]>={version}",
    "pytest>=8.3",
    "mypy>=1.13",
    "pyright>=1.1.390",
    "ruff>=0.8",
]

[tool.cadence]
package = "{package}"

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["src"]
addopts = ["--strict-markers", "--strict-config"]
filterwarnings = ["error"]

[tool.mypy]
strict = true
plugins = ["cadence_mypy"]
mypy_path = "src"
files = ["src", "tests"]

[tool.pyright]
include = ["src", "tests"]
extraPaths = ["src"]
typeCheckingMode = "strict"

[tool.ruff]
line-length = 100
src = ["src"]

[tool.ruff.lint]
select = ["E", "W", "F", "I", "B", "UP", "SIM", "C4", "RUF", "ANN", "N"]
""",
        "README.md": f"""\
# {title}

Service logic built with [cadence](https://pypi.org/project/cadence-flow/): contexts in
`src/{package}/contexts.py`, beats in `beats.py`, cadences in `cadences.py`.

Install it with its development tools, then run the tests and both type checkers:

```bash
python -m pip install -e . --group dev
python -m pytest && python -m mypy && pyright
```

Add to it with `cadence new context ...`, `cadence new cadence ...` and `cadence new beat ...`;
check it with `cadence validate {package}.cadences`.
""",
        ".gitignore": "\n".join(
            ["__pycache__/", "*.egg-info/", ".venv/", ".mypy_cache/", ".pytest_cache/", ""]
        ),
        f"src/{package}/__init__.py": f'"""{title}: service logic built with cadence."""\n',
        f"src/{package}/py.typed": "",
        f"src/{package}/contexts.py": '"""The contexts: what each cadence works on."""\n',
        f"src/{package}/beats.py": '"""The beats: the small steps the cadences run."""\n',
        f"src/{package}/cadences.py": '"""The cadences: beats wired into plans."""\n',
        "tests/test_cadences.py": f'''\
"""Tests of the cadences."""

from __future__ import annotations

from cadence import validate


def test_the_cadences_validate() -> None:
    """Every cadence of the project passes `cadence validate`."""
    report = validate("{package}.cadences")
    assert report.findings == ()
''',
    }


def init_project(directory: Path, name: str | None = None, *, version: str = "0.1.0") -> Plan:
    """Plan a new project in `directory` (which must not exist, or be empty).

    Args:
        directory: Where to create it.
        name: The project's name (default: the directory's name).
        version: The lowest cadence-flow version it depends on.

    Raises:
        CodegenError: the directory is a file or not empty, or the name is invalid.

    """
    directory = directory.resolve()
    project = name or directory.name
    package = package_name(project)
    if directory.exists():
        if not directory.is_dir():
            raise CodegenError(f"{directory} exists and is not a directory")
        if any(directory.iterdir()):
            raise CodegenError(
                f"{directory} exists and is not empty; choose a new directory (nothing was written)"
            )
    plan = Plan(directory.parent)
    for relative, text in _files(project, package, version).items():
        plan.put(directory / relative, text.encode("utf-8"))
    return plan
