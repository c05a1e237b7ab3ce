"""Function build contexts laid out as `faas-cli build --shrinkwrap` lays them out.

``build/<fn>/`` = the template's files, the handler folder overlaid at ``function/``, and each
``configuration.copy`` path copied to ``function/<path>``. faas-cli does the same; this copy lets
the local runtime run without it (faas-cli cannot always be installed) and is compared with
faas-cli's own output in the tests when faas-cli is present.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from f2lib.errors import StackFileError
from infra.deploy.stackfile import FunctionSpec, StackFile

_SKIPPED = {"build", "template", "__pycache__", ".pytest_cache", ".mypy_cache"}


def _copy(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(
            src,
            dst,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"),
        )
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def build_context(stack: StackFile, fn: FunctionSpec, build_dir: Path) -> Path:
    """Write ``build_dir/<fn>`` for ``fn`` and return it."""
    root = stack.root.resolve()
    template = root / "template" / fn.lang
    handler = (root / fn.handler).resolve()
    if not (template / "template.yml").is_file():
        raise StackFileError(f"template {fn.lang!r} not found in {root / 'template'}")
    if not handler.is_dir():
        raise StackFileError(f"handler folder {fn.handler!r} of {fn.name!r} not found")
    context = build_dir / fn.name
    staging = build_dir / f".{fn.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    _copy(template, staging)
    function_dir = staging / "function"
    function_dir.mkdir(exist_ok=True)
    for entry in sorted(handler.iterdir()):
        if entry.name not in _SKIPPED:
            _copy(entry, function_dir / entry.name)
    for extra in stack.copy:
        source = (root / extra).resolve()
        if source == root or root not in source.parents:
            raise StackFileError(f"copy path {extra!r} is outside the project")
        _copy(source, function_dir / source.relative_to(root))
    shutil.rmtree(context, ignore_errors=True)
    staging.rename(context)
    return context


def build_all(stack: StackFile, build_dir: Path) -> dict[str, Path]:
    build_dir.mkdir(parents=True, exist_ok=True)
    return {name: build_context(stack, fn, build_dir) for name, fn in stack.functions.items()}
