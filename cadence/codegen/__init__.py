"""Code generation for cadence projects: libcst codemods that add contexts, cadences and beats.

Usable without the CLI: find the project, plan an operation, look at the plan, write it.

```python skip
from cadence.codegen import BeatOptions, find_project, new_beat

plan = new_beat(find_project(), "process-payment", BeatOptions(retry=3, timeout=30))
print(plan.diff())
plan.write()
```

Every operation is idempotent (run twice, the second changes nothing), never rewrites an
existing definition (it adds a note to the plan instead), and keeps each file's formatting,
comments, newlines and encoding. `Plan.write()` writes all files or none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cadence.codegen._edits import AddBeat as AddBeat
from cadence.codegen._edits import AddCadence as AddCadence
from cadence.codegen._edits import AddCadenceTest as AddCadenceTest
from cadence.codegen._edits import AddContext as AddContext
from cadence.codegen._edits import AttachBeat as AttachBeat
from cadence.codegen._edits import ContextField as ContextField
from cadence.codegen._edits import Decorator as Decorator
from cadence.codegen._edits import Edit as Edit
from cadence.codegen._errors import CodegenError as CodegenError
from cadence.codegen._init import init_project as init_project
from cadence.codegen._init import package_name as package_name
from cadence.codegen._operations import BeatOptions as BeatOptions
from cadence.codegen._operations import new_beat as new_beat
from cadence.codegen._operations import new_cadence as new_cadence
from cadence.codegen._operations import new_context as new_context
from cadence.codegen._operations import parse_field as parse_field
from cadence.codegen._plan import FileChange as FileChange
from cadence.codegen._plan import Plan as Plan
from cadence.codegen._project import Project as Project
from cadence.codegen._project import find_project as find_project

if TYPE_CHECKING:
    from cadence.codegen.commands import AddBeatCommand as AddBeatCommand
    from cadence.codegen.commands import AddCadenceCommand as AddCadenceCommand
    from cadence.codegen.commands import AddCadenceTestCommand as AddCadenceTestCommand
    from cadence.codegen.commands import AddContextCommand as AddContextCommand
    from cadence.codegen.commands import AttachBeatCommand as AttachBeatCommand
    from cadence.codegen.commands import CadenceCommand as CadenceCommand

_COMMANDS = frozenset(
    {
        "AddBeatCommand",
        "AddCadenceCommand",
        "AddCadenceTestCommand",
        "AddContextCommand",
        "AttachBeatCommand",
        "CadenceCommand",
    }
)


def __getattr__(name: str) -> object:
    """Import the codemod commands on first use (`libcst.codemod` is slow to import)."""
    if name in _COMMANDS:
        from cadence.codegen import commands  # noqa: PLC0415 # lazy on purpose

        return getattr(commands, name)
    raise AttributeError(f"module 'cadence.codegen' has no attribute {name!r}")


__all__ = [
    "AddBeat",
    "AddBeatCommand",
    "AddCadence",
    "AddCadenceCommand",
    "AddCadenceTest",
    "AddCadenceTestCommand",
    "AddContext",
    "AddContextCommand",
    "AttachBeat",
    "AttachBeatCommand",
    "BeatOptions",
    "CadenceCommand",
    "CodegenError",
    "ContextField",
    "Decorator",
    "Edit",
    "FileChange",
    "Plan",
    "Project",
    "find_project",
    "init_project",
    "new_beat",
    "new_cadence",
    "new_context",
    "package_name",
    "parse_field",
]
