"""Bias correction as the default pre-step of quantizers that have none (ORT, LiteRT, PT2E)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from edgequant.models.base import Model
from edgequant.quant.bias_correction import corrected_for_quantizer
from edgequant.quant.fake_quant import fake_quant_weight, weight_qparams
from edgequant.quant.scheme import get_scheme


def _weight_quantized(module: torch.nn.Module, scheme_name: str) -> torch.nn.Module:
    """The module with every conv/linear weight rounded by the scheme's weight quantizer."""
    tq = get_scheme(scheme_name).weights
    assert tq is not None
    q = copy.deepcopy(module)
    with torch.no_grad():
        for m in q.modules():
            if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
                s, z = weight_qparams(m.weight, tq)
                m.weight.copy_(fake_quant_weight(m.weight, s, z, tq))
    return q


def _error(ref: torch.Tensor, out: torch.Tensor) -> float:
    return float(((ref - out) ** 2).mean())


def test_correction_cancels_the_mean_weight_rounding_error(
    tiny_model: Model, tiny_calibration: np.ndarray
) -> None:
    assert tiny_model.module is not None
    # 4-bit weights make the rounding error large enough to see on a tiny net
    fixed, note = corrected_for_quantizer(tiny_model, get_scheme("w4a8"), tiny_calibration)
    assert fixed is not tiny_model and "bias correction" in note
    assert {"bn_fold", "bias_correction"} <= set(fixed.info["techniques_applied"])
    assert fixed.module is not None
    x = torch.from_numpy(tiny_calibration)
    with torch.no_grad():
        ref = tiny_model.module.eval()(x)
        plain = _weight_quantized(tiny_model.module.eval(), "w4a8")(x)
        corrected = _weight_quantized(fixed.module, "w4a8")(x)
    # the output's mean shift is what the correction removes: per class, over the samples
    assert (corrected - ref).mean(0).abs().mean() < 0.5 * (plain - ref).mean(0).abs().mean()
    assert _error(ref, corrected) < _error(ref, plain)


def test_not_applied_where_it_cannot_or_must_not_be(
    tiny_model: Model, tiny_calibration: np.ndarray
) -> None:
    for scheme in ("fp32", "w8-only", "w8-dyn"):
        same, note = corrected_for_quantizer(tiny_model, get_scheme(scheme), tiny_calibration)
        assert same is tiny_model and "not applied" in note
    same, note = corrected_for_quantizer(tiny_model, get_scheme("w8a8"), None)
    assert same is tiny_model and "not applied" in note
    onnx = dataclasses.replace(tiny_model, module=None)
    same, note = corrected_for_quantizer(onnx, get_scheme("w8a8"), tiny_calibration)
    assert same is onnx and "ONNX" in note
    synthetic = dataclasses.replace(tiny_model, info={"calibration_synthetic": True})
    same, note = corrected_for_quantizer(synthetic, get_scheme("w8a8"), tiny_calibration)
    assert same is synthetic and "synthetic" in note
    done = dataclasses.replace(tiny_model, info={"techniques_applied": ["bias_correction"]})
    same, note = corrected_for_quantizer(done, get_scheme("w8a8"), tiny_calibration)
    assert same is done and "already" in note


def test_error_sum_equals_the_convolution_it_replaces() -> None:
    import torch.nn.functional as F

    from edgequant.quant.bias_correction import error_sum

    torch.manual_seed(0)
    cases = [
        torch.nn.Conv2d(4, 6, 3, padding=1),
        torch.nn.Conv2d(4, 6, 3, stride=2, padding=1),
        torch.nn.Conv2d(4, 4, 5, stride=2, padding=2, groups=4),  # depthwise
        torch.nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2),
        torch.nn.Conv2d(4, 6, 1),
        torch.nn.Conv2d(4, 6, (3, 1), stride=(1, 2), padding=(1, 0)),
    ]
    x = torch.randn(3, 4, 9, 11)
    for c in cases:
        delta = torch.randn_like(c.weight)
        y = F.conv2d(x, delta, None, c.stride, c.padding, c.dilation, c.groups)
        total, n = error_sum(c, x, delta)
        assert n == y.shape[0] * y.shape[2] * y.shape[3]
        # the reference convolution runs in float32: equal to its rounding
        torch.testing.assert_close(total, y.double().sum((0, 2, 3)), rtol=1e-5, atol=1e-4)
    lin = torch.nn.Linear(5, 3)
    xl = torch.randn(7, 5)
    d = torch.randn(3, 5)
    total, n = error_sum(lin, xl, d)
    assert n == 7
    torch.testing.assert_close(total, (xl.double() @ d.double().T).sum(0), rtol=1e-5, atol=1e-5)
