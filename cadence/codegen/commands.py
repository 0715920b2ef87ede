"""The codemods as libcst `VisitorBasedCodemodCommand`s, one per edit.

Each command wraps an edit (`cadence.codegen.AddBeat`, ...) and applies it to one module, so it
runs wherever libcst runs codemods:

```python skip
import libcst
from libcst.codemod import CodemodContext

from cadence.codegen import AddBeat
from cadence.codegen.commands import AddBeatCommand

command = AddBeatCommand(CodemodContext(), AddBeat("charge", "OrderContext", "shop.contexts"))
print(command.transform_module(libcst.parse_module(source)).code)
print(command.notes)  # e.g. ["charge already exists; left as it is"]
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from libcst.codemod import CodemodContext, VisitorBasedCodemodCommand

from cadence.codegen._edits import AddBeat, AddCadence, AddCadenceTest, AddContext, AttachBeat, Edit

if TYPE_CHECKING:
    import libcst as cst

__all__ = [
    "AddBeatCommand",
    "AddCadenceCommand",
    "AddCadenceTestCommand",
    "AddContextCommand",
    "AttachBeatCommand",
    "CadenceCommand",
]


class CadenceCommand(VisitorBasedCodemodCommand):
    """A codemod command that applies one cadence edit to a module."""

    DESCRIPTION = "Apply a cadence code-generation edit."

    def __init__(self, context: CodemodContext, change: Edit) -> None:
        super().__init__(context)
        self.change = change

    @property
    def notes(self) -> list[str]:
        """What the edit left alone, and why."""
        return self.change.notes

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        """Apply the edit; it reads only top-level statements, so the tree is not walked."""
        return self.change.edit(tree)


class AddContextCommand(CadenceCommand):
    """Add a typed context dataclass."""

    DESCRIPTION = AddContext.DESCRIPTION

    def __init__(self, context: CodemodContext, change: AddContext) -> None:
        super().__init__(context, change)


class AddCadenceCommand(CadenceCommand):
    """Add a cadence definition."""

    DESCRIPTION = AddCadence.DESCRIPTION

    def __init__(self, context: CodemodContext, change: AddCadence) -> None:
        super().__init__(context, change)


class AddBeatCommand(CadenceCommand):
    """Add a typed beat with its resilience decorators."""

    DESCRIPTION = AddBeat.DESCRIPTION

    def __init__(self, context: CodemodContext, change: AddBeat) -> None:
        super().__init__(context, change)


class AttachBeatCommand(CadenceCommand):
    """Attach a beat to a cadence's builder chain."""

    DESCRIPTION = AttachBeat.DESCRIPTION

    def __init__(self, context: CodemodContext, change: AttachBeat) -> None:
        super().__init__(context, change)


class AddCadenceTestCommand(CadenceCommand):
    """Add a test that runs a cadence."""

    DESCRIPTION = AddCadenceTest.DESCRIPTION

    def __init__(self, context: CodemodContext, change: AddCadenceTest) -> None:
        super().__init__(context, change)
