"""The cadence_mypy plugin's typing cases hold, and mypy reports them the same way however it runs.

- `typecheck_tests/yaml/*.yml` are pytest-mypy-plugins cases pinning the plugin's exact messages.
  They run in one pytest subprocess per session, for two reasons: the collector needs
  `--mypy-ini-file` (the base configuration, typecheck_tests/mypy-plugin.ini), and it looks mypy
  up on PATH, which `python -m pytest` from an unactivated venv does not set. Each case is then
  reported here as a test of its own, `test_yaml_case[<file>::<case>]`.
- `typecheck_tests/plugin/*.py` are modules using cadence, correct apart from plugin-detected
  mistakes silenced by `# type: ignore[cadence-...]`; mypy with warn_unused_ignores must pass on
  them, and must fail without the plugin on exactly the ignores that name a plugin code.
- mypy's output over those modules plus copies with their ignores removed ("known errors") is
  identical with a cold and a warm cache, under `dmypy run`, and with `-n 2` parallel workers.
- `import cadence_mypy` leaves the cadence runtime alone, and `cadence_mypy.main` brings in
  nothing but mypy (with what mypy itself imports) and the standard library.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TYPECHECK = ROOT / "typecheck_tests"
YAML_CASES = TYPECHECK / "yaml"
PLUGIN_CASES = TYPECHECK / "plugin"
MYPY_CONFIG = TYPECHECK / "mypy-plugin.ini"

PLUGIN_CODES = frozenset(
    {
        "cadence-field",
        "cadence-config",
        "cadence-context",
        "cadence-name",
        "cadence-dataclass",
        "cadence-beat",
        "cadence-immutable",
        "cadence-lambda",
    }
)
IGNORE = re.compile(r"  # type: ignore\[([^]]*)\]")
INLINE_CONFIG = re.compile(r"^# mypy: .*$", re.MULTILINE)
UNUSED_IGNORE = re.compile(
    r"^(?P<file>[^:\n]+):(?P<line>\d+): error: Unused (?P<what>.*) comment  \[unused-ignore\]$",
    re.MULTILINE,
)


def _python(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run this interpreter with `args`; return the exit code and stdout followed by stderr."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
    )
    return result.returncode, result.stdout + result.stderr


def _mypy(*args: str) -> tuple[int, str]:
    return _python("-m", "mypy", *args)


def _plugin_files() -> list[Path]:
    files = sorted(PLUGIN_CASES.glob("*.py"))
    assert files, f"no case files in {PLUGIN_CASES}"
    return files


# ----------------------------------------------------------------- YAML cases


def _yaml_case_ids() -> list[str]:
    """Return `<file>::<case>` for every case, named as pytest-mypy-plugins names its items."""
    ids = []
    for path in sorted(YAML_CASES.glob("test_*.yml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8")):
            for params in case.get("parametrized") or [{}]:
                suffix = ",".join(f"{k}={v}" for k, v in params.items() if not k.startswith("__"))
                ids.append(f"{path.name}::{case['case']}" + (f"[{suffix}]" if suffix else ""))
    return ids


YAML_CASE_IDS = _yaml_case_ids()
_INNER_PYTEST_UNSET = frozenset(
    {"PYTEST_ADDOPTS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_PLUGINS"}
)


@pytest.fixture(scope="session")
def yaml_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], str]:
    """Run every YAML case in one pytest subprocess; return each case's outcome and the output."""
    base = tmp_path_factory.mktemp("mypy_testing_base")  # the cases' shared mypy cache is here
    # A plain pytest run over the YAML directory, whatever options this run was given.
    env = {k: v for k, v in os.environ.items() if k not in _INNER_PYTEST_UNSET}
    # pytest-mypy-plugins runs the `mypy` it finds on PATH: make it this interpreter's.
    env["PATH"] = os.pathsep.join([sysconfig.get_path("scripts"), env.get("PATH", "")])
    args = [
        "pytest",
        str(YAML_CASES.relative_to(ROOT)),
        f"--mypy-ini-file={MYPY_CONFIG.relative_to(ROOT)}",
        f"--mypy-testing-base={base}",
        # mypy in this process: it imports the plugin from this run's import path, so a checkout
        # on PYTHONPATH is checked with its own cadence_mypy, not one installed elsewhere.
        "--mypy-same-process",
        # ... which swaps sys.modules around each case; hypothesis' plugin, importing lazily at
        # the end of the session, then fails: it is not needed here.
        "-p",
        "no:hypothesispytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rA",
    ]
    _, output = _python("-m", *args, env=env)
    prefix = f"{YAML_CASES.relative_to(ROOT).as_posix()}/"
    outcomes = {
        match["id"].removeprefix(prefix): match["outcome"]
        for match in re.finditer(r"^(?P<outcome>[A-Z]+) (?P<id>\S+)", output, re.MULTILINE)
        if match["id"].startswith(prefix)
    }
    return outcomes, output


def test_yaml_cases_all_ran(yaml_results: tuple[dict[str, str], str]) -> None:
    outcomes, output = yaml_results
    assert YAML_CASE_IDS, f"no cases in {YAML_CASES}"
    assert sorted(outcomes) == sorted(YAML_CASE_IDS), output
    assert re.search(rf"^{len(YAML_CASE_IDS)} passed in ", output, re.MULTILINE), output


@pytest.mark.parametrize("case_id", YAML_CASE_IDS)
def test_yaml_case(case_id: str, yaml_results: tuple[dict[str, str], str]) -> None:
    outcomes, output = yaml_results
    if outcomes.get(case_id) == "PASSED":
        return
    name = re.escape(case_id.partition("::")[2])
    sections = re.findall(rf"^_+ {name} _+\n.*?(?=^_{{3,}} |^=+ )", output, re.M | re.S)
    pytest.fail(f"{case_id}: {outcomes.get(case_id, 'not run')}\n" + "".join(sections or [output]))


# ----------------------------------------------------------------- plugin modules


def _mypy_args(cache_dir: Path, *paths: Path, config: Path = MYPY_CONFIG) -> list[str]:
    relative = [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in paths]
    return ["--config-file", str(config), "--cache-dir", str(cache_dir), *relative]


def test_plugin_modules(tmp_path: Path) -> None:
    code, output = _mypy(*_mypy_args(tmp_path / "cache", PLUGIN_CASES))
    assert code == 0, output
    assert output == f"Success: no issues found in {len(_plugin_files())} source files\n", output


def test_plugin_modules_need_the_plugin(tmp_path: Path) -> None:
    """Without the plugin, exactly the plugin codes in the ignores are reported as unused."""
    config = tmp_path / "mypy-no-plugin.ini"
    config.write_text(
        re.sub(r"^plugins = .*$", "plugins =", MYPY_CONFIG.read_text(encoding="utf-8"), flags=re.M),
        encoding="utf-8",
    )
    cases = tmp_path / "cases"
    cases.mkdir()
    expected = set()
    for path in _plugin_files():
        # mypy cannot read an inline `enable-error-code` naming a code no plugin registered, so
        # the inline configuration becomes a blank line (line numbers are kept).
        text = INLINE_CONFIG.sub("", path.read_text(encoding="utf-8"))
        (cases / path.name).write_text(text, encoding="utf-8")
        for lineno, line in enumerate(text.splitlines(), start=1):
            if match := IGNORE.search(line):
                codes = [code.strip() for code in match[1].split(",")]
                unused = [code for code in codes if code in PLUGIN_CODES]
                # mypy names the unused codes, or none when the whole comment is unused.
                what = "" if unused == codes else f"[{', '.join(unused)}]"
                if unused:
                    expected.add(f'{path.name}:{lineno}: Unused "type: ignore{what}"')
    assert expected, "no plugin codes in the ignores"
    code, output = _mypy(*_mypy_args(tmp_path / "cache", cases, config=config))
    assert code == 1, output
    found = {
        f"{Path(m['file']).name}:{m['line']}: Unused {m['what']}"
        for m in UNUSED_IGNORE.finditer(output)
    }
    assert found == expected, output
    assert f"Found {len(expected)} errors in " in output, output


# ----------------------------------------------------------------- one output, however mypy runs


@pytest.fixture(scope="module")
def known_errors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin modules with their ignores removed: every check they silence is reported."""
    directory = tmp_path_factory.mktemp("known_errors")
    for path in _plugin_files():
        text = IGNORE.sub("", path.read_text(encoding="utf-8"))
        (directory / f"unignored_{path.name}").write_text(text, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, known_errors: Path) -> tuple[Path, str]:
    """mypy's output with a cold cache, and the (now warm) cache directory."""
    cache_dir = tmp_path_factory.mktemp("warm_cache")
    code, output = _mypy(*_mypy_args(cache_dir, PLUGIN_CASES, known_errors))
    assert code == 1, output
    return cache_dir, output


def test_known_errors_cover_every_check(baseline: tuple[Path, str], known_errors: Path) -> None:
    _, output = baseline
    lines = output.splitlines()
    assert all(line.startswith(str(known_errors)) for line in lines[:-1]), output
    reported = {code for line in lines for code in re.findall(r"  \[([a-z-]+)\]$", line)}
    # cadence-context and cadence-beat are notes, shown without their code.
    assert PLUGIN_CODES - {"cadence-context", "cadence-beat"} <= reported, output
    assert any(": note: Beat " in line for line in lines), output  # cadence-context notes
    assert any(": note: Merge " in line for line in lines), output
    assert any(": note: @beat: " in line for line in lines), output  # cadence-beat notes
    checked = 2 * len(_plugin_files())
    assert re.fullmatch(
        rf"Found \d+ errors in \d+ files \(checked {checked} source files\)", lines[-1]
    )


def test_warm_cache_gives_the_same_output(baseline: tuple[Path, str], known_errors: Path) -> None:
    cache_dir, cold = baseline
    code, warm = _mypy(*_mypy_args(cache_dir, PLUGIN_CASES, known_errors))
    assert code == 1, warm
    assert warm == cold


def test_dmypy_gives_the_same_output(
    tmp_path: Path, baseline: tuple[Path, str], known_errors: Path
) -> None:
    _, expected = baseline
    client = ["-m", "mypy.dmypy", "--status-file", str(tmp_path / "dmypy.json")]
    args = _mypy_args(tmp_path / "cache", PLUGIN_CASES, known_errors)
    try:
        # --timeout: the daemon shuts itself down if `stop` below never reaches it.
        first_code, first = _python(*client, "run", "--timeout", "120", "--", *args)
        second_code, second = _python(*client, "run", "--", *args)
    finally:
        stop_code, stopped = _python(*client, "stop")
        if stop_code != 0:
            _python(*client, "kill")
    assert stop_code == 0, stopped
    # The only normalisation: the client's own "Daemon started" line before the first output.
    assert first.startswith("Daemon started\n"), first
    assert (first_code, first.removeprefix("Daemon started\n")) == (1, expected)
    assert (second_code, second) == (1, expected)


def _by_file(output: str) -> list[str]:
    """Group the message lines by file, files in sorted order, each file's lines in order."""
    *messages, summary = output.splitlines(keepends=True)
    files: dict[str, list[str]] = {}
    for line in messages:
        files.setdefault(line.partition(":")[0], []).append(line)
    return [line for name in sorted(files) for line in files[name]] + [summary]


def test_parallel_workers_give_the_same_output(
    tmp_path: Path, baseline: tuple[Path, str], known_errors: Path
) -> None:
    _, expected = baseline
    code, output = _mypy("-n", "2", *_mypy_args(tmp_path / "cache", PLUGIN_CASES, known_errors))
    assert code == 1, output
    # The only normalisation: parallel workers report the files in the order they finish them,
    # so the files are put in one order; the messages of each file must be the same, in order.
    assert _by_file(output) == _by_file(expected)


# ----------------------------------------------------------------- what the plugin imports


def test_import_cadence_mypy_does_not_import_cadence() -> None:
    code, output = _python(
        "-c",
        "import sys, cadence_mypy\n"
        "assert 'cadence' not in sys.modules, sorted(sys.modules)\n"
        "import cadence_mypy.main, mypy.version\n"
        "cadence_mypy.plugin(mypy.version.__version__)\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'cadence']\n"
        "assert not loaded, loaded\n",
    )
    assert code == 0, output


def test_main_imports_only_mypy_and_the_standard_library() -> None:
    """What `cadence_mypy.main` imports, apart from the standard library, mypy imports anyway."""
    code, output = _python(
        "-c",
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import cadence_mypy.main\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n",
    )
    assert code == 0, output
    imported: list[str] = json.loads(output)
    assert "cadence_mypy.main" in imported, imported
    outside = {
        m for m in imported if m.split(".")[0] not in {"cadence_mypy", *sys.stdlib_module_names}
    }
    mypy_modules = sorted(m for m in outside if m.split(".")[0] == "mypy")
    assert mypy_modules, imported
    # The same mypy modules, imported without the plugin: what they bring in is mypy's doing.
    code, output = _python(
        "-c",
        "import importlib, json, sys\n"
        "before = set(sys.modules)\n"
        f"for name in {mypy_modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n",
    )
    assert code == 0, output
    assert outside <= set(json.loads(output)), sorted(outside - set(json.loads(output)))
