"""The documentation site builds cleanly and every runnable example in it runs.

Python code fences in `docs/*.md` carry one of three info strings:

- `python`: a complete program; it is run as a script and must exit 0.
- `python pytest`: a complete pytest test module; it is run with pytest and must pass.
- `python skip`: a fragment, shown but not run.

Every example runs in its own subprocess with warnings turned into errors.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import cadence

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")
MARKERS = {"python": "program", "python pytest": "pytest", "python skip": "skip"}
EXAMPLE_TIMEOUT = 120


@dataclass(frozen=True)
class Fence:
    """One fenced code block of a docs page."""

    path: Path
    line: int  # 1-based line of the opening fence
    info: str
    source: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"

    @property
    def kind(self) -> str | None:
        """`program`, `pytest` or `skip` for Python fences (None for an unknown marker)."""
        return MARKERS.get(" ".join(self.info.split()))

    @property
    def is_python(self) -> bool:
        words = self.info.split()
        return bool(words) and words[0].lower() in {"python", "python3", "py", "pycon"}


def read_fences(path: Path) -> list[Fence]:
    """Return the fenced code blocks of a Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fences: list[Fence] = []
    index = 0
    while index < len(lines):
        opening = FENCE_OPEN.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            body.append(lines[end])
            end += 1
        if end == len(lines):
            raise ValueError(f"{path.name}:{index + 1}: the code fence is never closed")
        source = textwrap.dedent("\n".join(body)) if indent else "\n".join(body)
        fences.append(Fence(path, index + 1, opening["info"], source + "\n"))
        index = end + 1
    return fences


PAGES = sorted(DOCS.rglob("*.md"))
FENCES = [fence for page in PAGES for fence in read_fences(page)]
PYTHON_FENCES = [fence for fence in FENCES if fence.is_python]
PROGRAMS = [fence for fence in PYTHON_FENCES if fence.kind == "program"]
PYTEST_MODULES = [fence for fence in PYTHON_FENCES if fence.kind == "pytest"]


def example_env() -> dict[str, str]:
    """Return the environment examples run in: this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("PYTEST_ADDOPTS", None)
    env["NO_MKDOCS_2_WARNING"] = "1"  # mkdocs-material's banner about MkDocs 2.0: not a warning
    return env


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `command` (this interpreter and a fixed module or file) and capture its output."""
    return subprocess.run(
        command,
        cwd=cwd,
        env=example_env(),
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT,
        check=False,
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def test_docs_pages_exist() -> None:
    names = {page.name for page in PAGES}
    assert {
        "index.md",
        "tutorial.md",
        "concepts.md",
        "api.md",
        "testing.md",
        "design.md",
    } <= names
    assert PROGRAMS, "the docs should hold runnable examples"
    assert PYTEST_MODULES, "the testing guide should hold runnable pytest modules"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        cwd=ROOT,
    )
    assert result.returncode == 0, explain(result)
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("Cadence", "smart_merge", "BeatErrorGroup", "TimingHooks"):
        assert name in api


@pytest.mark.parametrize("fence", PYTHON_FENCES, ids=[fence.id for fence in PYTHON_FENCES])
def test_python_fences_are_marked(fence: Fence) -> None:
    assert fence.kind is not None, (
        f"{fence.id}: a Python fence is marked 'python' (a program to run), 'python pytest' "
        f"(a test module to run) or 'python skip' (a fragment), not {fence.info!r}"
    )


@pytest.mark.parametrize("fence", PROGRAMS, ids=[fence.id for fence in PROGRAMS])
def test_program_runs(fence: Fence, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(fence.source, encoding="utf-8")
    result = run([sys.executable, "-W", "error", str(script)], cwd=tmp_path)
    assert result.returncode == 0, f"{fence.id}\n{explain(result)}"


@pytest.mark.parametrize("fence", PYTEST_MODULES, ids=[fence.id for fence in PYTEST_MODULES])
def test_pytest_module_passes(fence: Fence, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\naddopts = -p no:cacheprovider\nfilterwarnings = error\n", encoding="utf-8"
    )
    module = tmp_path / "test_example.py"
    module.write_text(fence.source, encoding="utf-8")
    result = run([sys.executable, "-m", "pytest", "-q", str(module)], cwd=tmp_path)
    assert result.returncode == 0, f"{fence.id}\n{explain(result)}"
    assert re.search(r"\b\d+ passed\b", result.stdout), f"{fence.id}\n{explain(result)}"


def test_api_reference_covers_all_public_names() -> None:
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: cadence\.(\w+)\s*$", api, flags=re.MULTILINE))
    missing = sorted(set(cadence.__all__) - documented)
    assert not missing, f"docs/api.md has no `::: cadence.NAME` entry for {missing}"


def test_index_gives_the_readme_set_up_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"^python3 -m venv .*$", readme, flags=re.MULTILINE)
    assert len(commands) == 2, "README.md should give two set-up commands"
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for command in commands:
        assert command in index.splitlines(), f"docs/index.md lacks: {command}"
