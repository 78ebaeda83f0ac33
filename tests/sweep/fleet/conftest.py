"""The fleet tests' shared fixture: a real Dask scheduler (workers are started by each test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sweep.fleet.processes import Fleet


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path)
    try:
        f.start_scheduler()
        yield f
    finally:
        f.stop()
