"""Shared fixtures: tiny models and data built by the tests themselves; nothing downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # artifacts built by tests never touch the user's cache
    os.environ["EDGEQUANT_CACHE"] = str(tmp_path_factory.mktemp("eq-cache"))
    # ...nor the user's artifact-signing key (~/.config/edgequant/artifact-key)
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("eq-config"))


@pytest.fixture(scope="session")
def tiny_model():  # type: ignore[no-untyped-def]
    """A small conv net (conv-bn-relu, depthwise, residual add, pool, linear) as a Model."""
    from tests.helpers import make_tiny_model

    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_calibration(tiny_model) -> np.ndarray:  # type: ignore[no-untyped-def]
    from tests.helpers import tiny_inputs

    return tiny_inputs(tiny_model, 32, seed=1)


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    return tmp_path
