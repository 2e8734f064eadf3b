"""The import graph of the server code: a layered `realtime` app, no circles, nothing borrowed.

Every import counts, also one inside a function or under TYPE_CHECKING: an import made
late to dodge a circle is still a circle in the design. The layers are those of
docs/design.md ("Layers"): a module imports its own folder or a lower layer, never a
higher one nor a sibling folder of its own layer. The KNOWN_ lists are what is left to
undo; a change may shrink them, never add to them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("realtime", "accounts", "project")

# Each folder (or root module) of `realtime` and its layer, lowest first. Root modules that are
# not listed are the app's entry points (Django's conventions and the contract's modules): layer 7.
LAYERS = {
    "core": 0,  # protocol, codes, errors, limits, frames: no Django, no I/O
    "support": 1,  # settings, metric counters, backing-service errors
    "models": 1,
    "signals": 1,
    "engine": 2,  # history, fan-out, presence, sessions, slots: Redis and memory
    "namespaces": 2,
    "auth": 3,  # token checks, revocation, the socket's auth middleware
    "sessions": 3,  # session rows, resumable records, connection slots, control events, live sockets
    "pubsub": 3,  # publishing, reading, the per-loop hub, presence
    "runtime": 4,  # this process: registration, beat, lifespan, shutdown
    "socket": 5,  # the consumer and what it is made of
    "http": 6,  # the HTTP API, token views, health, metrics
    "server": 6,  # glue for daphne, uvicorn and runserver
}
ENTRY = 7
ENTRY_MODULES = {"realtime.auth.urls"}  # a contract module inside a folder: `include("realtime.auth.urls")`

# Circles inside the server code still to be broken, each as its set of modules: none left.
KNOWN_CYCLES: set[frozenset[str]] = set()
# `realtime` must import nothing of the reference deployment (accounts, project).
KNOWN_OUTWARD: set[tuple[str, str]] = set()
# Imports that point up a layer or across to a sibling folder of the same layer.
KNOWN_UPWARD: set[tuple[str, str]] = set()

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
    # realtime.runtime.node imports realtime.pubsub.presence only inside a function: it is an edge all the same.
    assert "realtime.pubsub.presence" in import_graph()["realtime.runtime.node"]


def layer(module: str) -> int:
    """The layer of a `realtime` module (section names in LAYERS; unlisted root modules are entry points)."""
    parts = module.split(".")
    if len(parts) == 1:
        return LAYERS["support"]  # the package itself: its __init__ holds no code
    if module in ENTRY_MODULES:
        return ENTRY
    return LAYERS.get(parts[1], ENTRY)


def folder(module: str) -> str:
    """The folder of `realtime` a module is in (its own, for a sub-package), or "" for a root module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (ROOT / "realtime" / parts[1]).is_dir() else ""


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


def test_every_import_inside_realtime_points_down_a_layer():
    graph = import_graph()
    upward = set()
    for source, targets in graph.items():
        if not source.startswith("realtime"):
            continue
        for target in targets:
            if not target.startswith("realtime"):
                continue
            low, high = layer(target), layer(source)
            same_folder = folder(source) and folder(source) == folder(target)
            if low > high or (low == high and high != ENTRY and not same_folder):
                upward.add((source, target))
    assert upward <= KNOWN_UPWARD, f"imports against the layers: {sorted(upward - KNOWN_UPWARD)}"
    assert upward >= KNOWN_UPWARD, f"gone at last, take them off KNOWN_UPWARD: {sorted(KNOWN_UPWARD - upward)}"


def test_every_folder_of_realtime_has_a_layer():
    conventions = {"management", "migrations", "static", "templates"}
    folders = {path.name for path in (ROOT / "realtime").iterdir() if (path / "__init__.py").exists()}
    unlisted = folders - conventions - set(LAYERS)
    assert not unlisted, f"a folder without a layer: {sorted(unlisted)}"


def test_the_layer_rule_sees_an_import_against_it():
    # The rule itself: the consumer (layer 5) may use the engine (2); the engine may not use the consumer.
    assert layer("realtime.engine.redis") < layer("realtime.socket.consumer") < layer("realtime.asgi")
    assert layer("realtime.core.protocol") == 0 and layer("realtime.views") == ENTRY
