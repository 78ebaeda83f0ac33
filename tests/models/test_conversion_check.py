"""Conversion checks: the numbers themselves, and model_source recorded by quantize() for the
sources each runtime takes (tiny models the tests build), with the n/a reasons of the others."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgequant.build.quantize import quantize
from edgequant.errors import ModelError, UnsupportedError
from edgequant.models.conversion_check import compare


def test_compare_identical_perturbed_and_flipped() -> None:
    a = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]], np.float32)
    same = compare(a, a)
    assert (same["cosine_min"], same["max_abs_error"], same["top1_agreement_pct"]) == (
        1.0,
        0.0,
        100.0,
    )
    assert same["sqnr_db"] == float("inf") and same["faithful"]
    flipped = a.copy()
    flipped[1] = [5.0, 0.0, 0.0]
    bad = compare(a, flipped)
    assert bad["top1_agreement_pct"] == 50.0 and not bad["faithful"]
    assert bad["max_abs_error"] == 5.0 and bad["sqnr_db"] < 10
    # a dense output flattened by a session compares by size; no top-1 for it
    dense = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    flat = compare(dense, dense.reshape(2, -1))
    assert flat["top1_agreement_pct"] is None and flat["cosine_min"] == 1.0
    with pytest.raises(ModelError, match=r"outputs differ in shape"):
        compare(a, a[:, :2])


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 6),
    ).eval()


@pytest.fixture
def calib() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((16, 3, 12, 12)).astype(np.float32)


def test_quantize_an_in_memory_module_records_the_check(tmp_path: Path, calib: np.ndarray) -> None:
    pytest.importorskip("onnxruntime")
    art = quantize(
        _net(),
        backend="onnxruntime",
        scheme="w8a8",
        calibration=calib,
        cache_dir=tmp_path,
        progress=False,
    )
    src = art.model_source
    assert src is not None and src["format"] == "module"
    check = src["check"]
    assert check["faithful"] and check["top1_agreement_pct"] == 100.0 and check["samples"] == 16
    assert check["reference"] == "the eager PyTorch module" and "calibration array" in check["data"]
    y = art.run(calib[:3])
    assert y.shape == (3, 6)
    # the record the artifact keeps on disk holds it too
    from edgequant.backends.base import Artifact

    assert Artifact.load(art.directory).metadata["model_source"]["check"] == check


def _tflite(tmp_path: Path) -> Path:
    litert_torch = pytest.importorskip("litert_torch")

    class Nhwc(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x.permute(0, 3, 1, 2))

    path = tmp_path / "user.tflite"
    edge = litert_torch.convert(Nhwc().eval(), (torch.zeros(1, 12, 12, 3),))
    path.write_bytes(bytes(edge.model_content()))
    return path


def test_a_float_tflite_on_its_runtimes_and_na_on_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("openvino")
    monkeypatch.setenv("EDGEQUANT_CACHE", str(tmp_path / "cache"))
    path = _tflite(tmp_path)
    x = np.random.default_rng(1).standard_normal((8, 12, 12, 3)).astype(np.float32)
    for backend, scheme in (("openvino", "fp32"), ("litert", "w8a8")):
        art = quantize(
            str(path),
            backend=backend,
            scheme=scheme,
            calibration=x,
            cache_dir=tmp_path / "cache",
            progress=False,
        )
        check = art.model_source["check"]
        assert art.model_source["format"] == ".tflite", backend
        assert check["reference"] == "the LiteRT interpreter on the source .tflite"
        assert check["cosine_min"] > 0.9999, (backend, check)
        assert art.run(x[:1]).shape == (1, 6)
    with pytest.raises(
        UnsupportedError,
        match=r"onnxruntime cannot take a .tflite model: there is no maintained .tflite -> ONNX",
    ):
        quantize(
            str(path), backend="onnxruntime", scheme="fp32", cache_dir=tmp_path, progress=False
        )
    with pytest.raises(
        UnsupportedError, match=r"pytorch cannot take a .tflite model: .*-> PyTorch converter"
    ):
        quantize(str(path), backend="pytorch", scheme="fp32", cache_dir=tmp_path, progress=False)


def test_an_onnx_file_says_why_litert_cannot_take_it(tmp_path: Path) -> None:
    from edgequant.build.quantize import resolve_model
    from edgequant.models.export import export_onnx

    m = resolve_model(_net(), input_options={"input_shape": "3,12,12"})
    onnx_file = export_onnx(m, tmp_path / "net.onnx")
    with pytest.raises(UnsupportedError, match=r"onnx2torch .* needs torchvision"):
        quantize(
            str(onnx_file), backend="litert", scheme="fp32", cache_dir=tmp_path, progress=False
        )


def test_a_module_without_an_input_shape_is_refused() -> None:
    from edgequant.build.quantize import resolve_model
    from edgequant.errors import ValidationError

    with pytest.raises(ValidationError, match=r"give its input shape"):
        resolve_model(_net())


def test_compare_class_outputs_of_different_ranks() -> None:
    """A (N,1,1,K) source output against the session's (N,K): top-1 agreement, no broadcast error."""
    import numpy as np

    from edgequant.models.conversion_check import compare

    ref = np.random.default_rng(0).normal(size=(16, 1, 1, 1404)).astype(np.float32)
    out = compare(ref, ref.reshape(16, 1404))
    assert out["top1_agreement_pct"] == 100.0
    assert out["sqnr_db"] == float("inf")
