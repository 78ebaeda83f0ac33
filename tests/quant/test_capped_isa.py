"""Real oneDNN int8 convs, capped with ONEDNN_MAX_CPU_ISA, against the sim's arithmetic.

PyTorch's quantized conv on the ``onednn`` engine is the bundled oneDNN that PT2E/Inductor's
``qconv2d_pointwise`` calls too. Capped to AVX2 it runs ``jit_uni_int8:avx2`` (vpmaddubsw), to
AVX512_CORE ``brg_conv_fwd:avx512_core`` (vpmaddubsw too), to AVX2_VNNI / AVX512_CORE_VNNI the
vpdpbusd kernels; each int8 output must be its class's prediction (to the last bit but float
rounding of the requantization; measured: bit-exact), the other arithmetic's is off on most
outputs of this saturating case. Uncapped on a VNNI
or AMX machine it must be the exact one. On an AVX2-only machine the cap changes nothing and both
runs are the pmaddubsw case. MLAS (ONNX Runtime) and XNNPACK (LiteRT) dispatch on CPUID and honour
no cap: ``test_emulated_isa.py`` runs them on an emulated AVX2 CPU instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgequant.hw.cpu import cpu_profile
from edgequant.quant.int8_arith import get_arithmetic, int8_conv2d

RUNNER = r"""
import json, sys
import numpy as np, torch
import torch.ao.nn.quantized as nnq
d = np.load(sys.argv[1])
torch.backends.quantized.engine = "onednn"
w = torch.tensor(d["w"], dtype=torch.float32)
ws = torch.tensor(d["ws"], dtype=torch.float64)
conv = nnq.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=int(d["pad"]), bias=False)
qw = torch.quantize_per_channel(w * ws.float()[:, None, None, None], ws,
                                torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
conv.set_weight_bias(qw, None)
conv.scale, conv.zero_point = float(d["ys"]), int(d["yzp"])
qx = torch._make_per_tensor_quantized_tensor(
    torch.tensor(d["x"], dtype=torch.uint8), float(d["xs"]), int(d["xzp"]))
y = conv(qx).int_repr().numpy()
np.save(sys.argv[2], y)
"""

OV_RUNNER = r"""
import sys
import numpy as np, openvino as ov, openvino.opset13 as ops
d = np.load(sys.argv[1])
w, xs, ws = d["w"], float(d["xs"]), float(d["ws"][0])
x = ops.parameter(list(d["x"].shape), np.float32, name="x")
hi = np.float32(255 * xs)
fq = ops.fake_quantize(x, np.float32(0), hi, np.float32(0), hi, 256)
wf = ops.multiply(ops.convert(ops.constant(w), np.float32),
                  ops.constant(np.full((w.shape[0], 1, 1, 1), ws, np.float32)))
conv = ops.convolution(fq, wf, [1, 1], [1, 1], [1, 1], [1, 1])
cm = ov.Core().compile_model(ov.Model([conv], [x]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
impl = [op.get_rt_info()["primitiveType"].astype(str) for op in cm.get_runtime_model().get_ordered_ops()
        if op.get_rt_info()["layerType"].astype(str) == "Convolution"]
print("impl:" + ";".join(impl))
np.save(sys.argv[2], cm(d["x"].astype(np.float32) * xs)[0] / (xs * ws))
"""

HOST = cpu_profile()


def _data(tmp: Path, zero_point: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    c, o = 8, 6
    w = rng.integers(-127, 128, size=(o, c, 3, 3))
    w[:, ::2] = np.abs(w[:, ::2])  # same-sign neighbours: pairs that can leave int16
    w[:, 1::2] = np.abs(w[:, 1::2])
    w[:3] *= -1
    w[:, 0, 1, 1] = 127  # the per-channel maximum is on the grid
    x = rng.integers(120, 256, size=(2, c, 6, 6))
    d = {
        "x": x.astype(np.uint8),
        "w": w.astype(np.int8),
        "ws": np.full(o, 0.002),
        "xs": np.array(0.05),
        "xzp": np.array(zero_point),
        "ys": np.array(0.8),
        "yzp": np.array(128),
        "pad": np.array(1),
    }
    np.savez(tmp / "case.npz", **d)  # type: ignore[arg-type]
    return d


def _run(
    tmp: Path, capped: bool, runner: str = RUNNER, cap: str = "AVX2"
) -> tuple[np.ndarray, str]:
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    if capped:
        env["ONEDNN_MAX_CPU_ISA"] = cap
    out = tmp / f"y{int(capped)}.npy"
    proc = subprocess.run(
        [sys.executable, "-c", runner, str(tmp / "case.npz"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    impl = [ln.split(",")[6] for ln in lines if ",exec,cpu,convolution," in ln]
    impl += [ln[5:] for ln in lines if ln.startswith("impl:")]
    return np.load(out), ";".join(impl)


def _predict(d: dict[str, np.ndarray], arith: str) -> np.ndarray:
    acc = (
        int8_conv2d(
            torch.tensor(d["x"]).float(),
            torch.tensor(d["w"]).float(),
            int(d["xzp"]),
            padding=(1, 1),
            arith=arith,
        )
        .double()
        .numpy()
    )
    m = float(d["xs"]) * d["ws"][None, :, None, None] / float(d["ys"])
    return np.clip(np.rint(acc * m) + int(d["yzp"]), 0, 255)


needs_x86 = pytest.mark.skipif(
    HOST.arch != "x86_64"
    or not HOST.has("avx2")
    or "onednn" not in torch.backends.quantized.supported_engines,
    reason="needs an x86 CPU with AVX2 and PyTorch built with oneDNN quantized kernels",
)


#: ONEDNN_MAX_CPU_ISA value -> (the INT8 class it emulates, the CPU flags it needs)
CAPS = {
    "AVX2": ("avx2", ("avx2",)),
    "AVX512_CORE": ("avx512", ("avx512bw",)),
    "AVX2_VNNI": ("avx-vnni", ("avx_vnni",)),
    "AVX512_CORE_VNNI": ("avx512-vnni", ("avx512_vnni",)),
}


@needs_x86
@pytest.mark.parametrize("cap", sorted(CAPS))
def test_capped_onednn_matches_class_arithmetic(tmp_path: Path, cap: str) -> None:
    cls, flags = CAPS[cap]
    if not HOST.has(*flags):
        pytest.skip(f"this CPU ({HOST.int8_class}) has no {', '.join(flags)} to run {cap} kernels")
    d = _data(tmp_path)
    y, impl = _run(tmp_path, capped=True, cap=cap)
    assert cap.lower() in impl, impl
    arith = get_arithmetic(cls).name
    want, other = _predict(d, arith), _predict(d, "exact" if arith != "exact" else "pmaddubsw")
    off, off_other = np.abs(y - want), np.abs(y - other)
    # float rounding of the requantization may move a code by one (measured here: never)
    assert off.max() <= 1 and (off > 0).mean() < 0.01, json.dumps(
        {"impl": impl, "max": float(off.max()), "frac": float((off > 0).mean())}
    )
    assert (off_other > 1).mean() > 0.2, float((off_other > 1).mean())


@needs_x86
def test_uncapped_onednn_matches_host_arithmetic(tmp_path: Path) -> None:
    d = _data(tmp_path)
    y, impl = _run(tmp_path, capped=False)
    arith = get_arithmetic(HOST).name
    pred = _predict(d, arith)
    assert np.abs(y - pred).max() <= 1, f"{impl} on {HOST.int8_class} is not {arith}"


@pytest.mark.skipif(
    HOST.arch != "x86_64" or not HOST.has("avx2"), reason="needs an x86 CPU with AVX2"
)
def test_capped_openvino_matches_pmaddubsw(tmp_path: Path) -> None:
    """OpenVINO's oneDNN fork honours the cap too: jit_avx2_I8 instead of brgconv_avx512_I8."""
    pytest.importorskip("openvino")
    d = _data(tmp_path, zero_point=0)  # a FakeQuantize from 0.0: zero point 0
    xzp = int(d["xzp"])
    sat = (
        int8_conv2d(
            torch.tensor(d["x"]).float(),
            torch.tensor(d["w"]).float(),
            xzp,
            padding=(1, 1),
            arith="pmaddubsw",
        )
        .double()
        .numpy()
    )
    exact = (
        int8_conv2d(torch.tensor(d["x"]).float(), torch.tensor(d["w"]).float(), xzp, padding=(1, 1))
        .double()
        .numpy()
    )
    for capped in (True, False):
        acc, impl = _run(tmp_path, capped, OV_RUNNER)
        want = sat if capped or HOST.pair_saturation else exact
        assert ("avx2" in impl) or not capped, impl
        # f32 dequantized output divided back by the scales: integers up to float rounding
        assert np.abs(acc - want).max() < 0.5, (impl, float(np.abs(acc - want).max()))
    assert (np.abs(sat - exact) > 0.5).mean() > 0.2
