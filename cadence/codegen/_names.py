"""Turning what the user types (`process-payment`, `order`) into Python names."""

from __future__ import annotations

import keyword
import re

from cadence.codegen._errors import CodegenError

__all__ = ["class_name", "snake_name"]

_ACCEPTED = re.compile(r"^[A-Za-z][A-Za-z0-9_\- ]*$")


def _words(text: str, what: str) -> list[str]:
    if not _ACCEPTED.match(text):
        raise CodegenError(
            f"{what} {text!r}: use letters, digits, '-' and '_', starting with a letter"
        )
    words: list[str] = []
    for chunk in re.split(r"[-_ ]+", text):
        # split camelCase and CamelCase chunks into their words
        words.extend(w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", chunk))
    if not words:
        raise CodegenError(f"{what} {text!r} holds no word to name it by")
    return words


def snake_name(text: str, what: str) -> str:
    """Return `text` as a snake_case identifier (`process-payment` -> `process_payment`).

    Raises:
        CodegenError: `text` is empty, starts with a digit, holds other characters, or makes
            a Python keyword.

    """
    name = "_".join(_words(text, what))
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or not name.isidentifier():
        raise CodegenError(f"{what} {text!r} makes {name!r}, which is not a usable Python name")
    return name


def class_name(text: str, what: str, suffix: str = "") -> str:
    """Return `text` as a CamelCase class name ending in `suffix` (`order` -> `OrderContext`)."""
    words = _words(text, what)
    if suffix and words[-1] == suffix.lower():
        words = words[:-1] or words
    name = "".join(w[:1].upper() + w[1:] for w in words)
    return name if name.endswith(suffix) else name + suffix
