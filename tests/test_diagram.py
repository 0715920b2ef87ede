"""Diagrams: every step drawn, labels escaped, text accepted by Graphviz and by Mermaid."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadence import Cadence, Context, beat
from cadence._plan import PlanNode, walk
from cadence.diagram import to_dot, to_mermaid
from cadence.resilience import circuit_breaker, fallback, retry, timeout

DOT = shutil.which("dot")
# CI sets CADENCE_REQUIRE_RENDERERS=1: there a missing renderer fails instead of skipping.
REQUIRED = os.environ.get("CADENCE_REQUIRE_RENDERERS") == "1"


def needs(missing: bool, reason: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Skip when a renderer is missing, or fail when CI says it must be there."""
    if not (missing and REQUIRED):
        return pytest.mark.skipif(missing, reason=reason)

    def fail_instead(test: Callable[..., None]) -> Callable[..., None]:
        def failing() -> None:
            pytest.fail(f"CADENCE_REQUIRE_RENDERERS=1, but {reason}")

        return failing

    return fail_instead


needs_dot = needs(DOT is None, "Graphviz dot is not installed")
HOSTILE = [
    'say "hi"',
    "a[b]c",
    "{curly}",
    "pipe|pipe",
    "end",
    "graph",
    "subgraph",
    "digraph",
    "node",
    "edge",
    "strict",
    "flowchart",
    "style",
    "classDef",
    "click",
    "日本語 ✓ émoji 🎵",
    "back\\slash \\N \\G",
    "semi;colon %% comment",
    "arrow --> x",
    "<b>html</b> & amp;",
    "#35; hash",
    "new\nline\ttab",
    "`tick`",
    "'single'",
]


@dataclass
class Ctx(Context):
    n: int = 0
    label: str = ""


def never(name: str) -> Callable[[Ctx], Awaitable[None]]:
    """A fresh beat named `name` that fails the test if it is ever called."""

    async def run(ctx: Ctx) -> None:
        raise AssertionError(f"beat {name!r} was executed by a diagram")

    return beat(name=name)(run)


def never_condition(ctx: Ctx) -> bool:
    raise AssertionError("a condition was executed by a diagram")


def never_merge(parent: Ctx, child: Ctx) -> None:
    raise AssertionError("a merge was executed by a diagram")


@retry(max_attempts=4)
@timeout(2.5)
async def fetch_profile(ctx: Ctx) -> None:
    raise AssertionError("executed")


@fallback(default="guest", field="label")
@circuit_breaker(failure_threshold=3, name="diagram-payments")
async def charge(ctx: Ctx) -> None:
    raise AssertionError("executed")


@beat(description="Sends the receipt")
async def notify(ctx: Ctx) -> None:
    raise AssertionError("executed")


def every_kind() -> Cadence[Ctx]:
    child = (
        Cadence("receipts", Ctx())
        .then("render", never("render"))
        .sync("deliver", [never("email"), never("sms")])
    )
    return (
        Cadence("checkout", Ctx())
        .then("fetch", fetch_profile)
        .sync("gather", [never("inventory"), charge])
        .split("premium", never_condition, [never("upgrade"), notify], never("standard"))
        .split("only_yes", never_condition, never("maybe"))
        .child("send", child, never_merge)
        .then("done", never("done"))
    )


EVERY_NAME = [
    "checkout",
    "fetch",
    "gather",
    "inventory",
    "charge",
    "premium?",
    "upgrade",
    "notify",
    "standard",
    "only_yes?",
    "maybe",
    "send: receipts",
    "render",
    "deliver",
    "email",
    "sms",
    "done",
]


# --------------------------------------------------------------------------- helpers


def render_svg(dot_text: str) -> list[str]:
    """Render with the real `dot` and return the SVG's text lines (the labels as drawn)."""
    assert DOT is not None
    result = subprocess.run(
        [DOT, "-Tsvg"], input=dot_text.encode(), capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    assert not result.stderr, result.stderr.decode()  # no syntax warnings either
    root = ET.fromstring(result.stdout)  # noqa: S314 # Graphviz's own output, not untrusted
    return [(t.text or "").strip() for t in root.iter("{http://www.w3.org/2000/svg}text")]


_SHAPES = [
    (r'\(\["', r'"\]\)'),
    (r'\{\{"', r'"\}\}'),
    (r'\("', r'"\)'),
    (r'\{"', r'"\}'),
    (r'\["', r'"\]'),
]
# What escaping leaves: no quote, bracket, brace, pipe, angle, semicolon or backslash.
_LABEL = r'(?:[^"\n\[\]{}|<>;`\\#]|<br/>|#\d+;)*'


def mermaid_structure(text: str) -> dict[str, str]:
    """Check a flowchart line by line; return each node id with its label, unescaped."""
    lines = text.splitlines()
    assert re.fullmatch(r"flowchart (TD|LR|BT|RL)", lines[0])
    nodes: dict[str, str] = {}
    depth = 0
    edges: list[tuple[str, str]] = []
    for line in lines[1:]:
        body = line.strip()
        if m := re.fullmatch(r'subgraph (c\d+)\["(' + _LABEL + r')"\]', body):
            depth += 1
            nodes[m[1]] = m[2]
            continue
        if body == "end":
            depth -= 1
            assert depth >= 0
            continue
        if m := re.fullmatch(r'(n\d+) -->(?:\|"(' + _LABEL + r')"\|)? (n\d+)', body):
            edges.append((m[1], m[3]))
            continue
        if re.fullmatch(r"(classDef \w+ .*|class [n\d,]+ \w+)", body):
            continue
        for opening, closing in _SHAPES:
            if m := re.fullmatch(r"(n\d+)" + opening + "(" + _LABEL + ")" + closing, body):
                assert m[1] not in nodes, f"node {m[1]} declared twice"
                nodes[m[1]] = m[2]
                break
        else:
            raise AssertionError(f"not a flowchart line: {line!r}")
    assert depth == 0
    for source, target in edges:
        assert source in nodes
        assert target in nodes
    return {k: unescape_mermaid(v) for k, v in nodes.items()}


def unescape_mermaid(label: str) -> str:
    """Lines apart first: a name may itself read `<br/>` once unescaped."""
    lines = label.split("<br/>")
    return "\n".join(re.sub(r"#(\d+);", lambda m: chr(int(m[1])), line) for line in lines)


HIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, formats, unassigned, separators


def visible(name: str) -> str:
    """A name as a diagram shows it: characters that hide or break a line as escapes."""
    out = []
    for c in name:
        if unicodedata.category(c) not in HIDDEN:
            out.append(c)
        else:
            out.append(f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
    return "".join(out)


# --------------------------------------------------------------------------- behaviour


def test_every_step_is_drawn_and_nothing_runs() -> None:
    cadence = every_kind()
    mermaid = to_mermaid(cadence)
    labels = mermaid_structure(mermaid)
    first_lines = [label.split("\n")[0] for label in labels.values()]
    for name in EVERY_NAME:
        assert name in first_lines, name
    dot = to_dot(cadence)
    for name in EVERY_NAME:
        assert f'"{name}' in dot, name


def test_output_is_deterministic() -> None:
    assert to_mermaid(every_kind()) == to_mermaid(every_kind())
    assert to_dot(every_kind()) == to_dot(every_kind())
    assert to_dot(every_kind(), direction="LR", details=False) == to_dot(
        every_kind(), direction="LR", details=False
    )


def test_output_does_not_depend_on_the_hash_seed_or_the_process() -> None:
    draw = (
        "import sys; sys.path.insert(0, 'tests'); import test_diagram as t; "
        "print(t.to_mermaid(t.every_kind())); print(t.to_dot(t.every_kind()))"
    )
    root = Path(__file__).resolve().parent.parent
    outputs = {
        subprocess.run(
            [sys.executable, "-c", draw],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "random")
    }
    assert outputs == {f"{to_mermaid(every_kind())}\n{to_dot(every_kind())}\n"}


def edges_of(dot: str) -> list[tuple[str, str, str | None]]:
    found = re.findall(r'^\s*(n\d+) -> (n\d+)(?: \[label="([^"]*)"\])?;$', dot, re.MULTILINE)
    return [(a, b, c or None) for a, b, c in found]


def ids_of(dot: str) -> dict[str, str]:
    """Each label's first line, with the id of the first node that has it."""
    ids: dict[str, str] = {}
    for node, first in re.findall(r'^\s*(n\d+) \[label="([^"\\]*)', dot, re.MULTILINE):
        ids.setdefault(first, node)
    return ids


def test_sync_fans_out_and_in_and_split_has_yes_and_no() -> None:
    dot = to_dot(every_kind(), details=False)
    ids = ids_of(dot)
    edges = edges_of(dot)
    gather, merge = ids["gather"], ids["merge"]
    for beat_name in ["inventory", "charge"]:
        assert (gather, ids[beat_name], None) in edges
        assert (ids[beat_name], merge, None) in edges
    assert (ids["fetch"], gather, None) in edges
    premium = ids["premium?"]
    assert (premium, ids["upgrade"], "yes") in edges
    assert (ids["upgrade"], ids["notify"], None) in edges
    assert (premium, ids["standard"], "no") in edges
    only = ids["only_yes?"]
    assert (only, ids["maybe"], "yes") in edges
    assert (only, ids["render"], "no") in edges  # no false branch: "no" goes straight on
    assert (ids["maybe"], ids["render"], None) in edges


def test_a_child_is_a_subgraph_holding_its_steps() -> None:
    dot = to_dot(every_kind(), details=False)
    cluster = re.search(r"subgraph cluster_c\d+ \{(.*?)\n    \}", dot, re.DOTALL)
    assert cluster is not None
    body = cluster[1]
    assert 'label="send: receipts";' in body
    for name in ["render", "deliver", "email", "sms"]:
        assert f'label="{name}' in body
    assert 'label="done' not in body
    mermaid = to_mermaid(every_kind(), details=False)
    inside = mermaid.split("subgraph c", 1)[1].split("\n    end\n", 1)[0]
    assert '["render"]' in inside
    assert '["email"]' in inside
    assert '["done"]' not in inside


def test_details_mark_resilience_decorators_and_descriptions() -> None:
    labels = mermaid_structure(to_mermaid(every_kind()))
    by_first = {label.split("\n")[0]: label.split("\n")[1:] for label in labels.values()}
    assert by_first["fetch"] == ["fetch_profile()", "retry x4, timeout 2.5s"]
    assert by_first["charge"] == ["fallback: label, breaker diagram-payments"]
    assert by_first["notify"] == ["Sends the receipt"]
    assert by_first["gather"] == ["parallel"]
    assert "merge: fail_on_conflict" in by_first
    plain = mermaid_structure(to_mermaid(every_kind(), details=False))
    assert all("\n" not in label for label in plain.values())
    assert "retry" not in to_dot(every_kind(), details=False)
    assert "retry x4, timeout 2.5s" in to_dot(every_kind())


@pytest.mark.parametrize(
    ("direction", "rankdir"), [("TD", "TB"), ("LR", "LR"), ("BT", "BT"), ("RL", "RL")]
)
def test_direction(direction: str, rankdir: str) -> None:
    assert to_mermaid(every_kind(), direction=direction).startswith(f"flowchart {direction}\n")  # type: ignore[arg-type] # parametrized literals
    assert f"rankdir={rankdir};" in to_dot(every_kind(), direction=direction)  # type: ignore[arg-type] # as above
    with pytest.raises(ValueError, match="direction must be one of TD, LR, BT, RL"):
        to_mermaid(every_kind(), direction="UP")  # type: ignore[arg-type] # the point of the test


def hostile_cadence(names: list[str]) -> Cadence[Ctx]:
    cadence = Cadence('cadence "hostile" [x] | end', Ctx())
    for i, name in enumerate(names):
        kind = i % 4
        if kind == 0:
            cadence = cadence.then(name, never(name))
        elif kind == 1:
            cadence = cadence.sync(name, [never(name), never(f"{name} 2")])
        elif kind == 2:
            cadence = cadence.split(name, never_condition, never(name))
        else:
            child = Cadence(name, Ctx()).then(name, never(name))
            cadence = cadence.child(name, child, never_merge)
    return cadence


def test_hostile_labels_survive_mermaid_escaping() -> None:
    cadence = hostile_cadence(HOSTILE)
    labels = mermaid_structure(to_mermaid(cadence))
    first_lines = {label.split("\n")[0] for label in labels.values()}
    for name in HOSTILE:
        assert visible(name) in first_lines or f"{visible(name)}?" in first_lines, name


@needs_dot
def test_hostile_labels_are_accepted_and_drawn_by_graphviz() -> None:
    cadence = hostile_cadence(HOSTILE)
    texts = render_svg(to_dot(cadence))
    for name in HOSTILE:
        shown = visible(name).strip()
        assert shown in texts or f"{shown}?" in texts or any(shown in t for t in texts), name
    assert 'cadence "hostile" [x] | end' in texts


@needs_dot
def test_every_kind_renders_to_svg_with_every_name() -> None:
    for direction in ["TD", "LR"]:
        texts = render_svg(to_dot(every_kind(), direction=direction))  # type: ignore[arg-type] # literal
        for name in EVERY_NAME:
            assert name in texts, name


# --------------------------------------------------------------------------- real Mermaid

# Where `npm install mermaid jsdom` was run (.ci/run does it); the tests skip without it.
MERMAID_DIR = Path(os.environ.get("CADENCE_MERMAID_DIR", "/tmp/mermaid-check"))  # noqa: S108 # an npm cache
MERMAID_SCRIPT = Path(__file__).with_name("mermaid_parse.mjs")
needs_mermaid = needs(
    shutil.which("node") is None or not (MERMAID_DIR / "node_modules" / "mermaid").is_dir(),
    "node with mermaid and jsdom (npm install mermaid jsdom) is not available",
)


def mermaid_parse(diagrams: list[str]) -> list[str | None]:
    """Parse each text with Mermaid's own parser under node; return None or the error."""
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, str(MERMAID_SCRIPT)],
        input=json.dumps(diagrams),
        capture_output=True,
        text=True,
        check=True,
        cwd=MERMAID_DIR,
        env={**os.environ, "NODE_PATH": str(MERMAID_DIR / "node_modules")},
        timeout=120,
    )
    parsed: list[str | None] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


@needs_mermaid
def test_mermaid_itself_parses_every_output() -> None:
    outputs = [
        to_mermaid(every_kind()),
        to_mermaid(every_kind(), direction="LR", details=False),
        to_mermaid(hostile_cadence(HOSTILE)),
        to_mermaid(Cadence("empty", Ctx())),
    ]
    assert mermaid_parse(outputs) == [None] * len(outputs)


@needs_mermaid
def test_mermaid_rejects_what_it_should() -> None:
    # The check is not vacuous: a raw quote in a label, a pipe in a bare label and a keyword
    # as a node id are errors to Mermaid.
    bad = [
        'flowchart TD\n    n0["a" b"]\n',
        "flowchart TD\n    n0[a|b]\n",
        'flowchart TD\n    n0["a"] --> end\n',
    ]
    assert None not in mermaid_parse(bad)


MMDC = MERMAID_DIR / "node_modules" / ".bin" / "mmdc"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_mermaid_cli = needs(
    CHROMIUM is None or not MMDC.exists(),
    "@mermaid-js/mermaid-cli (npm, PUPPETEER_SKIP_DOWNLOAD=1) and chromium are needed",
)


def mermaid_svg_texts(text: str, tmp_path: Path, name: str) -> list[str]:
    """Render with mermaid-cli in Debian's chromium; return the SVG's text, style left out."""
    config = tmp_path / "puppeteer.json"
    config.write_text(json.dumps({"executablePath": CHROMIUM, "args": ["--no-sandbox"]}))
    source, output = tmp_path / f"{name}.mmd", tmp_path / f"{name}.svg"
    source.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [str(MMDC), "-p", str(config), "-i", str(source), "-o", str(output), "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    root = ET.parse(output).getroot()  # noqa: S314 # rendered from our own text
    style = "{http://www.w3.org/2000/svg}style"
    return [
        el.text.strip() for el in root.iter() if el.tag != style and el.text and el.text.strip()
    ]


@needs_mermaid_cli
@pytest.mark.timeout(300)
def test_mermaid_cli_renders_every_kind_and_hostile_names(tmp_path: Path) -> None:
    texts = mermaid_svg_texts(to_mermaid(every_kind()), tmp_path, "every")
    for name in EVERY_NAME:
        assert name in texts, name
    texts = mermaid_svg_texts(to_mermaid(hostile_cadence(HOSTILE)), tmp_path, "hostile")
    for name in HOSTILE:
        assert visible(name) in texts, name  # drawn as text: no markup, no entity left
    assert "<b>html</b> & amp;" in texts


# --------------------------------------------------------------------------- properties

names = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12).filter(
    lambda s: s.strip() != ""
)


@st.composite
def plans(draw: st.DrawFn, depth: int = 0) -> Cadence[Ctx]:
    cadence = Cadence(draw(names), Ctx())
    used: set[str] = set()
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        name = draw(names.filter(lambda n: n not in used))
        used.add(name)
        kind = draw(
            st.sampled_from(
                ["then", "sync", "split", "child"] if depth < 2 else ["then", "sync", "split"]
            )
        )
        if kind == "then":
            cadence = cadence.then(name, never(name))
        elif kind == "sync":
            beats = draw(st.lists(names, min_size=1, max_size=3, unique=True))
            cadence = cadence.sync(name, [never(b) for b in beats])
        elif kind == "split":
            true = draw(st.lists(names, min_size=1, max_size=2, unique=True))
            false = draw(st.lists(names, min_size=0, max_size=2, unique=True))
            cadence = cadence.split(
                name, never_condition, [never(b) for b in true], [never(b) for b in false] or None
            )
        else:
            cadence = cadence.child(name, draw(plans(depth + 1)), never_merge)
    return cadence


def all_names(cadence: Cadence[Ctx]) -> list[str]:
    found: list[str] = []

    def visit(plan: PlanNode) -> None:
        found.append(plan.name)
        for step in plan.steps:
            found.append(step.name)
            found.extend(b.name for b in (*step.beats, *step.if_false))
            if step.child is not None:
                visit(step.child)

    visit(walk(cadence))
    return found


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_random_plans_give_valid_mermaid_naming_every_step(cadence: Cadence[Ctx]) -> None:
    labels = mermaid_structure(to_mermaid(cadence))
    text = "\n".join(labels.values())
    for name in all_names(cadence):
        assert visible(name) in text


@needs_dot
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_random_plans_give_dot_that_graphviz_draws(cadence: Cadence[Ctx]) -> None:
    texts = "\n".join(render_svg(to_dot(cadence)))
    for name in all_names(cadence):
        assert visible(name).strip() in texts


@needs_mermaid
def test_random_plans_parse_in_mermaid() -> None:
    samples: list[Cadence[Ctx]] = []

    @settings(max_examples=60, deadline=None, database=None)
    @given(plans())
    def collect(cadence: Cadence[Ctx]) -> None:
        samples.append(cadence)

    collect()
    results = mermaid_parse([to_mermaid(c) for c in samples])
    assert results == [None] * len(samples)


# --------------------------------------------------------------------------- the docs' picture


def test_the_docs_diagrams_are_up_to_date() -> None:
    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location(
        "diagrams_example", root / "examples" / "diagrams.py"
    )
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example  # dataclasses look their module up
    try:
        spec.loader.exec_module(example)
    finally:
        del sys.modules[spec.name]
    assets = root / "docs" / "img"
    assert (assets / "checkout.dot").read_text(encoding="utf-8") == to_dot(example.checkout)
    mermaid = to_mermaid(example.checkout)
    assert (assets / "checkout.mmd").read_text(encoding="utf-8") == mermaid
    assert f"```mermaid\n{mermaid}```" in (root / "docs" / "diagrams.md").read_text(
        encoding="utf-8"
    )
    svg = ET.parse(assets / "checkout.svg").getroot()  # noqa: S314 # our own committed file
    texts = [(t.text or "").strip() for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    for name in [
        "checkout",
        "fetch_items",
        "check_stock",
        "quote_price",
        "apply_discount",
        "charge",
        "render",
        "email",
    ]:
        assert name in texts, name
