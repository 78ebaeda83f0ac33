"""Backend names live only in the registry and the backends' own packages.

Everything else asks the registry (``get_backend``, ``backend_names``, ``canonical_name``) and
the backends' capabilities. Docstrings, command-line help and ``pip install`` hints may name a
runtime: they are documentation, not decisions.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import edgequant
from edgequant.backends import backend_names
from edgequant.backends.base import _ALIASES

SRC = Path(edgequant.__file__).parent
NAMES = sorted(set(backend_names()) | set(_ALIASES) - {"torch"})  # torch is also a library
PATTERN = re.compile(r"(?<![\w.\-\[])(" + "|".join(NAMES) + r")(?![\w\-\]])")
DOC_KEYWORDS = {"help", "epilog", "description", "usage"}
DOC_CONSTANTS = ("EPILOG", "DESCRIPTION", "HELP", "USAGE", "EXAMPLES")


def _exempt(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = body[0] if body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg in DOC_KEYWORDS:
            ids.update(id(n) for n in ast.walk(node.value))
        # help texts kept in constants (EPILOG = """...""") are documentation too
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and any(k in t.id for k in DOC_CONSTANTS) for t in node.targets
        ):
            ids.update(id(n) for n in ast.walk(node.value))
    return ids


def offending_strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    exempt = _exempt(tree)
    out = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in exempt
        ):
            if "pip install" in node.value:
                continue
            m = PATTERN.search(node.value)
            if m:
                out.append(f"{path.relative_to(SRC)}:{node.lineno}: {m.group(1)!r}")
    return out


def test_no_backend_name_outside_the_backends_package() -> None:
    found = [
        hit
        for p in sorted(SRC.rglob("*.py"))
        if p.relative_to(SRC).parts[0] != "backends"
        for hit in offending_strings(p)
    ]
    assert not found, "backend names outside edgequant/backends/:\n" + "\n".join(found)


def test_the_check_finds_a_name(tmp_path: Path) -> None:
    src = 'x = "openvino"\ny = "ov"\nz = "not simulated"\n'
    (tmp_path / "m.py").write_text(src)
    global SRC
    old, SRC = SRC, tmp_path
    try:
        assert len(offending_strings(tmp_path / "m.py")) == 2
    finally:
        SRC = old
