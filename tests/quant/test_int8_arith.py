"""The int8 arithmetic model against a straightforward integer reference, and its use in the sim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from edgequant.errors import ValidationError
from edgequant.hw.cpu import parse_cpuinfo
from edgequant.quant.int8_arith import (
    ARITHMETICS,
    get_arithmetic,
    int8_conv2d,
    int8_linear,
    saturation_correction,
)
from edgequant.quant.saturation import format_saturation_report, saturation_report, set_arithmetic
from edgequant.quant.scheme import get_scheme
from edgequant.quant.simulate import QuantLayer, quantize_module

CPUINFO = Path(__file__).parent.parent / "hw" / "cpuinfo"


def _sat16(v: int) -> int:
    return max(-32768, min(32767, v))


def reference_conv(
    x: np.ndarray,
    w: np.ndarray,
    zp: int,
    *,
    stride: int,
    pad: int,
    groups: int,
    arith: str,
) -> np.ndarray:
    """Loops, one output at a time, the way the kernels walk the reduction (see int8_arith)."""
    n, _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    og = o // groups
    out = np.zeros((n, o, ho, wo), dtype=np.int64)
    a = ARITHMETICS[arith]
    for b in range(n):
        for oc in range(o):
            g = oc // og
            for i in range(ho):
                for j in range(wo):
                    # (code, weight, padded) of every reduction entry in (tap, channel) order
                    terms = []
                    for t in range(kh * kw):
                        yy, xx = i * stride - pad + t // kw, j * stride - pad + t % kw
                        padded = not (0 <= yy < h and 0 <= xx < wd)
                        for ci in range(cg):
                            v = zp if padded else int(x[b, g * cg + ci, yy, xx])
                            terms.append((v, int(w[oc, ci, t // kw, t % kw]), padded))
                        if a.pairing == "channel" and cg % 2:
                            terms.append((0, 0, True))  # channels padded to pairs
                    if len(terms) % 2:
                        terms.append((0, 0, True))
                    acc = 0
                    for (v0, w0, p0), (v1, w1, p1) in zip(terms[0::2], terms[1::2], strict=True):
                        exact = (v0 - zp) * w0 * (not p0) + (v1 - zp) * w1 * (not p1)
                        depthwise = groups > 1 and cg == 1
                        if not a.saturating or (depthwise and not a.depthwise_saturates):
                            acc += exact
                            continue
                        comp = zp * (w0 + w1)  # MLAS: zp·Σw over the im2col row, padding = zp
                        if a.pad == "zero":  # oneDNN skips padded taps (compensated exactly)
                            v0, v1 = (0 if p0 else v0), (0 if p1 else v1)
                            comp = zp * (w0 * (not p0) + w1 * (not p1))
                        acc += _sat16(v0 * w0 + v1 * w1) - comp
                    out[b, oc, i, j] = acc
    return out


@st.composite
def conv_case(draw: st.DrawFn) -> dict:
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 4))
    og = draw(st.integers(1, 2))
    k = draw(st.sampled_from([1, 2, 3]))
    h = draw(st.integers(k, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    # weights and inputs near the extremes, so about half of the pairs saturate
    w = rng.choice([-127, -120, -90, -3, 0, 5, 77, 110, 127], size=(groups * og, cg, k, k))
    x = rng.choice([0, 1, 60, 200, 250, 255], size=(draw(st.integers(1, 2)), groups * cg, h, h))
    return {
        "x": x,
        "w": w,
        "zp": draw(st.sampled_from([0, 3, 128])),
        "stride": draw(st.sampled_from([1, 2])),
        "pad": draw(st.integers(0, k // 2 + 1)),
        "groups": groups,
    }


@settings(max_examples=60, deadline=None)
@given(case=conv_case(), arith=st.sampled_from(sorted(ARITHMETICS)))
def test_conv_matches_loop_reference(case: dict, arith: str) -> None:
    x, w = case["x"], case["w"]
    got = int8_conv2d(
        torch.tensor(x, dtype=torch.float32),
        torch.tensor(w, dtype=torch.float32),
        case["zp"],
        stride=(case["stride"],) * 2,
        padding=(case["pad"],) * 2,
        groups=case["groups"],
        arith=arith,
    )
    want = reference_conv(
        x, w, case["zp"], stride=case["stride"], pad=case["pad"], groups=case["groups"], arith=arith
    )
    np.testing.assert_array_equal(got.numpy(), want)


def test_exact_is_plain_int32_conv() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(2, 6, 7, 7))
    w = rng.integers(-127, 128, size=(5, 6, 3, 3))
    got = int8_conv2d(torch.tensor(x).float(), torch.tensor(w).float(), 17, padding=(1, 1))
    xs = np.pad(x - 17, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.zeros((2, 5, 7, 7), dtype=np.int64)
    for i in range(3):
        for j in range(3):
            want += np.einsum("nchw,oc->nohw", xs[:, :, i : i + 7, j : j + 7], w[:, :, i, j])
    np.testing.assert_array_equal(got.numpy(), want)


def test_constructed_case_saturates() -> None:
    # 255 * 127 * 2 = 64770 > 32767 in every pair of adjacent input channels
    x, w = torch.full((1, 8, 2, 2), 255.0), torch.full((3, 8, 1, 1), 127.0)
    corr, n = saturation_correction(x, w)
    assert n.saturated == n.pairs == 1 * 3 * 4 * 4
    assert int8_conv2d(x, w, 0, arith="pmaddubsw").unique().tolist() == [4 * 32767]
    assert int8_conv2d(x, w, 0).unique().tolist() == [8 * 255 * 127]
    assert float(corr.min()) == 4 * (32767 - 64770)


@pytest.mark.parametrize(
    ("xmax", "wmax"),
    [(255, 64), (127, 127)],  # 7-bit weights (ORT reduce_range) / 7-bit activations (PyTorch)
)
def test_reduced_range_never_saturates(xmax: int, wmax: int) -> None:
    x = torch.full((2, 16, 3, 3), float(xmax))
    w = torch.full((4, 16, 3, 3), float(wmax))
    w[1] = -float(wmax)
    _, n = saturation_correction(x, w, padding=(1, 1))
    assert n.saturated == 0 and n.pairs > 0
    np.testing.assert_array_equal(
        int8_conv2d(x, w, 5, padding=(1, 1), arith="pmaddubsw").numpy(),
        int8_conv2d(x, w, 5, padding=(1, 1)).numpy(),
    )


def test_depthwise_is_exact_on_onednn_and_pairs_cross_taps_on_mlas() -> None:
    x, w = torch.full((1, 4, 3, 3), 255.0), torch.full((4, 1, 3, 3), 127.0)
    exact = int8_conv2d(x, w, 0, groups=4)
    assert torch.equal(int8_conv2d(x, w, 0, groups=4, arith="pmaddubsw"), exact)
    # the stem case: 3 input channels, MLAS pairs (kh, kw, c) entries across taps
    x3, w3 = torch.full((1, 3, 3, 3), 255.0), torch.full((1, 3, 3, 3), 127.0)
    onednn = int8_conv2d(x3, w3, 0, arith="pmaddubsw")
    mlas = int8_conv2d(x3, w3, 0, arith="pmaddubsw-mlas")
    assert int(onednn) == 9 * (32767 + 255 * 127)  # (c0, c1) saturate, c2 pairs with a zero
    assert int(mlas) == 13 * 32767 + 255 * 127  # 27 entries: 13 full pairs, 1 alone


def test_linear_pairs_adjacent_inputs() -> None:
    x = torch.tensor([[255.0, 255.0, 255.0, 0.0, 10.0]])
    w = torch.tensor([[127.0, 127.0, 127.0, 127.0, -5.0]])
    assert int8_linear(x, w, 0).tolist() == [[3 * 255 * 127 - 50]]
    assert int8_linear(x, w, 0, arith="pmaddubsw").tolist() == [[32767 + 255 * 127 - 50]]
    # s8 activations are shifted to u8 (+128) as the kernels do: -128..127 -> 0..255
    s = int8_linear(
        torch.tensor([[127.0, 127.0]]),
        torch.tensor([[127.0, 127.0]]),
        0,
        arith="pmaddubsw",
        signed_input=True,
    )
    assert s.tolist() == [[32767 - 128 * 254]]


CLASS_ARITH = {
    "zen3-avx2.txt": "pmaddubsw",
    "skylake-avx512.txt": "pmaddubsw",
    "zen4-avx512vnni.txt": "exact",
    "sapphirerapids-amx.txt": "exact",
    "alderlake-avxvnni.txt": "exact",
    "rpi4-neon.txt": "exact",
    "rpi5-dotprod.txt": "exact",
    "graviton3-i8mm.txt": "exact",
}


@pytest.mark.parametrize("name", sorted(CLASS_ARITH))
def test_cpu_class_mapping(name: str) -> None:
    profile = parse_cpuinfo((CPUINFO / name).read_text())
    arith = get_arithmetic(profile)
    assert arith.name == CLASS_ARITH[name]
    assert arith.saturating is profile.pair_saturation
    assert get_arithmetic(profile.int8_class) == arith


def test_unknown_arithmetic_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="unknown int8 arithmetic"):
        get_arithmetic("avx3")


# --- the simulator -----------------------------------------------------------------------------
def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(4, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 8, 1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    with torch.no_grad():  # same-sign large weights: the pairs that overflow int16
        net[2].weight.abs_()
        net[2].weight[:, ::2] = net[2].weight.abs().amax()
    return net.eval()


def test_sim_models_target_arithmetic() -> None:
    net, scheme = _net(), get_scheme("w8a8")
    calib = torch.rand(16, 4, 8, 8) * 4
    plain = quantize_module(net, scheme, calib)
    exact = quantize_module(net, scheme, calib, arith="exact")
    avx2 = quantize_module(net, scheme, calib, arith="avx2")
    x = torch.rand(4, 4, 8, 8) * 4
    with torch.no_grad():
        assert torch.equal(plain(x), exact(x))
        assert not torch.allclose(plain(x), avx2(x))
    rows = {r.name: r for r in saturation_report(avx2)}
    assert set(rows) == {"0", "2", "4", "7"}  # every int8 conv/linear got the integer path
    assert rows["2"].saturated > 0 and rows["2"].sqnr_db < 60
    assert rows["4"].kind == "depthwise 3x3" and rows["4"].saturated == 0
    assert all(r.saturated == 0 for r in saturation_report(exact))
    assert "SQNR vs exact" in format_saturation_report(list(rows.values()), top=2)
    saturation_report(avx2, reset=True)
    assert all(r.pairs == 0 for r in saturation_report(avx2))
    assert set_arithmetic(avx2, "avx2", exact_layers=["2"]) == 4
    with torch.no_grad():
        avx2(x)
    assert {r.name: r.saturated for r in saturation_report(avx2)}["2"] == 0
    assert set_arithmetic(avx2, "avx512-vnni") == 4
    with torch.no_grad():
        assert torch.equal(avx2(x), plain(x))


def test_sim_integer_path_is_the_integer_reference() -> None:
    """The sim's conv output under pmaddubsw is s_x·s_w·(Σ saturated pairs) + bias, exactly."""
    net = _net()
    sim = quantize_module(net, get_scheme("w8a8"), torch.rand(16, 4, 8, 8) * 4, arith="avx2")
    layer = sim.get_submodule("2")
    assert isinstance(layer, QuantLayer)
    seen: dict[str, torch.Tensor] = {}
    layer.register_forward_hook(lambda m, i, o: seen.update(x=i[0], y=o))
    with torch.no_grad():
        sim(torch.rand(2, 4, 8, 8) * 4)
    src = layer.arith.source  # type: ignore[union-attr]
    s, zp = float(src.scale), int(src.zero_point)
    codes = torch.round(seen["x"] / s) + zp
    wq = torch.round(layer.quantized_weight() / layer.weight_scale)
    acc = int8_conv2d(codes, wq, zp, arith="pmaddubsw")
    want = acc.double() * s * layer.weight_scale.reshape(1, -1, 1, 1).double()
    want += layer.inner.bias.reshape(1, -1, 1, 1).double()
    torch.testing.assert_close(seen["y"].double(), want, rtol=1e-5, atol=1e-4)
    assert int((acc != int8_conv2d(codes, wq, zp)).sum()) > 0


def test_sim_with_arithmetic_survives_save_and_load(tmp_path: Path) -> None:
    sim = quantize_module(_net(), get_scheme("w8a8"), torch.rand(16, 4, 8, 8) * 4, arith="avx2")
    torch.save(sim, tmp_path / "model.pt")
    back = torch.load(tmp_path / "model.pt", weights_only=False)
    x = torch.rand(2, 4, 8, 8) * 4
    with torch.no_grad():
        assert torch.equal(sim(x), back(x))
    assert saturation_report(back)[1].saturated > 0
