"""Quantize/dequantize maths: round trips, scale/zero-point rules, and an integer reference conv."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from edgequant.quant.fake_quant import (
    dequantize,
    fake_quant,
    fake_quant_weight,
    qparams_from_range,
    quantize,
    quantize_weight,
    round_half_even,
    sqnr_db,
    weight_qparams,
)
from edgequant.quant.scheme import TensorQuant

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    lo=finite,
    hi=finite,
    bits=st.integers(2, 16),
    sym=st.booleans(),
    values=st.lists(finite, min_size=1, max_size=20),
)
def test_round_trip_and_qparam_rules(
    lo: float, hi: float, bits: int, sym: bool, values: list[float]
) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    tq = TensorQuant(bits=bits, symmetric=sym)
    scale, zp = qparams_from_range(torch.tensor(lo), torch.tensor(hi), tq)
    z = int(zp)
    assert tq.qmin <= z <= tq.qmax  # zero-point is an integer of the range
    if sym:
        assert z == 0
    # 0.0 is exactly representable
    assert float(fake_quant(torch.tensor(0.0), scale, zp, tq.qmin, tq.qmax)) == 0.0
    x = torch.tensor(values, dtype=torch.float32)
    lo_rep = float((tq.qmin - z) * scale)
    hi_rep = float((tq.qmax - z) * scale)
    inside = (x >= lo_rep) & (x <= hi_rep)
    q = quantize(x, scale, zp, tq.qmin, tq.qmax)
    assert torch.equal(q, torch.round(q)) and q.min() >= tq.qmin and q.max() <= tq.qmax
    err = (x - dequantize(q, scale, zp)).abs()
    tol = float(scale) / 2 * (1 + 1e-4) + 1e-6 * float(x.abs().max())
    assert bool((err[inside] <= tol).all())
    # outside the range, values clamp to the range ends
    if (~inside).any():
        dq = dequantize(q, scale, zp)[~inside]
        assert bool(
            ((dq - lo_rep).abs() < 1e-3 * abs(lo_rep) + 1e-6)
            .logical_or((dq - hi_rep).abs() < 1e-3 * abs(hi_rep) + 1e-6)
            .all()
        )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5e5, 5e5, allow_nan=False, width=32), min_size=1, max_size=50))
def test_fast_rounding_is_half_to_even(values: list[float]) -> None:
    x = torch.tensor([*values, 0.5, 1.5, 2.5, -2.5, 3.5], dtype=torch.float32)
    assert torch.equal(round_half_even(x), torch.round(x))


def test_ste_gradient_is_one_inside_zero_outside() -> None:
    x = torch.tensor([0.1, 0.5, 5.0, -5.0], requires_grad=True)
    y = fake_quant(x, torch.tensor(0.1), torch.tensor(0), -8, 7)
    y.sum().backward()
    assert x.grad is not None
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("gran", ["tensor", "channel", "block:4"])
def test_weight_granularities(gran: str) -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 10, 3, 3) * torch.logspace(-2, 1, 6).reshape(-1, 1, 1, 1)
    tq = TensorQuant(bits=4, symmetric=True, granularity=gran)
    s, z = weight_qparams(w, tq)
    expect = {"tensor": 1, "channel": 6, "block:4": 6 * 3}[gran]
    assert s.numel() == expect
    wq = fake_quant_weight(w, s, z, tq)
    q = quantize_weight(w, s, z, tq)
    assert wq.shape == w.shape and q.min() >= -8 and q.max() <= 7
    # finer granularity -> no worse SQNR
    assert sqnr_db(w, wq) > 5.0


def test_finer_granularity_is_more_accurate() -> None:
    torch.manual_seed(0)
    w = torch.randn(8, 32, 3, 3) * torch.logspace(-2, 0, 8).reshape(-1, 1, 1, 1)
    out = {}
    for gran in ("tensor", "channel", "block:8"):
        tq = TensorQuant(bits=4, symmetric=True, granularity=gran)
        out[gran] = sqnr_db(w, fake_quant_weight(w, *weight_qparams(w, tq), tq))
    assert out["tensor"] < out["channel"] < out["block:8"]


def test_fake_quant_conv_matches_integer_reference() -> None:
    """int8 x int8 -> int32 accumulate -> requantize, in NumPy, equals the fake-quant conv."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(-1.0, 3.0, (2, 4, 7, 7)).astype(np.float32))
    w = torch.from_numpy(rng.normal(0, 0.3, (5, 4, 3, 3)).astype(np.float32))
    b = torch.from_numpy(rng.normal(0, 0.1, 5).astype(np.float32))
    aq = TensorQuant(bits=8, symmetric=False)
    wq = TensorQuant(bits=8, symmetric=True, granularity="channel")
    sx, zx = qparams_from_range(x.min(), x.max(), aq)
    sw, zw = weight_qparams(w, wq)
    # the simulator's way: fake-quant input and weight, float conv, fake-quant the output
    y_f = F.conv2d(fake_quant(x, sx, zx, 0, 255), fake_quant_weight(w, sw, zw, wq), b)
    sy, zy = qparams_from_range(y_f.min(), y_f.max(), aq)
    y_sim = quantize(y_f, sy, zy, 0, 255).numpy().astype(np.int64)
    # the integer runtime's way
    qx = quantize(x, sx, zx, 0, 255).numpy().astype(np.int64) - int(zx)
    qw = quantize_weight(w, sw, zw, wq).numpy().astype(np.int64)
    n, _, h, wd = qx.shape
    acc = np.zeros((n, 5, h - 2, wd - 2), dtype=np.int64)
    for i in range(3):
        for j in range(3):
            acc += np.einsum(
                "nchw,oc->nohw", qx[:, :, i : i + h - 2, j : j + wd - 2], qw[:, :, i, j]
            )
    assert np.abs(acc).max() < 2**31  # fits the int32 accumulator
    qbias = np.round(b.numpy() / (float(sx) * sw.reshape(-1).numpy())).astype(np.int64)
    mult = (float(sx) * sw.reshape(-1).numpy().astype(np.float64)) / float(sy)
    y_int = np.clip(
        np.rint((acc + qbias[None, :, None, None]) * mult[None, :, None, None]) + int(zy), 0, 255
    )
    diff = np.abs(y_int - y_sim)
    assert diff.max() <= 1  # equal up to rounding of the float accumulation / bias
    assert (diff == 0).mean() > 0.97


def test_sqnr() -> None:
    x = torch.randn(1000)
    assert sqnr_db(x, x) == float("inf")
    assert 15 < sqnr_db(x, x + 0.1 * x.std() * torch.randn(1000)) < 25
