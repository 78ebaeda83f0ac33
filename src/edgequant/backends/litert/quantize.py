"""LiteRT's build steps: litert-torch converts, ai-edge-quantizer calibrates and quantizes.

Example:
    >>> float_bytes = convert(model)                                             # doctest: +SKIP
    >>> data, meta = quantize(float_bytes, build_recipe(scheme), calib, scheme)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from edgequant.errors import (
    EdgequantError,
    ModelError,
    UnsupportedError,
    ValidationError,
    condense_error,
)
from edgequant.quant.scheme import Scheme

if TYPE_CHECKING:
    from edgequant.models.base import Model

#: converted float models kept in memory so the schemes of one model convert once per process
_FLOAT_CACHE: dict[tuple[str, str, tuple[int, ...]], bytes] = {}
_FLOAT_CACHE_MAX_BYTES = 600 * 2**20  # VGG-16 alone is 528 MB in fp32


def convert(model: Model) -> bytes:
    """The float .tflite of ``model`` (batch 1, NCHW); converted once per process per model."""
    if model.module is None:
        raise UnsupportedError(
            "LiteRT needs a PyTorch model (litert-torch converts nn.Module, not .onnx files)"
        )
    shape = (1, *model.input_spec.shape)
    import litert_torch
    import torch

    # keyed by the weights' bytes, not the module's identity: a module changed in place (bias
    # correction, QAT) must convert again; hashing costs ~0.1 s for ResNet-50, converting ~20 s
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.module.state_dict().items():
        digest.update(name.encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())  # any dtype, bf16 included
    key = (model.key, digest.hexdigest(), shape)
    if key in _FLOAT_CACHE:
        return _FLOAT_CACHE[key]

    module = model.module.eval()
    example = torch.zeros(shape, dtype=torch.float32)
    try:
        with torch.no_grad():
            edge = litert_torch.convert(module, (example,))
        data = bytes(edge.model_content())
    except Exception as e:  # the converter raises many types; the message is what matters
        raise ModelError(
            f"litert-torch could not convert {model.name}: {condense_error(e)}"
        ) from None
    while (
        _FLOAT_CACHE and sum(map(len, _FLOAT_CACHE.values())) + len(data) > _FLOAT_CACHE_MAX_BYTES
    ):
        _FLOAT_CACHE.pop(next(iter(_FLOAT_CACHE)))  # oldest first
    if len(data) <= _FLOAT_CACHE_MAX_BYTES:
        _FLOAT_CACHE[key] = data
    return data


def float_weight_bytes(float_bytes: bytes) -> int:
    """Weight bytes of the float flatbuffer."""
    from edgequant.backends.litert.inspect import weight_bytes

    return weight_bytes(float_bytes)[0]


def quantize(
    float_bytes: bytes, recipe: list[dict[str, Any]], calib: np.ndarray | None, scheme: Scheme
) -> tuple[bytes, dict[str, Any]]:
    """Run ai-edge-quantizer on the float model; return the quantized flatbuffer and what was done."""
    from ai_edge_quantizer import quantizer

    meta: dict[str, Any] = {}
    try:
        q = quantizer.Quantizer(bytearray(float_bytes), recipe)
        result_qsv = None
        if q.need_calibration:
            if calib is None:  # pragma: no cover - prepare() validated it
                raise ValidationError(f"{scheme.name} needs calibration data")
            result_qsv, meta = _calibrate(float_bytes, recipe, calib, scheme)
        result = q.quantize(result_qsv, enable_progress_report=False)
    except EdgequantError:
        raise
    except (ValueError, RuntimeError, KeyError, TypeError) as e:
        raise UnsupportedError(
            f"ai-edge-quantizer failed on {scheme.name}: {condense_error(e)}"
        ) from None
    if result.quantized_model is None:
        raise UnsupportedError(f"ai-edge-quantizer produced no model for {scheme.name}")
    return bytes(result.quantized_model), meta


def _calibrate(
    float_bytes: bytes, recipe: list[dict[str, Any]], calib: np.ndarray, scheme: Scheme
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Activation ranges with the quantizer's calibrator, one sample per step.

    ``default`` and ``minmax`` both take the absolute min/max over the samples. The quantizer's
    own default (an exponential moving average of per-sample min/max, smoothing 0.95) was
    measured worse here: EfficientNet-Lite0 w8a8, 50 calibration samples, top-1 agreement with
    fp32 on 50 ImageNet images 90% with the moving average vs 98% with min/max.
    """
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    sigs = Interpreter(model_content=float_bytes).get_signature_list()
    if len(sigs) != 1:
        raise ValidationError(f"expected one signature in the converted model, found {list(sigs)}")
    sig, spec = next(iter(sigs.items()))
    in_name = spec["inputs"][0]
    cal = calibrator.Calibrator(
        bytearray(float_bytes),
        num_threads=os.cpu_count() or 1,
        qsv_update_func=qsv_utils.min_max_update,
    )
    samples = [{in_name: calib[i : i + 1]} for i in range(len(calib))]
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe)  # the recipe decides which tensors get ranges
    cal.calibrate({sig: samples}, manager)
    meta = {
        "calibration": {
            "samples": len(samples),
            "method": "minmax",
            "requested": scheme.calibration.method,
            "why": "absolute min/max over the samples; the quantizer's moving-average default lost "
            "accuracy on EfficientNet-Lite0 (agreement with fp32 90% vs 98%)",
        }
    }
    return cal.get_model_qsvs(), meta


__all__ = ["convert", "float_weight_bytes", "quantize"]
