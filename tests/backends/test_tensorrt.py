"""The TensorRT backend: the shared contract (skipped with its reason without an NVIDIA GPU,
the tensorrt package or onnxruntime-gpu) and what it says where it cannot run."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from edgequant.backends import get_backend
from edgequant.errors import BackendUnavailableError
from edgequant.models.base import Model
from edgequant.quant.scheme import get_scheme
from tests.backends.contract import BackendContract, assert_unavailable_raises


class TestTensorRt(BackendContract):
    backend_name = "tensorrt"
    #: fp16 engines: TensorRT may pick fp16 tactics for the whole net
    min_cosine: ClassVar[dict[str, float]] = {**BackendContract.min_cosine, "fp16": 0.998}


def test_unavailable_contract() -> None:
    assert_unavailable_raises(get_backend("tensorrt"))


def test_prepare_without_runtime_fails_before_work(tiny_model: Model, tmp_path: Path) -> None:
    be = get_backend("tensorrt")
    reason = be.unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT runs here: the contract class covers prepare")
    with pytest.raises(BackendUnavailableError, match="tensorrt"):
        be.prepare(tiny_model, get_scheme("fp32"), None, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # what it can run is known without the runtime: n/a answers carry their reason
    assert be.supports(get_scheme("fp16"), tiny_model) is None
    assert "static" in (be.supports(get_scheme("w8-dyn"), tiny_model) or "")
