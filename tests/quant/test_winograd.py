"""Winograd F(2x2,3x3): exact in float, bounded error with INT4 weights / INT6 inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgequant.quant.fake_quant import sqnr_db
from edgequant.quant.scheme import get_scheme
from edgequant.quant.simulate import QuantLayer, quantize_module
from edgequant.quant.winograd import eligible, multiply_counts, winograd_conv2d


@pytest.mark.parametrize(("h", "w", "pad"), [(8, 8, 1), (7, 9, 1), (6, 5, 0), (5, 5, 2)])
def test_float_winograd_equals_direct(h: int, w: int, pad: int) -> None:
    torch.manual_seed(h * w + pad)
    x, k, b = torch.randn(2, 5, h, w), torch.randn(6, 5, 3, 3), torch.randn(6)
    ref = F.conv2d(x, k, b, padding=pad)
    got = winograd_conv2d(x, k, b, padding=pad)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) < 1e-4


def test_quantized_winograd_error_is_bounded() -> None:
    torch.manual_seed(0)
    x, k = torch.randn(2, 16, 10, 10), torch.randn(16, 16, 3, 3) * 0.1
    ref = F.conv2d(x, k, padding=1)
    got = winograd_conv2d(x, k, None, padding=1, quantized=True)
    # INT4 transformed weights (per tap) + INT6 transformed inputs: ~4-bit-like SQNR
    assert sqnr_db(ref, got) > 15.0
    coarse = winograd_conv2d(x, k, None, padding=1, quantized=True, weight_bits=2, input_bits=3)
    assert sqnr_db(ref, coarse) < sqnr_db(ref, got)


def test_eligibility_and_multiply_count() -> None:
    assert eligible(nn.Conv2d(4, 4, 3, padding=1))
    assert not eligible(nn.Conv2d(4, 4, 3, stride=2, padding=1))
    assert not eligible(nn.Conv2d(4, 4, 3, padding=1, groups=4))
    assert not eligible(nn.Conv2d(4, 4, 1))
    direct, wino = multiply_counts(nn.Conv2d(4, 4, 3, padding=1), (16, 16))
    assert direct / wino == pytest.approx(2.25)


def test_winograd_technique_in_the_simulator() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2)
    ).eval()
    calib = torch.randn(16, 3, 8, 8)
    sim = quantize_module(
        net, get_scheme({"base": "w8a8", "name": "w", "techniques": ["winograd"]}), calib
    )
    layers = [m for m in sim.modules() if isinstance(m, QuantLayer)]
    assert [m.use_winograd for m in layers] == [True, False]
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert sqnr_db(net(x), sim(x)) > 12.0
