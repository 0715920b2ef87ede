"""`cadence diagram`: draw a cadence as Mermaid or Graphviz, or render it to SVG/PNG."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import cast, get_args

import click
from rich_click import RichCommand

from cadence.cli._common import UserError, note
from cadence.diagram import Direction  # loaded with cadence itself: no cost to --help

__all__ = ["diagram"]

_RENDERED = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
_DOT_TIMEOUT = 60.0


@click.command(cls=RichCommand)
@click.argument("target", metavar="MODULE:ATTRIBUTE")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["mermaid", "dot"]),
    default=None,
    help="The text format [default: mermaid; dot for an .svg/.png/.pdf output].",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to FILE; .svg, .png and .pdf are rendered with Graphviz's dot.",
)
@click.option(
    "--direction",
    type=click.Choice(get_args(Direction)),
    default="TD",
    show_default=True,
    help="Top-down or left-right layout.",
)
@click.option(
    "--no-details", is_flag=True, help="Leave out beat descriptions and merge strategies."
)
def diagram(
    target: str,
    output_format: str | None,
    output: Path | None,
    direction: str,
    *,
    no_details: bool,
) -> None:
    """Draw the cadence MODULE:ATTRIBUTE.

    The text goes to stdout, or to --output; an .svg, .png or .pdf output is rendered
    through Graphviz when dot is installed.

    \b
    Examples:
      cadence diagram myapp.cadences:checkout_cadence --format mermaid
      cadence diagram myapp.cadences:checkout_cadence --format dot -o checkout.dot
      cadence diagram myapp.cadences:checkout_cadence -o checkout.svg
    """
    from cadence.cli._load import load_cadence, user_paths  # noqa: PLC0415 # lazy, for --help

    rendered = _RENDERED.get(output.suffix.lower()) if output is not None else None
    if rendered is not None and output_format == "mermaid":
        raise UserError(
            f"{output} is rendered by Graphviz from dot; drop --format mermaid (or write the "
            "mermaid text to a .mmd file)"
        )
    dot_program = shutil.which("dot") if rendered is not None else None
    if rendered is not None and dot_program is None:
        raise UserError(
            f"rendering {output} needs Graphviz's dot, which is not installed: install "
            "graphviz (apt install graphviz, brew install graphviz), or write --format dot"
        )
    user_paths()
    value = load_cadence(target)
    from cadence.diagram import to_dot, to_mermaid  # noqa: PLC0415 # lazy

    draw = to_dot if rendered is not None or output_format == "dot" else to_mermaid
    text = draw(value, direction=cast("Direction", direction), details=not no_details)
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    if not output.parent.is_dir():
        raise UserError(f"cannot write {output}: {output.parent} is not a directory")
    # Written next to the target, then moved over it: a failure never leaves half a file.
    partial = output.with_name(f".{output.name}.partial")
    try:
        if rendered is None:
            partial.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        else:
            _render(dot_program, rendered, text, partial, shown=output)
        partial.replace(output)
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    note(f"wrote {output}")


def _render(
    dot_program: str | None, rendered: str, text: str, output: Path, *, shown: Path
) -> None:
    """Render DOT `text` to `output` in format `rendered` with Graphviz (`shown` in errors)."""
    assert dot_program is not None  # noqa: S101 # checked by the caller
    try:
        result = subprocess.run(  # noqa: S603 # dot, found on PATH, with our own arguments
            [dot_program, f"-T{rendered}", "-o", str(output)],
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=_DOT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UserError(f"dot took longer than {_DOT_TIMEOUT}s to render {shown}") from None
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise UserError(f"dot failed to render {shown}: {message[0] if message else 'no output'}")
