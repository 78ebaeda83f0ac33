"""Model sources LiteRT takes besides a PyTorch module: a user's ``.tflite``, float or quantized.

A float ``.tflite`` is run as it is (fp32) or quantized by ai-edge-quantizer with the scheme's
recipe; an already-quantized one (int8/uint8 input) runs as it is, as ``fp32`` (no re-quantizing).

Example:
    >>> from edgequant.quant.scheme import get_scheme
    >>> source_reason(model, get_scheme("w8a8")) is None      # doctest: +SKIP
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgequant.errors import ModelError
from edgequant.models.base import TFLITE

if TYPE_CHECKING:
    from edgequant.models.base import Model
    from edgequant.quant.scheme import Scheme


def source_reason(model: Model, scheme: Scheme) -> str | None:
    """None when LiteRT can build ``scheme`` from this module-less model, else why not."""
    fmt = model.source_format
    if fmt == TFLITE:
        if model.info.get("quantized") and not (scheme.is_float and scheme.float_dtype == "fp32"):
            return (
                "the .tflite is already quantized (integer input); run it as fp32 (as it is): "
                "ai-edge-quantizer quantizes float models only"
            )
        return None
    if fmt == "onnx":
        return (
            "LiteRT needs a PyTorch model or a .tflite: litert-torch converts nn.Module, and "
            "onnx2torch (ONNX -> PyTorch) needs torchvision, which has no CPU wheel matching "
            "this torch here"
        )
    if fmt == "ir":
        return "an OpenVINO IR is read only by OpenVINO; no converter from IR to .tflite exists"
    return f"LiteRT needs a PyTorch module or a .tflite file, not a {fmt} model"


def read_source(model: Model) -> tuple[bytes, str]:
    """The bytes of the user's ``.tflite`` and how they were obtained, in words."""
    if model.source_path is None:
        raise ModelError(f"model {model.name} has no .tflite file")
    path = Path(model.source_path)
    if not path.is_file():
        raise ModelError(f"tflite model {path} does not exist any more")
    how = "user .tflite file, read as is"
    if model.info.get("outputs_dropped"):
        how += f" (first output kept; dropped {', '.join(model.info['outputs_dropped'])})"
    return path.read_bytes(), how


__all__ = ["read_source", "source_reason"]
