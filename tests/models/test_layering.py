"""``models/`` and ``data/`` must not import each other (issue 11: no package cycles).

Both depend on the neutral :mod:`edgequant.input_spec`; what running a model needs of a dataset is
the :class:`edgequant.models.base.Samples` protocol. Checked statically: every ``import`` and
``from ... import`` in the package's source, including those inside functions and under
``TYPE_CHECKING``, because a lazy import is still an edge in the package graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import edgequant

SRC = Path(edgequant.__file__).resolve().parent


def imported_modules(path: Path, src: Path = SRC) -> set[str]:
    """Absolute names of the modules a source file of package ``src`` imports (relative resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(src.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    here = parts[:-1] if path.name != "__init__.py" else parts
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            names.add(mod)
            # `from edgequant import data` imports the package edgequant.data
            names.update(f"{mod}.{alias.name}" for alias in node.names)
    return names


def offending_imports(package: str, forbidden: str, src: Path = SRC) -> list[str]:
    """``file: module`` for each import of ``edgequant.<forbidden>`` under ``edgequant/<package>``."""
    bad = []
    for path in sorted((src / package).rglob("*.py")):
        for mod in sorted(imported_modules(path, src)):
            if mod == f"edgequant.{forbidden}" or mod.startswith(f"edgequant.{forbidden}."):
                bad.append(f"{path.relative_to(src)}: {mod}")
    return bad


@pytest.mark.parametrize(("package", "forbidden"), [("models", "data"), ("data", "models")])
def test_models_and_data_do_not_import_each_other(package: str, forbidden: str) -> None:
    bad = offending_imports(package, forbidden)
    assert not bad, f"{package}/ imports {forbidden}/: {bad}"


def test_the_check_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    # the checker itself must find imports hidden in a function, relative or `from pkg import mod`
    pkg = tmp_path / "edgequant" / "models"
    pkg.mkdir(parents=True)
    (pkg / "lazy.py").write_text("def f():\n    from edgequant.data.base import Dataset\n")
    (pkg / "rel.py").write_text("from ..data import registry\n")
    (pkg / "pkg.py").write_text("from edgequant import data\n")
    (pkg / "fine.py").write_text("import numpy\nfrom edgequant.input_spec import InputSpec\n")
    found = offending_imports("models", "data", tmp_path / "edgequant")
    assert {"models/lazy.py: edgequant.data.base", "models/pkg.py: edgequant.data"} <= set(found)
    assert "models/rel.py: edgequant.data.registry" in found
    assert not [f for f in found if f.startswith("models/fine.py")]
