"""The packages import each other in one direction only: no package cycles.

``models/ + data/ -> quant/ -> backends/ -> build/ -> bench/ -> results/ -> report/``, with
``sweep/`` and ``studies/`` on top and ``cli/`` over everything. Imports inside functions count
(they are still dependencies); imports under ``TYPE_CHECKING`` count too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import edgequant

SRC = Path(edgequant.__file__).parent


def package_graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if len(rel.parts) == 1:
            continue  # top-level modules (the API, errors, console) are shared leaves or roots
        src = rel.parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "edgequant" and len(parts) > 1 and parts[1] != src:
                    target = SRC / parts[1]
                    if target.is_dir():
                        edges[src].add(parts[1])
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def test_no_package_cycles() -> None:
    assert cycles(package_graph()) == []


def test_the_check_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_quant_imports_no_runtime_stage() -> None:
    """The techniques and the simulator are runtime-free: studies/ combines them with runtimes."""
    assert not package_graph()["quant"] & {"backends", "build", "bench", "sweep", "studies"}
