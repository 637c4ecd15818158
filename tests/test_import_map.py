"""The import map is a DAG: no function-level import hides a cycle.

Every import of nmtc's own modules is counted, including the ones inside
functions (kept there for start-up time or vendor isolation), as if all were
at module level. If that graph has a cycle, a lazy import is hiding it. The
expected layering (lowest first) is also checked: the IR and errors import
nothing above them, and the core never imports the CLI or the API.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Set

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nmtoolchain", "exporters", "simulators", "hardware_profiles")


def _modules() -> Dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = p
    return mods


def _resolve(name: str, mods: Dict[str, Path]) -> Optional[str]:
    parts = name.split(".")
    while parts:
        if ".".join(parts) in mods:
            return ".".join(parts)
        parts.pop()
    return None


def import_graph() -> Dict[str, Set[str]]:
    """module -> the nmtc modules it imports anywhere in its body."""
    mods = _modules()
    graph: Dict[str, Set[str]] = defaultdict(set)
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[:len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                hit = _resolve(t, mods)
                if hit and hit != mod:
                    graph[mod].add(hit)
        graph.setdefault(mod, set())
    return graph


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    out: List[List[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_even_counting_function_level_imports():
    assert _cycles(import_graph()) == []


def test_a_cycle_would_be_found():
    """The checker itself: a two-module loop is reported."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_low_layers_import_nothing_above_them():
    g = import_graph()

    def reach(start: str) -> Set[str]:
        seen, todo = set(), [start]
        while todo:
            for w in g[todo.pop()]:
                if w not in seen:
                    seen.add(w)
                    todo.append(w)
        return seen

    for low in ("nmtoolchain.errors", "nmtoolchain.numerics", "nmtoolchain.ir"):
        above = {m for m in reach(low) if not (m.startswith(("nmtoolchain.ir",
                                                             "nmtoolchain.numerics"))
                                               or m in ("nmtoolchain.errors",
                                                        "nmtoolchain.fileio"))}
        assert not above, (low, sorted(above))
    # the core library never reaches the CLI or the target registry
    for core in ("nmtoolchain.passes", "nmtoolchain.quantize", "nmtoolchain.mapping",
                 "simulators.cycle", "nmtoolchain.energy"):
        bad = {m for m in reach(core) if m in ("nmtoolchain.cli", "nmtoolchain.targets.registry",
                                               "nmtoolchain.demo")}
        assert not bad, (core, sorted(bad))


def _group(module: str) -> str:
    """The unit of the layered map: nmtoolchain's subpackages and modules, exporters'
    and simulators' back ends, hardware_profiles."""
    parts = module.split(".")
    if parts[0] in ("nmtoolchain", "exporters", "simulators"):
        return ".".join(parts[:2])
    return parts[0]


def test_subpackages_form_layers_without_cycles():
    """Collapsed to subpackages (nmtoolchain.ir, nmtoolchain.targets, exporters.loihi2,
    simulators.cycle, ...) the map is still a DAG: each subpackage sits in one layer."""
    collapsed: Dict[str, Set[str]] = defaultdict(set)
    for a, bs in import_graph().items():
        collapsed[_group(a)]
        for b in bs:
            if _group(a) != _group(b):
                collapsed[_group(a)].add(_group(b))
    assert _cycles(collapsed) == []
