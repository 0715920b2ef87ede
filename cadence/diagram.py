"""Draw a cadence: `to_mermaid` and `to_dot` turn its plan into Mermaid or Graphviz text.

Both read the plan through `cadence._plan.walk` and never call a beat, a condition or a merge.
The picture: a start node with the cadence's name; a box per beat; for `sync`, a fork node fanning
out to the parallel beats and a merge node they fan back into; for `split`, a decision with `yes`
and `no` edges; for `child`, a subgraph (a cluster in DOT) holding the child's own steps; an end
node. With `details=True`, beat boxes also list their resilience decorators (retry, timeout,
fallback, circuit breaker), their function when it is named otherwise, and their description.

Node ids are generated (`n0`, `n1`, ...), so no name can collide with a keyword of either language,
and every label is quoted and escaped. The same cadence always gives the same text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

from cadence._plan import BeatNode, PlanNode, StepNode, walk

if TYPE_CHECKING:
    from cadence._cadence import Cadence

__all__ = ["Direction", "to_dot", "to_mermaid"]

Direction: TypeAlias = Literal["TD", "LR", "BT", "RL"]
"""Which way the flow runs: top-down, left-right, bottom-up or right-left."""

_DIRECTIONS: tuple[str, ...] = get_args(Direction)

_Shape: TypeAlias = Literal["start", "end", "beat", "fork", "join", "decision", "empty"]


@dataclass
class _Node:
    id: str
    shape: _Shape
    lines: list[str]


@dataclass
class _Cluster:
    id: str
    label: str
    items: list[_Node | _Cluster] = field(default_factory=list["_Node | _Cluster"])


@dataclass
class _Graph:
    """A cadence's picture, independent of the language it is written in."""

    root: _Cluster
    edges: list[tuple[str, str, str | None]] = field(
        default_factory=list[tuple[str, str, str | None]]
    )
    count: int = 0

    def node(self, into: _Cluster, shape: _Shape, lines: list[str]) -> str:
        node = _Node(f"n{self.count}", shape, lines)
        self.count += 1
        into.items.append(node)
        return node.id

    def cluster(self, into: _Cluster, label: str) -> _Cluster:
        cluster = _Cluster(f"c{self.count}", label)
        self.count += 1
        into.items.append(cluster)
        return cluster


_Exits: TypeAlias = list[tuple[str, str | None]]
"""The nodes the flow leaves a step by, each with the label of its outgoing edge."""


def _build(plan: PlanNode, details: bool) -> _Graph:
    graph = _Graph(_Cluster("", plan.name))
    start = graph.node(graph.root, "start", [plan.name])
    exits = _steps(graph, graph.root, plan.steps, [(start, None)], details)
    end = graph.node(graph.root, "end", ["end"])
    _connect(graph, exits, end)
    return graph


def _connect(graph: _Graph, exits: _Exits, target: str) -> None:
    graph.edges.extend((source, target, label) for source, label in exits)


def _steps(
    graph: _Graph, into: _Cluster, steps: tuple[StepNode, ...], exits: _Exits, details: bool
) -> _Exits:
    for step in steps:
        if step.kind == "then":
            node = graph.node(into, "beat", _beat_lines(step.beats[0], details))
            _connect(graph, exits, node)
            exits = [(node, None)]
        elif step.kind == "sync":
            fork = graph.node(into, "fork", [step.name, "parallel"] if details else [step.name])
            _connect(graph, exits, fork)
            join = [f"merge: {step.detail}"] if details else ["merge"]
            beats = [graph.node(into, "beat", _beat_lines(b, details)) for b in step.beats]
            merge = graph.node(into, "join", join)
            for node in beats:
                graph.edges.append((fork, node, None))
                graph.edges.append((node, merge, None))
            exits = [(merge, None)]
        elif step.kind == "split":
            lines = [f"{step.name}?"]
            condition = step.detail.rpartition(".")[2]
            if details and condition != "<lambda>":
                lines.append(f"{condition}()")
            decision = graph.node(into, "decision", lines)
            _connect(graph, exits, decision)
            exits = _branch(graph, into, decision, "yes", step.beats, details)
            exits += _branch(graph, into, decision, "no", step.if_false, details)
        else:
            assert step.child is not None  # noqa: S101 # a child step always has its plan
            cluster = graph.cluster(into, f"{step.name}: {step.child.name}")
            if step.child.steps:
                exits = _steps(graph, cluster, step.child.steps, exits, details)
            else:
                node = graph.node(cluster, "empty", ["(no steps)"])
                _connect(graph, exits, node)
                exits = [(node, None)]
    return exits


def _branch(  # noqa: PLR0917 # one branch of one split, all of it
    graph: _Graph,
    into: _Cluster,
    decision: str,
    label: str,
    beats: tuple[BeatNode, ...],
    details: bool,
) -> _Exits:
    exits: _Exits = [(decision, label)]
    for beat in beats:
        node = graph.node(into, "beat", _beat_lines(beat, details))
        _connect(graph, exits, node)
        exits = [(node, None)]
    return exits


def _beat_lines(beat: BeatNode, details: bool) -> list[str]:
    lines = [beat.name]
    if not details:
        return lines
    function = beat.function.rpartition(".")[2]
    if function not in {beat.name, "<lambda>"}:
        lines.append(f"{function}()")
    if beat.decorations:
        lines.append(", ".join(d.label for d in beat.decorations))
    if beat.description:
        lines.append(beat.description)
    return lines


def _visible(text: str) -> str:
    """Replace characters that would break a line or hide (controls, separators) by escapes."""
    if text.isprintable():  # the usual case; False for every category replaced below
        return text
    out: list[str] = []
    for ch in text:
        category = unicodedata.category(ch)
        if category in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def _check(direction: object) -> str:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(_DIRECTIONS)}, got {direction!r}")
    return str(direction)


# ----------------------------------------------------------------------------- Mermaid

_MERMAID_PLAIN = re.compile(r"[A-Za-z0-9 _.,:/()-]*")
_MERMAID_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,:/()")

_MERMAID_SHAPES: dict[_Shape, tuple[str, str]] = {
    "start": ('(["', '"])'),
    "end": ('(["', '"])'),
    "beat": ('["', '"]'),
    "fork": ('{{"', '"}}'),
    "join": ('("', '")'),
    "decision": ('{"', '"}'),
    "empty": ('["', '"]'),
}


def _mermaid_text(text: str) -> str:
    """Escape a label for Mermaid: anything outside a small safe set becomes `#code;`."""
    if _MERMAID_PLAIN.fullmatch(text):
        return text
    out: list[str] = []
    for ch in _visible(text):
        if ch in _MERMAID_SAFE or (ord(ch) > 127 and ch.isprintable() and not ch.isspace()):
            out.append(ch)
        else:
            out.append(f"#{ord(ch)};")
    return "".join(out)


def _mermaid_label(lines: list[str]) -> str:
    return "<br/>".join(_mermaid_text(line) for line in lines)


def to_mermaid(
    cadence: Cadence[Any],  # Any: a cadence over any context type
    *,
    direction: Direction = "TD",
    details: bool = True,
) -> str:
    """Return a Mermaid flowchart of `cadence` (no beat is run).

    Args:
        cadence: The cadence to draw.
        direction: `TD` (top-down), `LR`, `BT` or `RL`.
        details: Whether beat boxes list decorators, functions and descriptions.

    Raises:
        ValueError: `direction` is not one of the four.

    """
    flow = _check(direction)
    graph = _build(walk(cadence), details)
    lines = [f"flowchart {flow}"]

    def emit(cluster: _Cluster, depth: int) -> None:
        pad = "    " * depth
        for item in cluster.items:
            if isinstance(item, _Node):
                opening, closing = _MERMAID_SHAPES[item.shape]
                lines.append(f"{pad}{item.id}{opening}{_mermaid_label(item.lines)}{closing}")
            else:
                lines.append(f'{pad}subgraph {item.id}["{_mermaid_text(item.label)}"]')
                emit(item, depth + 1)
                lines.append(f"{pad}end")

    emit(graph.root, 1)
    for source, target, label in graph.edges:
        arrow = "-->" if label is None else f'-->|"{_mermaid_text(label)}"|'
        lines.append(f"    {source} {arrow} {target}")
    lines.extend(
        [
            "    classDef cadencePoint fill:#eee,stroke:#999",
            "    classDef cadenceDecision fill:#fff6d5,stroke:#c90",
        ]
    )
    ends = [n.id for n in _nodes(graph.root) if n.shape in {"start", "end", "join", "fork"}]
    decisions = [n.id for n in _nodes(graph.root) if n.shape == "decision"]
    if ends:
        lines.append(f"    class {','.join(ends)} cadencePoint")
    if decisions:
        lines.append(f"    class {','.join(decisions)} cadenceDecision")
    return "\n".join(lines) + "\n"


def _nodes(cluster: _Cluster) -> list[_Node]:
    found: list[_Node] = []
    for item in cluster.items:
        if isinstance(item, _Node):
            found.append(item)
        else:
            found.extend(_nodes(item))
    return found


# ----------------------------------------------------------------------------- DOT

_DOT_SHAPES: dict[_Shape, str] = {
    "start": 'shape=oval, style="filled", fillcolor="#eeeeee"',
    "end": 'shape=oval, style="filled", fillcolor="#eeeeee"',
    "beat": 'shape=box, style="rounded"',
    "fork": 'shape=hexagon, style="filled", fillcolor="#eeeeee"',
    "join": 'shape=ellipse, style="filled", fillcolor="#eeeeee"',
    "decision": 'shape=diamond, style="filled", fillcolor="#fff6d5"',
    "empty": 'shape=box, style="dashed"',
}

_DOT_RANKDIR = {"TD": "TB", "LR": "LR", "BT": "BT", "RL": "RL"}


def _dot_text(text: str) -> str:
    r"""Escape a label line for a quoted DOT string (backslash escapes like `\\N` stay text)."""
    return _visible(text).replace("\\", "\\\\").replace('"', '\\"')


def _dot_label(lines: list[str]) -> str:
    return "\\n".join(_dot_text(line) for line in lines)


def to_dot(
    cadence: Cadence[Any],  # Any: a cadence over any context type
    *,
    direction: Direction = "TD",
    details: bool = True,
) -> str:
    """Return a Graphviz DOT digraph of `cadence` (no beat is run).

    Args:
        cadence: The cadence to draw.
        direction: `TD` (top-down), `LR`, `BT` or `RL`.
        details: Whether beat boxes list decorators, functions and descriptions.

    Raises:
        ValueError: `direction` is not one of the four.

    """
    rankdir = _DOT_RANKDIR[_check(direction)]
    graph = _build(walk(cadence), details)
    lines = [
        f'digraph "{_dot_text(cadence.name)}" {{',
        f"    rankdir={rankdir};",
        '    node [fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=10];',
        '    fontname="Helvetica";',
    ]

    def emit(cluster: _Cluster, depth: int) -> None:
        pad = "    " * depth
        for item in cluster.items:
            if isinstance(item, _Node):
                label = _dot_label(item.lines)
                lines.append(f'{pad}{item.id} [label="{label}", {_DOT_SHAPES[item.shape]}];')
            else:
                lines.append(f"{pad}subgraph cluster_{item.id} {{")
                lines.append(f'{pad}    label="{_dot_text(item.label)}";')
                lines.append(f'{pad}    style="rounded,dashed";')
                emit(item, depth + 1)
                lines.append(f"{pad}}}")

    emit(graph.root, 1)
    for source, target, label in graph.edges:
        suffix = "" if label is None else f' [label="{_dot_text(label)}"]'
        lines.append(f"    {source} -> {target}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"
