"""Types come from where `stubs/README.md` says: the dependencies themselves and cadence inline.

- `stubs/` holds its README and nothing else but stubs that a test exercises;
- every runtime dependency (and mypy, for the plugin) ships its own types: a `py.typed` in its
  distribution, or, for a single-module distribution, a stub in the typeshed that checkers
  bundle;
- the wheel ships `cadence/py.typed` (PEP 561) and the `cadence_mypy` plugin.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STUBS = ROOT / "stubs"
README = STUBS / "README.md"
THIS = Path(__file__).resolve()

# Distributions whose types cadence relies on, and where each gets them. A dependency added to
# pyproject.toml must be added here (and to the table in stubs/README.md) once its types are
# judged: shipped by itself, by typeshed, or, failing both, by a stub in stubs/.
TYPED = {
    "anyio": "py.typed",  # cadence's runtime dependency
    "typing-extensions": "typeshed",  # cadence's runtime dependency; one module, no py.typed
    "mypy": "py.typed",  # the `mypy` extra: cadence_mypy imports it
}


def _pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def _referencing_text() -> str:
    """Return the text of every test and type-check case, this file excepted."""
    texts = []
    for folder in (ROOT / "tests", ROOT / "typecheck_tests"):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.resolve() != THIS and "__pycache__" not in path.parts:
                try:
                    texts.append(path.read_text(encoding="utf-8"))
                except UnicodeDecodeError:
                    continue
    return "\n".join(texts)


def _stub_module(stub: Path) -> str:
    parts = list(stub.relative_to(STUBS).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


# ----------------------------------------------------------------- stubs/


def test_stubs_holds_its_readme_and_only_exercised_stubs() -> None:
    assert README.is_file(), "stubs/README.md states why stubs/ is (nearly) empty"
    files = [p for p in STUBS.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    strays = [p.relative_to(ROOT).as_posix() for p in files if p != README and p.suffix != ".pyi"]
    assert not strays, f"stubs/ holds only README.md and .pyi stubs, not {strays}"
    text = _referencing_text()
    unexercised = []
    for stub in (p for p in files if p.suffix == ".pyi"):
        path = stub.relative_to(ROOT).as_posix()
        imported = re.compile(rf"^\s*(from|import)\s+{re.escape(_stub_module(stub))}\b", re.M)
        if path not in text and not imported.search(text):
            unexercised.append(path)
    assert not unexercised, (
        f"no test or type-check case names or imports {unexercised}: a stub must be exercised "
        "(see stubs/README.md)"
    )


def test_readme_names_every_typed_dependency() -> None:
    readme = README.read_text(encoding="utf-8")
    for name in TYPED:
        assert f"`{name}`" in readme, f"stubs/README.md should say where {name}'s types come from"


# ----------------------------------------------------------------- dependencies ship their types


def test_every_runtime_dependency_is_judged() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    runtime = {_requirement_name(r) for r in project["dependencies"]}
    plugin = {_requirement_name(r) for r in project["optional-dependencies"]["mypy"]}
    unjudged = sorted((runtime | plugin) - set(TYPED))
    assert not unjudged, (
        f"{unjudged}: say in TYPED (tests/test_stubs.py) and stubs/README.md where the types of "
        "each new dependency come from"
    )


@pytest.mark.parametrize("name", sorted(TYPED))
def test_dependency_ships_its_types(name: str) -> None:
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        pytest.fail(f"{name} is not installed; `pip install -e . --group test` installs it")
    files = [f.as_posix() for f in dist.files or ()]
    markers = [f for f in files if f.count("/") == 1 and f.endswith("/py.typed")]
    modules = [f.removesuffix(".py") for f in files if "/" not in f and f.endswith(".py")]
    if TYPED[name] == "py.typed":
        assert markers, f"{name} {dist.version} ships no top-level <package>/py.typed"
        for marker in markers:
            located = Path(str(dist.locate_file(marker)))
            assert located.is_file(), f"{name}: {marker} is listed but not installed"
            content = located.read_text(encoding="utf-8").strip()
            assert content != "partial", f"{name}: {marker} marks a partial stub package"
        return
    # A single-module distribution cannot ship py.typed (PEP 561); typeshed types it instead,
    # and every checker bundles typeshed.
    import mypy  # noqa: PLC0415 # the test group installs it; only this case needs it

    typeshed = Path(mypy.__file__).parent / "typeshed" / "stdlib"
    assert modules, f"{name} {dist.version} is not a single-module distribution any more"
    for module in modules:
        assert (typeshed / f"{module}.pyi").is_file(), f"typeshed has no stub for {module}"
        versions = (typeshed / "VERSIONS").read_text(encoding="utf-8")
        assert re.search(rf"^{module}:", versions, re.M), f"typeshed does not list {module}"


# ----------------------------------------------------------------- the wheel ships cadence's types


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("cadence_flow-*.whl")
    return zipfile.ZipFile(built)


def test_wheel_ships_py_typed(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert "cadence/py.typed" in names
    assert wheel.read("cadence/py.typed").strip() == b"", "py.typed must not say 'partial'"
    for name in ("cadence/__init__.py", "cadence/resilience/__init__.py"):
        assert name in names
    assert not [n for n in names if n.endswith(".pyi")], "cadence's types are inline"


def test_wheel_ships_the_mypy_plugin(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    package = ROOT / "cadence_mypy"
    expected = {
        p.relative_to(ROOT).as_posix()
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert "cadence_mypy/__init__.py" in expected
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing}"


def test_wheel_ships_no_stubs_folder_or_tests(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/", 1)[0] for name in wheel.namelist()}
    assert tops <= {"cadence", "cadence_mypy", *(t for t in tops if t.endswith(".dist-info"))}
