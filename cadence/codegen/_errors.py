"""The one error the codegen raises: something about the user's project or input is wrong."""

from __future__ import annotations

__all__ = ["CodegenError"]


class CodegenError(Exception):
    """The project, a file to edit, or an argument does not allow the edit; nothing was written."""
