"""The documentation site builds cleanly, every runnable example in it runs, and every Python
sample of README.md and the docs type-checks.

Python code fences in `docs/*.md` carry one of three kinds in their info string:

- `python`: a complete program; it is run as a script and must exit 0.
- `python pytest`: a complete pytest test module; it is run with pytest and must pass.
- `python skip`: a fragment, shown but not run.

README.md is never run (`examples/` holds its programs); its fences are fragments whatever their
kind says.

Every Python sample, README.md's and the docs', is type-checked, all in one mypy run (`--strict`
with the cadence_mypy plugin) and one pyright run (strict):

- programs and pytest modules as they are, with nothing relaxed;
- fragments after the page's prelude, `tests/docs_preludes/<page>.py` (`README.py`,
  `concepts.py`, `resilience_retry.py`, ...): honestly typed stand-ins for the names a fragment
  uses without defining (`db`, `Order`, `fetch_items`). A fragment with a top-level `await` is
  checked as the body of an `async def`. pyright's unused-name rules are off for fragments (a
  prelude name one fragment uses, another does not). A name the fragment defines replaces the
  prelude's (its definition, and the prelude's statements using it, are left out): the
  tutorial's context and beats grow as it goes;
- more words in the info string say what a sample shows on purpose:
  `expect=CODE,...` lists the mypy error codes and pyright rules (the words starting with
  `report`) it must produce, and nothing else (`python skip expect=arg-type,reportArgumentType`);
  `notype` marks pseudo-code that is not Python at all (it must fail to parse, so that nothing
  checkable hides behind the marker).

Every example runs in its own subprocess with warnings turned into errors.
"""

from __future__ import annotations

import ast
import json
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
    def words(self) -> list[str]:
        """The info string's words, less the type-checking ones (`expect=...`, `notype`)."""
        return [w for w in self.info.split() if not w.startswith("expect=") and w != "notype"]

    @property
    def kind(self) -> str | None:
        """`program`, `pytest` or `skip` for Python fences (None for an unknown marker)."""
        return MARKERS.get(" ".join(self.words))

    @property
    def expected(self) -> tuple[frozenset[str], frozenset[str]]:
        """The mypy codes and the pyright rules the sample must produce (`expect=...`)."""
        found = [
            code
            for word in self.info.split()
            if word.startswith("expect=")
            for code in word.removeprefix("expect=").split(",")
            if code
        ]
        rules = frozenset(c for c in found if c.startswith("report"))
        return frozenset(found) - rules, rules

    @property
    def checked(self) -> bool:
        """Whether the sample is type-checked (every Python fence but `notype` pseudo-code)."""
        return "notype" not in self.info.split()

    @property
    def is_fragment(self) -> bool:
        return self.kind == "skip" or self.path.name == "README.md"

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


# ----------------------------------------------------------------- type-checking every sample

README = ROOT / "README.md"
PRELUDES = ROOT / "tests" / "docs_preludes"
# Stand-in packages a page's samples import (docs/cli.md's generated `my_project`).
PRELUDE_PACKAGES = PRELUDES / "packages"
MYPY_CONFIG = ROOT / "typecheck_tests" / "mypy-plugin.ini"


def parses(fence: Fence) -> bool:
    try:
        compile(fence.source, fence.id, "exec", flags=ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError:
        return False
    return True


ALLOW_TOP_LEVEL_AWAIT = 0x2000  # ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
ALL_PYTHON_FENCES = [
    fence for page in [README, *PAGES] for fence in read_fences(page) if fence.is_python
]
# Pseudo-code that does not parse is left to test_fragments_parse_or_are_marked_pseudo_code.
TYPED_FENCES = [fence for fence in ALL_PYTHON_FENCES if fence.checked and parses(fence)]

# pyright's rules about names a module defines or imports and never uses: off for fragments,
# which share their page's prelude (and define names the page's prose goes on to use).
FRAGMENT_HEADER = (
    "# pyright: reportUnusedImport=false, reportUnusedVariable=false, "
    "reportUnusedClass=false, reportUnusedFunction=false, reportUnusedCoroutine=false\n"
)
MYPY_LINE = re.compile(
    r"^(?P<file>[^:\n]+\.py):(?P<line>\d+): (?P<severity>error|note): (?P<message>.*?)"
    r"(?:  \[(?P<code>[a-z0-9-]+)\])?$"
)


def prelude_name(page: Path) -> str:
    """Return the prelude module's name for a page: `README`, `concepts`, `resilience_retry`."""
    relative = page.relative_to(DOCS) if page.is_relative_to(DOCS) else Path(page.name)
    return "_".join(relative.with_suffix("").parts)


def module_name(fence: Fence) -> str:
    return f"sample_{prelude_name(fence.path).lower()}_{fence.line}"


@dataclass(frozen=True)
class Sample:
    """A fence written out as a module to type-check: its text and where its lines start."""

    fence: Fence
    text: str
    offset: int  # module line = fence source line + offset

    def fence_line(self, module_line: int) -> str:
        """Return `page:line` in the Markdown for a line of the module (or the prelude's)."""
        source_line = module_line - self.offset
        if source_line < 1:
            return f"{self.fence.id} (prelude line {module_line})"
        page = self.fence.path.relative_to(ROOT).as_posix()
        return f"{page}:{self.fence.line + source_line}"


def has_top_level_await(source: str) -> bool:
    """Whether a fragment awaits outside any function (a REPL-style snippet)."""
    try:
        compile(source, "<fragment>", "exec")
    except SyntaxError:
        return True  # `await` outside a function, the only syntax a checked fragment may lack
    return False


def _bound_names(node: ast.stmt) -> set[str]:
    """Return the names a top-level statement defines."""
    if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        return {node.name}
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).partition(".")[0] for a in node.names}
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def defined_names(source: str) -> set[str]:
    """Return the classes and functions a fragment defines at its top level.

    Variables are left out: a fragment may rebind a prelude's variable from its old value
    (`checkout = checkout.with_reporter(...)`).
    """
    tree = ast.parse(source, feature_version=(3, 11), type_comments=False)
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    }


def without_definitions(prelude: str, names: set[str]) -> str:
    """Drop the prelude's definitions of `names`, and what uses them: the fragment's own win."""
    if not names or not prelude:
        return prelude
    tree = ast.parse(prelude)
    removed = set(names)
    kept = list(tree.body)
    while True:
        keep = [
            node
            for node in kept
            if not _bound_names(node) & removed
            and not {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} & removed
        ]
        if len(keep) == len(kept):
            break
        removed |= {name for node in kept if node not in keep for name in _bound_names(node)}
        kept = keep
    return ast.unparse(ast.Module(body=kept, type_ignores=[])) + "\n"


def build_sample(fence: Fence) -> Sample:
    """Write a fence as a module: programs as they are, fragments after their page's prelude."""
    if not fence.is_fragment:
        return Sample(fence, fence.source, 0)
    prelude_path = PRELUDES / f"{prelude_name(fence.path)}.py"
    prelude = prelude_path.read_text(encoding="utf-8") if prelude_path.exists() else ""
    prelude = without_definitions(prelude, defined_names(fence.source))
    header = FRAGMENT_HEADER + "from __future__ import annotations\n" + prelude + "\n"
    body = fence.source
    if has_top_level_await(body):
        header += "\nasync def _fragment() -> None:\n"
        body = textwrap.indent(body, "    ")
    return Sample(fence, header + body, header.count("\n"))


def test_fragments_parse_or_are_marked_pseudo_code() -> None:
    """A checked fragment is Python; `notype` is only for what Python cannot parse."""
    wrong = [
        f"{fence.id}: not Python; mark it `notype`"
        if fence.checked
        else f"{fence.id}: parses, so it is type-checked: drop `notype`"
        for fence in ALL_PYTHON_FENCES
        if fence.checked != parses(fence)
    ]
    assert not wrong, "\n".join(wrong)


def test_every_page_prelude_belongs_to_a_page() -> None:
    pages = {prelude_name(page) for page in [README, *PAGES]}
    stale = sorted(p.stem for p in PRELUDES.glob("*.py") if p.stem not in pages)  # not packages/
    assert not stale, f"tests/docs_preludes has preludes for no page: {stale}"


def write_mypy_config(directory: Path) -> Path:
    """Write the plugin cases' mypy configuration, with the stand-in packages on mypy's path."""
    config = directory / "mypy.ini"
    config.write_text(
        MYPY_CONFIG.read_text(encoding="utf-8") + f"mypy_path = {PRELUDE_PACKAGES}\n",
        encoding="utf-8",
    )
    return config


@pytest.fixture(scope="module")
def typecheck_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[list[str], list[str]]]:
    """Type-check every sample in one mypy and one pyright run; return each one's findings.

    The findings of a sample are its mypy errors and its pyright errors, each line as
    `page:line: [code] message`.
    """
    directory = tmp_path_factory.mktemp("docs_samples")
    samples = {module_name(f): build_sample(f) for f in TYPED_FENCES}
    assert len(samples) == len(TYPED_FENCES), "two fences of one page on one line"
    for name, sample in samples.items():
        (directory / f"{name}.py").write_text(sample.text, encoding="utf-8")
    found: dict[str, tuple[list[str], list[str]]] = {name: ([], []) for name in samples}

    mypy = run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(write_mypy_config(directory)),
            "--cache-dir",
            str(directory / ".mypy_cache"),
            "--no-pretty",
            str(directory),
        ],
        cwd=ROOT,
    )
    for line in mypy.stdout.splitlines():
        match = MYPY_LINE.match(line)
        if match is None or match["severity"] != "error":
            continue
        name = Path(match["file"]).stem
        assert name in samples, f"mypy reported outside the samples: {line}\n{explain(mypy)}"
        where = samples[name].fence_line(int(match["line"]))
        found[name][0].append(f"{where}: [{match['code']}] {match['message']}")
    assert mypy.returncode in {0, 1}, explain(mypy)

    config = directory / "pyrightconfig.json"
    config.write_text(
        json.dumps(
            {
                "include": ["."],
                "exclude": [".mypy_cache"],
                "extraPaths": [str(ROOT), str(PRELUDE_PACKAGES)],
                "pythonVersion": "3.11",
                "typeCheckingMode": "strict",
                "reportUnnecessaryTypeIgnoreComment": "error",
                "enableTypeIgnoreComments": True,  # a sample's `# type: ignore` is for both
            }
        ),
        encoding="utf-8",
    )
    pyright = run(
        [
            sys.executable,
            "-m",
            "pyright",
            "-p",
            str(config),
            "--pythonpath",
            sys.executable,
            "--outputjson",
        ],
        cwd=ROOT,
    )
    report = json.loads(pyright.stdout)
    assert report["summary"]["filesAnalyzed"] == len(samples), explain(pyright)
    for diagnostic in report["generalDiagnostics"]:
        if diagnostic["severity"] != "error":
            continue
        name = Path(diagnostic["file"]).stem
        assert name in samples, f"pyright reported outside the samples: {diagnostic}"
        where = samples[name].fence_line(diagnostic["range"]["start"]["line"] + 1)
        message = diagnostic["message"].splitlines()[0]
        found[name][1].append(f"{where}: [{diagnostic.get('rule', '-')}] {message}")
    return {samples[name].fence.id: findings for name, findings in found.items()}


@pytest.mark.parametrize("fence", TYPED_FENCES, ids=[fence.id for fence in TYPED_FENCES])
def test_sample_typechecks(
    fence: Fence, typecheck_results: dict[str, tuple[list[str], list[str]]]
) -> None:
    mypy_errors, pyright_errors = typecheck_results[fence.id]
    codes = {re.search(r"\[([^]]*)\]", e)[1] for e in mypy_errors}  # type: ignore[index]
    rules = {re.search(r"\[([^]]*)\]", e)[1] for e in pyright_errors}  # type: ignore[index]
    expected_codes, expected_rules = fence.expected
    shown = "\n".join(["mypy:", *mypy_errors, "pyright:", *pyright_errors])
    assert (codes, rules) == (expected_codes, expected_rules), (
        f"{fence.id} ({fence.info!r}) should produce mypy {sorted(expected_codes)} and pyright "
        f"{sorted(expected_rules)}, and nothing else; it produces\n{shown}"
    )


def test_a_fragments_definitions_replace_the_preludes() -> None:
    prelude = (
        "from cadence import Cadence\n"
        "class Order: ...\n"
        "checkout = Cadence('checkout', Order())\n"
        "def charge() -> None: ...\n"
    )
    kept = without_definitions(prelude, defined_names("class Order:\n    x: int = 0\n"))
    assert "class Order" not in kept
    assert "checkout" not in kept  # it uses the prelude's Order
    assert "def charge" in kept
    assert "import Cadence" in kept


def test_info_string_markers() -> None:
    fence = Fence(README, 1, "python skip expect=arg-type,reportArgumentType notype", "x\n")
    assert fence.kind == "skip"
    assert fence.expected == (frozenset({"arg-type"}), frozenset({"reportArgumentType"}))
    assert not fence.checked
    assert fence.is_fragment
    program = Fence(DOCS / "index.md", 1, "python", "x\n")
    assert (program.kind, program.checked, program.is_fragment) == ("program", True, False)


def test_a_fragment_awaiting_at_the_top_level_is_checked_in_a_function() -> None:
    fence = Fence(DOCS / "tutorial.md", 10, "python skip", "result = await checkout.run()\n")
    sample = build_sample(fence)
    assert "async def _fragment() -> None:\n    result = await checkout.run()\n" in sample.text
    line = sample.text.splitlines().index("    result = await checkout.run()") + 1
    assert sample.fence_line(line) == "docs/tutorial.md:11"
