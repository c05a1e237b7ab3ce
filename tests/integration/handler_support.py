"""What the template hands a handler, and a fresh import of a function's handler module."""

from __future__ import annotations

import importlib
import sys
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
    """A fresh import of functions/<function>/handler.py (its config singleton unset).

    The handler is imported as ``<function>.handler`` (functions/ is a source root), so its
    relative imports of the modules beside it resolve as they do in the image.
    """
    name = f"{function}.handler"
    sys.modules.pop(name, None)
    module = importlib.import_module(name)
    assert Path(module.__file__ or "").resolve() == ROOT / "functions" / function / "handler.py"
    return module
