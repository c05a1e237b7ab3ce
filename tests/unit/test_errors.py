"""The error hierarchy: one root, a docstring per class, and the tree in the module docstring."""

from __future__ import annotations

import ast
import builtins
import inspect
import re
from pathlib import Path

import f2lib.errors as errors
from f2lib.errors import F2PipeError

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("functions", "bridge", "certs", "infra")
BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}


def _defined_errors() -> list[type[F2PipeError]]:
    return [
        value
        for value in vars(errors).values()
        if inspect.isclass(value) and issubclass(value, F2PipeError)
    ]


def test_product_code__defines_no_exception_outside_the_root() -> None:
    outside = []
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.ClassDef) or node.name == "F2PipeError":
                    continue
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                if bases & BUILTIN_EXCEPTIONS:
                    outside.append(f"{path.relative_to(ROOT)}: {node.name}{sorted(bases)}")
    assert outside == []


def test_every_error_class__has_a_one_line_summary_docstring() -> None:
    for cls in _defined_errors():
        lines = (cls.__dict__.get("__doc__") or "").strip().splitlines()
        assert lines and lines[0].strip(), cls.__name__
        assert len(lines) == 1 or not lines[1].strip(), cls.__name__  # summary, blank, details


def test_module_docstring__lists_every_error_class() -> None:
    tree = errors.__doc__ or ""
    listed = set(re.findall(r"^[│├└─ ]*(\w+)\s", tree, re.M))
    missing = [cls.__name__ for cls in _defined_errors() if cls.__name__ not in listed]
    assert missing == []
