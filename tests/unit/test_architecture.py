"""The import graph of the server code: a ratchet towards a layered `realtime` app.

Every import counts, also one inside a function or under TYPE_CHECKING: an import made
late to dodge a circle is still a circle in the design. The lists below are what is left
to undo (the reusable-app work); a change may shrink them, never add to them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("realtime", "accounts", "project")

# Circles inside the server code still to be broken, each as its set of modules: none left.
KNOWN_CYCLES: set[frozenset[str]] = set()
# `realtime` must end up importing nothing of the reference deployment (accounts, project).
KNOWN_OUTWARD = {
    ("realtime.admission", "accounts.throttling"),
    ("realtime.api", "accounts.errors"),
    ("realtime.consumers", "accounts.middleware"),
    ("realtime.consumers", "accounts.throttling"),
    ("realtime.handlers", "accounts.tokens"),
    ("realtime.receivers", "accounts.signals"),
}

pytestmark = pytest.mark.unit


def modules() -> dict[str, Path]:
    """Every module of the server packages by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the server modules it imports, wherever in the file the import stands."""
    known = modules()

    def resolve(name: str) -> str | None:  # the longest known prefix: `from x import y` names y or x
        parts = name.split(".")
        return next((".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in known), None)

    graph = {}
    for name, path in known.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                named = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package `level - 1` steps above this module's own
                    base = ".".join([*here[: len(here) - node.level + 1], base]).strip(".")
                named = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            targets.update(t for t in map(resolve, named) if t is not None and t != name)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_made_inside_functions():
    # realtime.node imports realtime.presence only inside a function: it is an edge all the same.
    assert "realtime.presence" in import_graph()["realtime.node"]


def test_no_new_import_circle_and_the_known_ones_are_still_there():
    found = cycles(import_graph())
    assert not found - KNOWN_CYCLES, f"new import circles: {[sorted(c) for c in found - KNOWN_CYCLES]}"
    assert not KNOWN_CYCLES - found, f"broken at last, take them off KNOWN_CYCLES: {KNOWN_CYCLES - found}"


def test_realtime_imports_no_new_module_of_the_reference_deployment():
    graph = import_graph()
    outward = {
        (source, target)
        for source, targets in graph.items()
        if source.startswith("realtime")
        for target in targets
        if not target.startswith("realtime")
    }
    assert outward <= KNOWN_OUTWARD, f"new imports of accounts/project from realtime: {sorted(outward - KNOWN_OUTWARD)}"
    assert outward >= KNOWN_OUTWARD, f"gone at last, take them off KNOWN_OUTWARD: {sorted(KNOWN_OUTWARD - outward)}"
