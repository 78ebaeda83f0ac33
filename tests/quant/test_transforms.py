"""BN folding and CLE are equivalent to 1e-4; bias correction reduces quantized error."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgequant.errors import ModelError, ValidationError
from edgequant.quant.bias_correction import correct_bias
from edgequant.quant.bn_fold import fold_batchnorm
from edgequant.quant.cle import equalizable_pairs, equalize
from edgequant.quant.scheme import get_scheme
from edgequant.quant.simulate import quantize_module
from edgequant.quant.transforms import apply_techniques, planned_techniques
from tests.helpers import make_tiny_model, tiny_inputs


def _max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / (b.abs().max() + 1e-12))


def test_bn_fold_tinynet_equivalent() -> None:
    m = make_tiny_model()
    x = torch.from_numpy(tiny_inputs(m, 8, seed=2))
    folded, pairs = fold_batchnorm(m.module)
    assert len(pairs) == 3
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in folded.modules())
    with torch.no_grad():
        assert _max_rel_diff(folded(x), m.module(x)) < 1e-4


def test_bn_fold_and_cle_on_zoo_model() -> None:
    from edgequant.models import load_model

    torch.manual_seed(0)
    m = load_model("efficientnet_lite0", pretrained=False)
    with torch.no_grad():  # non-trivial BN statistics, as trained models have
        for mod in m.module.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.2, 3.0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = m.module(x)
        folded, pairs = fold_batchnorm(m.module)
        n_bn = sum(isinstance(mod, nn.BatchNorm2d) for mod in m.module.modules())
        assert len(pairs) == n_bn > 40  # every BN of EfficientNet-Lite0 follows a conv
        assert _max_rel_diff(folded(x), ref) < 1e-4
        eq, cle_pairs = equalize(m.module)
        assert (
            cle_pairs
        )  # stage transitions without a residual: project -> expand (no ReLU6 between)
        assert _max_rel_diff(eq(x), ref) < 1e-4


def test_cle_equalizes_ranges_and_stays_equivalent() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 1),
        nn.ReLU6(),
        nn.Conv2d(4, 4, 1),
    ).eval()
    with torch.no_grad():
        net[0].weight.mul_(torch.logspace(-2, 1, 8).reshape(-1, 1, 1, 1))
    eq, pairs = equalize(net)
    assert pairs == [("0", "2"), ("2", "4")]  # not through ReLU6: inexact there
    x = torch.randn(4, 3, 6, 6)
    with torch.no_grad():
        assert _max_rel_diff(eq(x), net(x)) < 1e-4
    r_before = net[0].weight.abs().reshape(8, -1).amax(1)
    r_after = eq[0].weight.abs().reshape(8, -1).amax(1)
    assert r_after.max() / r_after.min() < r_before.max() / r_before.min()
    # per-tensor quantization of the equalized model is more accurate
    scheme = get_scheme("w8a8-pt")
    calib = torch.randn(32, 3, 6, 6)
    err_plain = (quantize_module(net, scheme, calib)(x) - net(x)).norm()
    err_eq = (quantize_module(eq, scheme, calib)(x) - net(x)).norm()
    assert err_eq < err_plain


def test_residual_blocks_are_not_equalized() -> None:
    m = make_tiny_model()
    folded, _ = fold_batchnorm(m.module)
    # conv1's output also feeds the residual add: scaling it would change the add
    assert ("conv1", "dw") not in equalizable_pairs(folded)
    assert ("dw", "pw") in equalizable_pairs(folded)


def test_bias_correction_reduces_quantized_error() -> None:
    m = make_tiny_model()
    calib = tiny_inputs(m, 64, seed=1)
    x = torch.from_numpy(tiny_inputs(m, 64, seed=5))
    scheme = get_scheme("w4-only")
    folded, _ = fold_batchnorm(m.module)
    fixed, n = correct_bias(folded, scheme, calib)
    assert n == 5
    with torch.no_grad():
        ref = m.module(x)
        err_plain = (quantize_module(folded, scheme, None)(x) - ref).norm()
        err_fixed = (quantize_module(fixed, scheme, None)(x) - ref).norm()
    assert err_fixed < 0.8 * err_plain


def test_apply_techniques() -> None:
    m = make_tiny_model()
    calib = tiny_inputs(m, 16, seed=1)
    s = get_scheme(
        {"base": "w8a8", "name": "w8a8-cle-bc", "techniques": ["cle", "bias_correction"]}
    )
    assert planned_techniques(s) == ["bn_fold", "cle", "bias_correction"]
    m2 = apply_techniques(m, s, calib)
    assert m2.info["techniques_applied"] == ["bn_fold", "cle", "bias_correction"]
    assert m2.weights_hash.startswith(m.weights_hash) and m2.weights_hash != m.weights_hash
    assert apply_techniques(m2, s, calib) is m2  # idempotent: no double correction
    assert apply_techniques(m, get_scheme("w4a8"), None) is m  # no techniques: no-op
    with pytest.raises(ValidationError, match="calibration"):
        apply_techniques(m, s, None)
    m3 = apply_techniques(
        m, get_scheme({"base": "fp32", "name": "f", "techniques": ["bn_fold"]}), None
    )
    x = torch.from_numpy(calib)
    with torch.no_grad():
        assert _max_rel_diff(m3.module(x), m.module(x)) < 1e-4
    assert np.isfinite(m3.module(x).detach().numpy()).all()


def test_untraceable_model_is_a_clear_error() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(x) if x.sum() > 0 else x

    with pytest.raises(ModelError, match="trace"):
        fold_batchnorm(Branchy())


def test_w8a8_rounds_by_gptq_where_it_can() -> None:
    """The built-in w8a8's GPTQ rounding and bias correction apply to a module with real
    calibration data, and are skipped with the reason (not refused) otherwise."""
    m = make_tiny_model()
    calib = tiny_inputs(m, 32, seed=1)
    s = get_scheme("w8a8")
    assert s.optional_techniques and set(s.techniques) == {"gptq", "bias_correction"}
    done = apply_techniques(m, s, calib)
    assert done.info["techniques_applied"] == ["bn_fold", "gptq", "bias_correction"]
    assert "+gptq-" in done.weights_hash
    synthetic = dataclasses.replace(m, info={"calibration_synthetic": True})
    skipped = apply_techniques(synthetic, s, calib)
    assert skipped.module is m.module and "synthetic" in skipped.info["techniques_skipped"]
    assert "no calibration" in apply_techniques(m, s, None).info["techniques_skipped"]
    onnx_file = dataclasses.replace(m, module=None)
    assert "ONNX file" in apply_techniques(onnx_file, s, calib).info["techniques_skipped"]
    # the same techniques listed by the user are asked for: refused where they cannot apply
    asked = get_scheme({"base": "w8a8", "techniques": ["gptq", "bias_correction"]})
    assert not asked.optional_techniques
    with pytest.raises(ValidationError, match="PyTorch module"):
        apply_techniques(onnx_file, asked, calib)
