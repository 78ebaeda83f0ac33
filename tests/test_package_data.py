"""What pyproject.toml ships exists: every package-data pattern matches a file in the package."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DATA = CONFIG["tool"]["setuptools"]["package-data"]


@pytest.mark.parametrize(
    ("package", "pattern"),
    [(pkg, pat) for pkg, pats in PACKAGE_DATA.items() for pat in pats],
)
def test_package_data_pattern_matches_a_file(package: str, pattern: str) -> None:
    where = ROOT / "src" / package.replace(".", "/")
    assert list(where.glob(pattern)), f"pyproject ships {package}/{pattern}, which matches nothing"
