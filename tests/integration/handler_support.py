"""What the template hands a handler, and a fresh import of a function's handler module."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


class Event:
    """What the template hands the handler."""

    def __init__(self, body: bytes, headers: dict[str, str] | None = None, method: str = "POST"):
        self.body = body
        self.headers = headers or {}
        self.method = method
        self.query: dict[str, str] = {}
        self.path = "/"


def load_handler(function: str) -> ModuleType:
    """A fresh import of functions/<function>/handler.py (its config singleton unset)."""
    path = ROOT / "functions" / function / "handler.py"
    spec = importlib.util.spec_from_file_location(f"{function}_handler_{uuid.uuid4().hex}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: pydantic resolves annotations there
    spec.loader.exec_module(module)
    return module
