"""`cadence init` and `cadence new ...` through CliRunner: output, files, flags and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence.cli._app import cli


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    assert invoke("init", "shop").exit_code == 0
    monkeypatch.chdir(tmp_path / "shop")
    return tmp_path / "shop"


def test_init_prints_next_steps_and_refuses_to_overwrite(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("init", "my-project")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "created my-project/pyproject.toml" in result.stderr
    assert "  cd my-project\n" in result.stderr
    assert (tmp_path / "my-project" / "src" / "my_project" / "cadences.py").is_file()
    again = invoke("init", "my-project")
    assert again.exit_code == 2
    assert again.stderr.startswith("Error: ")
    assert "exists and is not empty" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_init_rejects_a_bad_name(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("init", "9lives")
    assert result.exit_code == 2
    assert "'9lives' is not a valid project name" in result.stderr
    assert not (tmp_path / "9lives").exists()


def test_new_context(project: Path):
    result = invoke(
        "new", "context", "order", "--field", "order_id:str", "--field", "total:float=0.0"
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == "updated src/shop/contexts.py\n"
    assert (
        (project / "src/shop/contexts.py")
        .read_text()
        .endswith(
            "@dataclass\n"
            "class OrderContext(Context):\n"
            '    """What the order cadence works on."""\n\n'
            "    order_id: str\n"
            "    total: float = 0.0\n"
        )
    )


def test_new_context_immutable(project: Path):
    result = invoke("new", "context", "settings", "--field", 'region:str="eu"', "--immutable")
    assert result.exit_code == 0, result.output
    text = (project / "src/shop/contexts.py").read_text()
    assert "@dataclass(frozen=True)\nclass SettingsContext(ImmutableContext):\n" in text
    assert "from cadence import ImmutableContext\n" in text


def test_new_cadence_then_beats_then_idempotent(project: Path):
    assert invoke("new", "cadence", "checkout").exit_code == 0
    result = invoke(
        "new", "beat", "process-payment", "--retry", "3", "--timeout", "30", "--cadence", "checkout"
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == "updated src/shop/beats.py\nupdated src/shop/cadences.py\n"
    before = snapshot(project)
    again = invoke(
        "new", "beat", "process-payment", "--retry", "3", "--timeout", "30", "--cadence", "checkout"
    )
    assert again.exit_code == 0
    assert "process_payment already exists; left as it is" in again.stderr
    assert again.stderr.endswith("nothing to change\n")
    assert snapshot(project) == before
    cadences = (project / "src/shop/cadences.py").read_text()
    assert (
        'Cadence("checkout", CheckoutContext()).then("process_payment", process_payment)'
        in cadences
    )


def test_dry_run_diff_and_check_write_nothing(project: Path):
    before = snapshot(project)
    dry = invoke("new", "cadence", "checkout", "--dry-run")
    assert (dry.exit_code, dry.stdout) == (0, "")
    assert dry.stderr.splitlines() == [
        "would update src/shop/contexts.py",
        "would update src/shop/cadences.py",
        "would update tests/test_cadences.py",
    ]
    diff = invoke("new", "cadence", "checkout", "--diff")
    assert diff.exit_code == 0
    assert diff.stdout.startswith("--- a/src/shop/contexts.py\n+++ b/src/shop/contexts.py\n")
    assert '+checkout_cadence = Cadence("checkout", CheckoutContext())\n' in diff.stdout
    check = invoke("new", "cadence", "checkout", "--check")
    assert check.exit_code == 1
    assert snapshot(project) == before
    assert invoke("new", "cadence", "checkout").exit_code == 0
    assert invoke("new", "cadence", "checkout", "--check").exit_code == 0


def test_new_outside_a_project(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("new", "cadence", "checkout")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: not inside a project: no pyproject.toml in ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_syntax_error_in_a_file_to_edit(project: Path):
    (project / "src/shop/cadences.py").write_text("x = (\n")
    result = invoke("new", "beat", "shout")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: src/shop/cadences.py:")
    assert "cannot parse the file to edit it" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["new", "beat", "x", "--retry", "0"], "Invalid value for '--retry'"),
        (["new", "beat", "x", "--timeout", "0"], "Invalid value for '--timeout'"),
        (["new", "beat", "x", "--fallback", "nope"], "expected FIELD=LITERAL"),
        (["new", "beat", "x", "--fallback", "a=foo()"], "is not a Python literal"),
        (["new", "beat", "x", "--breaker", "five"], "expected THRESHOLD"),
        (["new", "beat", "x", "--context", "Nope"], "has no context class NopeContext"),
        (["new", "context", "order", "--field", "id"], "expected name:type"),
        (["new", "cadence", "9"], "use letters, digits"),
    ],
)
def test_usage_and_user_errors_exit_2(project: Path, args: list[str], message: str):
    before = snapshot(project)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert snapshot(project) == before


def test_init_dry_run_and_diff_write_nothing(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dry = invoke("init", "shop", "--dry-run")
    assert dry.exit_code == 0
    assert "would create shop/pyproject.toml" in dry.stderr
    diff = invoke("init", "shop", "--diff")
    assert diff.exit_code == 0
    assert "--- /dev/null\n+++ b/shop/pyproject.toml\n" in diff.stdout
    assert invoke("init", "shop", "--check").exit_code == 1
    assert not (tmp_path / "shop").exists()


def test_the_spec_commands_as_written(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("init", "my-project").exit_code == 0
    monkeypatch.chdir(tmp_path / "my-project")
    assert invoke("new", "cadence", "checkout").exit_code == 0
    result = invoke("new", "beat", "process-payment", "--retry", "3", "--timeout", "30")
    assert result.exit_code == 0
    assert (
        (tmp_path / "my-project/src/my_project/cadences.py")
        .read_text()
        .endswith(
            'checkout_cadence = Cadence("checkout", CheckoutContext())'
            '.then("process_payment", process_payment)\n'
        )
    )
