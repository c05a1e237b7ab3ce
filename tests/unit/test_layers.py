"""The import graph: no cycle between top-level packages, and imports only point down the layers."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Lowest first. A module may import its own package and anything in a lower layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("f2lib.errors",),
    ("f2lib",),  # contracts, models, and what every function image carries
    ("decode", "sink", "provision", "command", "command_reply"),  # the functions, each its own
    ("infra.services.kit",),
    ("bridge", "infra.services"),  # long-running product services
    ("certs",),  # the CA command line
    ("infra.deploy",),  # deploy files and their helpers
    ("infra.local",),  # the one-box runtime
    ("infra.tools",),  # simulator, bench, make run, operator CLIs
)
# Source roots and how their files map to module names (functions/ holds f2lib and each function).
SOURCES = {"functions": "", "bridge": "bridge", "certs": "certs", "infra": "infra"}
FUNCTIONS = ("decode", "sink", "provision", "command", "command_reply")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "functions":
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def product_modules() -> Iterator[Path]:
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "node_modules" not in path.parts:
                yield path


def imports_of(path: Path) -> set[str]:
    """Absolute names of the project modules ``path`` imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
    return {m for m in found if layer_of(m) is not None}


def layer_of(module: str) -> int | None:
    """The index of the most specific layer entry ``module`` falls under."""
    best: tuple[int, int] | None = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or module.startswith(prefix + ".")
            if inside and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def package_of(module: str) -> str:
    """The unit cycles are checked between: a top-level package, or infra's second level."""
    parts = module.split(".")
    if parts[0] == "infra" and len(parts) > 1:
        return ".".join(parts[:3] if parts[1] == "services" and len(parts) > 2 else parts[:2])
    return parts[0]


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in product_modules()}


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(edges.items()):
        own = layer_of(module)
        for target in sorted(targets):
            theirs = layer_of(target)
            if own is None or theirs is None or package_of(target) == package_of(module):
                continue
            if theirs > own:
                found.append(f"{module} (layer {own}) imports {target} (layer {theirs})")
    return found


def package_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in edges.items():
        deps = packages.setdefault(package_of(module), set())
        deps.update(package_of(t) for t in targets if package_of(t) != package_of(module))
    cycles, state = [], dict.fromkeys(packages, 0)

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(packages.get(node, ())):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif state.get(dep, 0) == 0:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(packages):
        if state[node] == 0:
            visit(node, [node])
    return cycles


def test_imports__only_point_down_the_layers() -> None:
    assert layer_violations(graph()) == []


def test_imports__no_cycle_between_packages() -> None:
    assert package_cycles(graph()) == []


def test_functions__import_no_other_function() -> None:
    edges = graph()
    crossing = [
        f"{module} imports {target}"
        for module, targets in edges.items()
        if module.split(".")[0] in FUNCTIONS
        for target in targets
        if target.split(".")[0] in FUNCTIONS and target.split(".")[0] != module.split(".")[0]
    ]
    assert crossing == []


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"f2lib.models": {"infra.local.stack"}}, ["f2lib.models (layer 1) imports"]),
        ({"infra.services.connector.worker": {"infra.local.gateway"}}, ["(layer 4) imports"]),
        ({"bridge.service": {"f2lib.contracts.topics"}}, []),
        ({"infra.tools.demo": {"infra.local.stack", "bridge.config"}}, []),
    ],
)
def test_layer_check__flags_an_upward_import(
    edges: dict[str, set[str]], expected: list[str]
) -> None:
    found = layer_violations(edges)
    assert len(found) == len(expected)
    for message, fragment in zip(found, expected, strict=True):
        assert fragment in message


def test_cycle_check__flags_a_cycle_between_packages() -> None:
    edges = {
        "infra.local.stack": {"infra.tools.simulator.fleet"},
        "infra.tools.simulator.settings": {"infra.local.stack"},
    }
    assert package_cycles(edges) == [["infra.local", "infra.tools", "infra.local"]]
    assert package_cycles({"infra.tools.demo": {"infra.local.stack"}}) == []
