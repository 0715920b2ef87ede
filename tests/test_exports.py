"""The public surface: `cadence.__all__` is sorted, complete and free of stale names."""

from __future__ import annotations

import subprocess
import sys

import cadence


def test_all_is_sorted_and_unique() -> None:
    assert list(cadence.__all__) == sorted(set(cadence.__all__))


def test_all_names_exist_and_are_public_objects() -> None:
    for name in cadence.__all__:
        assert hasattr(cadence, name), name


def test_every_public_attribute_is_exported() -> None:
    public = {
        name
        for name, value in vars(cadence).items()
        if not name.startswith("_") and not isinstance(value, type(sys))
    }
    public.discard("annotations")  # from __future__ import annotations
    assert public == set(cadence.__all__)


def test_exported_objects_say_they_are_public() -> None:
    for name in cadence.__all__:
        value = getattr(cadence, name)
        doc = getattr(value, "__doc__", None)
        if callable(value) and not isinstance(value, type(cadence.Beat)):
            assert doc, f"{name} has no docstring"


def test_import_loads_no_optional_dependency() -> None:
    heavy = [
        "fastapi",
        "flask",
        "opentelemetry",
        "prometheus_client",
        "click",
        "libcst",
        "mypy",
        "msgspec",
        "psycopg",
    ]
    code = (
        "import sys, cadence\n"
        f"loaded = [m for m in {heavy!r} if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
