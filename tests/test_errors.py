"""The error hierarchy: one exit code per kind of error, declared in the class line."""

from __future__ import annotations

import pytest

from edgequant import errors
from edgequant.errors import EXIT_CODES, EdgequantError, ModelError, ValidationError


def test_each_kind_of_error_has_its_own_exit_code() -> None:
    kinds = [getattr(errors, name) for name in errors.__all__ if name.endswith("Error")]
    codes = {kind.exit_code for kind in kinds}
    assert len(codes) == len(kinds)
    assert EXIT_CODES[ModelError.exit_code] == "ModelError"
    assert issubclass(ValidationError, ValueError) and ValidationError.exit_code == 2


def test_a_taken_exit_code_is_refused_and_a_subclass_inherits_its_code() -> None:
    with pytest.raises(TypeError, match="exit code 5 belongs to ModelError"):

        class Clash(EdgequantError, exit_code=5):
            pass

    class CorruptModelError(ModelError):
        pass

    assert CorruptModelError.exit_code == 5
    assert EdgequantError.exit_code == 1
