"""The libcst codemod commands wrap the edits and run like any libcst codemod."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import libcst as cst
from libcst.codemod import CodemodContext, TransformSuccess, transform_module

import cadence.codegen
from cadence.codegen import AddBeat, AttachBeat, Decorator
from cadence.codegen.commands import AddBeatCommand, AttachBeatCommand, CadenceCommand


def test_command_applies_its_edit_and_keeps_its_notes():
    command = AddBeatCommand(
        CodemodContext(),
        AddBeat(
            "charge",
            "OrderContext",
            "shop.contexts",
            decorators=[Decorator("beat", "cadence", "beat")],
        ),
    )
    assert isinstance(command, CadenceCommand)
    after = command.transform_module(cst.parse_module('"""Beats."""\n')).code
    assert after == (
        '"""Beats."""\n\n'
        "from cadence import beat\n\n"
        "from shop.contexts import OrderContext\n\n\n"
        "@beat\n"
        "async def charge(ctx: OrderContext) -> None:\n"
        '    """Charge."""\n'
    )
    again = AddBeatCommand(CodemodContext(), AddBeat("charge", "OrderContext", "shop.contexts"))
    assert again.transform_module(cst.parse_module(after)).code == after
    assert again.notes == ["charge already exists; left as it is"]


def test_libcst_runner_runs_the_command():
    command = AttachBeatCommand(CodemodContext(), AttachBeat("charge", "charge", "shop.beats"))
    result = transform_module(command, 'c = Cadence("c", Ctx())\n')
    assert isinstance(result, TransformSuccess)
    assert result.code == (
        'from shop.beats import charge\n\nc = Cadence("c", Ctx()).then("charge", charge)\n'
    )


def test_commands_load_lazily():
    assert cadence.codegen.AddBeatCommand is AddBeatCommand
    probe = "import sys, cadence.codegen; print('libcst.codemod' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert result.stdout.strip() == "False"
