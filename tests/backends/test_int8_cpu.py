"""The per runtime / per CPU class INT8 plan: choices from fixture cpuinfo files, the per-layer
remedies on a net where int16 pair saturation is constructed to bite, capped-ISA runs, QAT export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgequant.backends import get_backend
from edgequant.backends.int8_cpu import (
    Int8Plan,
    arithmetic_for,
    measure,
    plan_int8,
    plan_qdq,
    runtime_int8_class,
    sim_target,
    weight_grid_for,
)
from edgequant.backends.int8_table import class_config
from edgequant.errors import ValidationError
from edgequant.hw.cpu import cpu_profile, parse_cpuinfo
from edgequant.quant.scheme import get_scheme
from tests.helpers import module_model

FIXTURES = Path(__file__).resolve().parents[1] / "hw" / "cpuinfo"
RUNTIMES = ("onnxruntime", "openvino", "pytorch", "litert")
#: fixture -> (INT8 class, pair saturating)
EXPECTED = {
    "zen3-avx2.txt": ("avx2", True),
    "skylake-avx512.txt": ("avx512", True),
    "zen4-avx512vnni.txt": ("avx512-vnni", False),
    "alderlake-avxvnni.txt": ("avx-vnni", False),
    "sapphirerapids-amx.txt": ("amx-int8", False),
    "graviton3-i8mm.txt": ("arm-i8mm", False),
    "rpi5-dotprod.txt": ("arm-dotprod", False),
    "rpi4-neon.txt": ("arm-neon", False),
}


def saturating_net(adds_up: bool = False) -> nn.Module:
    """Three convs; the 3x3 ones see u8 codes and weights big enough to leave int16 in pairs.

    The 1x1 conv's weights alternate in sign along its inputs, so its pairs cancel; with
    ``adds_up`` they do not, and its rare saturated pairs (0.05%, 48 dB: under both per-layer
    bars) still cost the output more than the int8 model's own noise allows."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )
    with torch.no_grad():
        net[2].weight.copy_(torch.rand_like(net[2].weight) * 0.2 + 0.8)
        if not adds_up:
            net[2].weight[:, 1::2] = -net[2].weight[:, 1::2].abs()
            net[2].weight[:, ::2] = net[2].weight[:, ::2].abs()
    return net.eval()


def calib() -> np.ndarray:
    return np.random.default_rng(0).random((32, 3, 8, 8)).astype(np.float32)


@pytest.fixture
def as_cpu(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Make edgequant read a fixture cpuinfo (the kernels the runtimes pick do not change)."""

    def use(name: str) -> None:
        monkeypatch.setenv("EDGEQUANT_CPUINFO", str(FIXTURES / name))
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        cpu_profile.cache_clear()

    yield use
    cpu_profile.cache_clear()


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_class_choice_from_fixture_cpuinfo(fixture: str, runtime: str) -> None:
    profile = parse_cpuinfo((FIXTURES / fixture).read_text())
    cls, saturating = EXPECTED[fixture]
    assert runtime_int8_class(runtime, profile) == cls
    arith = arithmetic_for(runtime, cls)
    if runtime == "litert" or not saturating:
        assert arith == "exact"
    else:
        assert arith == ("pmaddubsw-mlas" if runtime == "onnxruntime" else "pmaddubsw")
    choice = class_config(runtime, cls)
    assert choice["config"] and choice["reason"]
    if saturating and runtime != "litert":
        assert "saturate" in choice["config"] and "only those" in choice["reason"]
    elif runtime == "litert" and saturating:
        assert "widens int8 to 16 bits" in choice["reason"] and "fp32 speed" in choice["reason"]
    if runtime == "onnxruntime":
        assert choice["config"].startswith("S8S8" if cls.startswith("arm") else "U8S8")


def test_onednn_class_follows_the_cap_others_do_not() -> None:
    vnni = parse_cpuinfo((FIXTURES / "zen4-avx512vnni.txt").read_text())
    old = os.environ.get("ONEDNN_MAX_CPU_ISA")
    os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"
    try:
        assert runtime_int8_class("openvino", vnni) == "avx2"
        assert runtime_int8_class("pytorch", vnni) == "avx2"
        assert runtime_int8_class("onnxruntime", vnni) == "avx512-vnni"
        assert runtime_int8_class("litert", vnni) == "avx512-vnni"
    finally:
        if old is None:
            del os.environ["ONEDNN_MAX_CPU_ISA"]
        else:
            os.environ["ONEDNN_MAX_CPU_ISA"] = old


def test_plan_finds_the_layers_that_bite_and_only_those() -> None:
    avx2 = parse_cpuinfo((FIXTURES / "zen3-avx2.txt").read_text())
    vnni = parse_cpuinfo((FIXTURES / "zen4-avx512vnni.txt").read_text())
    m = module_model("sat", saturating_net(), 4)
    plan = plan_int8("onnxruntime", m, get_scheme("w8a8"), calib(), avx2)
    names = [r["name"] for r in plan.layers]
    assert names == ["0", "2", "4", "8"]
    assert plan.remedied == ["0", "4"]  # the 1x1 conv and the linear stay on the fast path
    for r in plan.layers:
        assert r["bites"] == (r["saturated_pct"] > 0.1 or (r["sqnr_db"] or 99) < 25)
    assert "2 of 4" in plan.reason() and "U8U8" in plan.reason()
    assert plan_int8("onnxruntime", m, get_scheme("w8a8"), calib(), vnni).layers == []
    pt = plan_int8("pytorch", m, get_scheme("w8a8"), calib(), avx2)
    assert pt.remedy == "float" and pt.float_layers() == pt.remedied == ["0", "4"]
    assert pt.weight_bits() == {}
    floats = weight_grid_for(pt, get_scheme("w8a8"))  # no grid (nothing rounded) for f32 layers
    assert floats is not None and floats("0", None) is None and floats("2", None).bits == 8
    seven = Int8Plan(
        runtime="pytorch", int8_class="avx2", arithmetic="pmaddubsw", remedy="7bit", remedied=["0"]
    )
    assert seven.weight_bits() == {"0": 7} and seven.float_layers() == []
    grid = weight_grid_for(seven, get_scheme("w8a8"))
    assert grid is not None and grid("0", None).bits == 7 and grid("2", None).bits == 8
    assert weight_grid_for(plan, get_scheme("w8a8")) is None  # U8U8 keeps the 8-bit grid
    blind = plan_int8("onnxruntime", None, get_scheme("w8a8"), None, avx2)
    assert blind.note and blind.remedied == []


def test_plan_also_remedies_layers_whose_saturation_adds_up_at_the_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import edgequant.backends.int8_cpu as ic

    avx2 = parse_cpuinfo((FIXTURES / "zen3-avx2.txt").read_text())
    m = module_model("sat", saturating_net(adds_up=True), 4)
    # the int8 model is at ~45 dB; the 1x1 conv's saturation costs the output ~55 dB: under
    # the default 35 dB bar, so it keeps its fast kernels
    plan = plan_int8("onnxruntime", m, get_scheme("w8a8"), calib(), avx2)
    assert plan.remedied == ["0", "4"] and plan.network["extra"] == []
    assert plan.network["bar_sqnr_db"] == ic.NET_SQNR_DB < plan.network["sqnr_before_db"]
    monkeypatch.setattr(ic, "NET_SQNR_DB", 200.0)  # only the share of the int8 model's noise
    monkeypatch.setattr(ic, "NOISE_SHARE", 0.05)
    for runtime in ("onnxruntime", "pytorch", "openvino"):
        plan = plan_int8(runtime, m, get_scheme("w8a8"), calib(), avx2)
        two = next(r for r in plan.layers if r["name"] == "2")
        assert not two["bites"] and two["saturated_pct"] > 0  # under both per-layer bars
        assert plan.remedied == ["0", "2", "4"] and plan.network["extra"] == ["2"]
        net = plan.network
        assert net["bar_sqnr_db"] == pytest.approx(net["int8_sqnr_db"] + 13, abs=0.11)
        assert net["sqnr_before_db"] < net["bar_sqnr_db"] and net["sqnr_after_db"] is None
        assert "1 more whose sums add up at the output" in plan.reason()
        assert plan.to_dict()["network"] == net
        json.dumps(plan.to_dict(), allow_nan=False)  # artifact.json stays strict JSON
    monkeypatch.setattr(ic, "NOISE_SHARE", 1.0)  # a looser share: the per-layer bars alone
    assert plan_int8("onnxruntime", m, get_scheme("w8a8"), calib(), avx2).remedied == ["0", "4"]


def test_qdq_plan_without_fp32_uses_the_absolute_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgequant.backends.int8_cpu as ic
    from edgequant.quant.simulate import quantize_module

    avx2 = parse_cpuinfo((FIXTURES / "zen3-avx2.txt").read_text())
    net, x = saturating_net(adds_up=True), calib()
    sim = quantize_module(net, get_scheme("w8a8"), x)
    plan = plan_qdq("onnxruntime", sim, x, avx2)
    assert plan.network["bar_sqnr_db"] == ic.NET_SQNR_DB and plan.network["int8_sqnr_db"] is None
    assert plan.remedied == ["0", "4"]  # 54 dB vs exact int32 meets the 35 dB bar
    monkeypatch.setattr(ic, "NET_SQNR_DB", 60.0)
    assert plan_qdq("onnxruntime", sim, x, avx2).remedied == ["0", "2", "4"]


def test_onnxruntime_u8u8_only_on_biting_layers(as_cpu, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    be = get_backend("onnxruntime")
    if not be.available():
        pytest.skip(be.unavailable_reason() or "")
    net, x = saturating_net(), calib()
    m = module_model("sat", net, 4)
    ref = net(torch.from_numpy(x)).detach().numpy()
    as_cpu("zen3-avx2.txt")
    art = be.prepare(m, get_scheme("w8a8"), x, tmp_path / "avx2")
    assert art.metadata["int8_plan"]["remedied"] == ["0", "4"]
    assert art.metadata["u8u8_nodes"] == ["/0/Conv", "/4/Conv"]
    assert art.metadata["quantizer_options"]["reduce_range"] is False  # no blanket remedy
    sat = next(c for c in art.metadata["choices"] if c["what"] == "int16 pair saturation")
    assert {r["name"]: r["remedy"] for r in sat["layers"]} == {
        "0": "u8u8",
        "2": "",
        "4": "u8u8",
        "8": "",
    }
    report = be.inspect(art)
    assert all(c.precision.startswith("int") for c in report.convs)  # still int8 kernels
    assert any("2 of 4" in n and "U8U8" in n for n in report.notes)
    with be.load(art, 1) as s:
        y = s.run(x)
    assert np.abs(y - ref).max() < 0.02 and (y.argmax(1) == ref.argmax(1)).mean() >= 0.95
    as_cpu("zen4-avx512vnni.txt")
    art2 = be.prepare(m, get_scheme("w8a8"), x, tmp_path / "vnni")
    assert art2.metadata["int8_plan"]["remedied"] == [] and "u8u8_nodes" not in art2.metadata


def test_openvino_finds_the_remedied_convs_it_renamed_when_folding_bn(
    as_cpu, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """OpenVINO folds a BatchNorm into its conv and renames it (``Multiply_…``): the ignored
    scope must still name it (it matched no op of any BN model before)."""
    be = get_backend("openvino")
    if not be.available():
        pytest.skip(be.unavailable_reason() or "")
    net = saturating_net()
    bn = nn.BatchNorm2d(16).eval()
    with torch.no_grad():
        bn.running_var.fill_(0.8)
        bn.bias.fill_(0.05)
    net.insert(1, bn)  # conv "0" -> bn "1" -> relu; the other convs move to "3" and "5"
    m = module_model("satbn", net, 4)
    as_cpu("zen3-avx2.txt")
    # w8a8 without its optional techniques: they fold the BN before OpenVINO sees it
    plain = get_scheme({"base": "w8a8", "techniques": []})
    art = be.prepare(m, plain, calib(), tmp_path / "avx2")
    convs = be.inspect(art).convs
    assert [c.precision for c in convs] == ["fp32", "int8", "fp32"]
    assert all("kept in f32 on purpose" in c.reason for c in convs if c.precision == "fp32")
    q = art.metadata["quantizer"]
    assert q["ignored_layers"] == ["0", "5"]
    assert len(q["ignored_ops"]) == 2 and not any(
        op.startswith("__module.0/") for op in q["ignored_ops"]
    )
    # w8a8 itself folds the BN first (its GPTQ rounding): the same two convs kept in f32
    art = be.prepare(m, get_scheme("w8a8"), calib(), tmp_path / "avx2-gptq")
    assert [c.precision for c in be.inspect(art).convs] == ["fp32", "int8", "fp32"]
    assert art.metadata["quantizer"]["ignored_layers"] == ["0", "5"]


def test_pytorch_keeps_the_saturating_convs_in_f32(as_cpu, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    be = get_backend("pytorch")
    if not be.available():
        pytest.skip(be.unavailable_reason() or "")
    as_cpu("zen3-avx2.txt")
    art = be.prepare(
        module_model("sat", saturating_net(), 4), get_scheme("w8a8"), calib(), tmp_path
    )
    assert art.metadata["quantizer"]["float_modules"] == ["0", "4"]
    convs = be.inspect(art).convs
    assert [c.precision.startswith("int") for c in convs] == [False, True, False]
    assert all("saturate on avx2" in c.reason for c in convs if not c.precision.startswith("int"))


_CAPPED = r"""
import json, sys, tempfile
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
from tests.backends.test_int8_cpu import saturating_net, calib
from tests.helpers import module_model
import edgequant.backends.int8_cpu as ic
from edgequant.backends import get_backend
from edgequant.quant.scheme import get_scheme
net, x = saturating_net(), calib()
ref = net(torch.from_numpy(x)).detach().numpy()
be, out = get_backend(sys.argv[2]), {}
for remedy in (True, False):
    if not remedy:
        ic.BITE_PCT, ic.BITE_SQNR_DB, ic.NOISE_SHARE = 1e9, -1e9, 1e9
    art = be.prepare(module_model("sat", net, 4), get_scheme("w8a8"), x, Path(tempfile.mkdtemp()))
    with be.load(art, 1) as s:
        y = s.run(x)
    out[str(remedy)] = {"err": float(np.abs(y - ref).max()),
                        "class": art.metadata["int8_plan"]["int8_class"],
                        "remedied": art.metadata["int8_plan"]["remedied"],
                        "convs": [c.precision for c in be.inspect(art).convs]}
print("RESULT" + json.dumps(out))
"""


def test_openvino_capped_to_avx2_per_layer_remedy_restores_fp32(tmp_path: Path) -> None:
    be = get_backend("openvino")
    if not be.available():
        pytest.skip(be.unavailable_reason() or "")
    if not cpu_profile().has("avx2"):
        pytest.skip("ONEDNN_MAX_CPU_ISA=AVX2 needs an x86 CPU with AVX2")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "PYTHONPATH": str(root / "src")}
    env.pop("EDGEQUANT_CPUINFO", None)
    proc = subprocess.run(
        [sys.executable, "-c", _CAPPED, str(root), "openvino"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line is not None, proc.stderr[-2000:]
    res = json.loads(line[len("RESULT") :])
    fixed, blanket = res["True"], res["False"]
    assert fixed["class"] == "avx2" and fixed["remedied"] == ["0", "4"]
    assert fixed["convs"] == ["fp32", "int8", "fp32"] and blanket["convs"] == ["int8"] * 3
    # the saturating convs cost the unremedied build several times the error
    assert fixed["err"] < 0.5 * blanket["err"], res


def test_qdq_export_remedies_compute_the_simulator_exactly(tmp_path: Path) -> None:
    from edgequant.quant.simulate import quantize_module
    from edgequant.studies.qat_export import export_qdq, int8_ops, run_onnx

    be = get_backend("onnxruntime")
    if not be.available():
        pytest.skip(be.unavailable_reason() or "")
    net, x = saturating_net(), calib()
    sim = quantize_module(net, get_scheme("w8a8"), x)
    avx2 = parse_cpuinfo((FIXTURES / "zen3-avx2.txt").read_text())
    plan = plan_qdq("onnxruntime", sim, x, avx2)
    assert plan.remedy == "u8u8" and plan.remedied == ["0", "4"]
    assert plan_qdq("openvino", sim, x, avx2).remedy == "float"
    vnni = parse_cpuinfo((FIXTURES / "sapphirerapids-amx.txt").read_text())
    assert plan_qdq("onnxruntime", sim, x, vnni).remedied == []
    # the simulator with MLAS's AVX2 arithmetic: remedied layers exact, the rest within bounds
    fixed = measure(sim, x, "pmaddubsw-mlas", exact_layers=tuple(plan.remedied))
    assert all(not r["bites"] for r in fixed)
    with torch.no_grad():
        want = sim(torch.from_numpy(x)).numpy()
    spec = module_model("sat", net, 4).input_spec
    path = export_qdq(sim, spec, tmp_path / "u8u8.onnx", remedy="u8u8", remedy_layers=plan.remedied)
    got = run_onnx(path, x, backend="onnxruntime")
    assert np.abs(got - want).max() < 0.05 and (got.argmax(1) == want.argmax(1)).all()
    assert int8_ops(path, backend="onnxruntime").get("QLinearConv", 0) == 3  # U8U8 is int8
    ov = get_backend("openvino")
    if not ov.available():
        return
    # ONNX Runtime would re-quantize f32 weights between Q/DQ (its QDQ weight quantization):
    # the f32 remedy is OpenVINO's, whose CPU plugin then runs those convs in f32
    path = export_qdq(sim, spec, tmp_path / "f32.onnx", remedy="float", remedy_layers=plan.remedied)
    got = run_onnx(path, x, backend="openvino")
    assert np.abs(got - want).max() < 0.05 and (got.argmax(1) == want.argmax(1)).all()
    convs = ov.inspect(ov.onnx_artifact(path, get_scheme("w8a8"))).convs
    assert [c.precision for c in convs] == ["fp32", "int8", "fp32"]


def test_bias_correction_on_the_7bit_grid() -> None:
    from edgequant.quant.bias_correction import correct_bias

    net, x = saturating_net(), calib()
    w8, _ = correct_bias(net, get_scheme("w8a8"), x)
    w7, _ = correct_bias(net, get_scheme("w8a8"), x, weight_bits={"0": 7})
    w4, _ = correct_bias(net, get_scheme("w4a8"), x)
    w7_4, _ = correct_bias(net, get_scheme("w4a8"), x, weight_bits={"0": 7})
    assert not torch.equal(w8[0].bias, w7[0].bias)  # corrected for the 7-bit rounding
    assert torch.equal(w8[2].bias, w7[2].bias) and torch.equal(w8[4].bias, w7[4].bias)
    assert not torch.equal(w4[0].bias, w7_4[0].bias)
    fl, n = correct_bias(net, get_scheme("w8a8"), x, float_layers=["0"])
    assert n == 3 and torch.equal(fl[0].bias, net[0].bias)  # a float layer has no rounding error
    assert torch.equal(fl[2].bias, w8[2].bias)


def test_sim_target_names_an_arithmetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sim_target({}, "") is None
    meta: dict[str, object] = {}
    assert sim_target(meta, "openvino:avx2") == "pmaddubsw"
    assert meta == {"int8_arith": "pmaddubsw", "int8_target": "openvino:avx2"}
    assert sim_target({}, "avx2") == "pmaddubsw" and sim_target({}, "arm-dotprod") == "exact"
    with pytest.raises(ValidationError, match="EDGEQUANT_SIM_TARGET"):
        sim_target({}, "no-such-class")
    be = get_backend("sim")
    m = module_model("sat", saturating_net(), 4)
    monkeypatch.setenv("EDGEQUANT_SIM_TARGET", "onnxruntime:avx2")
    assert be.cache_facets()["sim_target"] == "onnxruntime:avx2"
    art = be.prepare(m, get_scheme("w8a8"), calib(), tmp_path / "a")
    assert art.metadata["int8_arith"] == "pmaddubsw-mlas"
    monkeypatch.delenv("EDGEQUANT_SIM_TARGET")
    exact = be.prepare(m, get_scheme("w8a8"), calib(), tmp_path / "b")
    assert "int8_arith" not in exact.metadata
    x = calib()
    with be.load(art, 1) as s1, be.load(exact, 1) as s2:
        predicted, ideal = s1.run(x), s2.run(x)
    assert np.abs(predicted - ideal).max() > 1e-3  # the AVX2 prediction differs from exact


def _pt2e(**remedy: list[str]) -> tuple[Any, dict[str, Any]]:
    pytest.importorskip("torchao")
    from edgequant.backends.pytorch.quantize import quantize_pt2e

    net, x = saturating_net(), calib()
    return quantize_pt2e(
        net, get_scheme("w8a8"), x, torch.from_numpy(x[:2]), None, batch_size=2, **remedy
    )


def test_pytorch_seven_bit_weights_only_on_the_named_modules() -> None:
    gm, opts = _pt2e(seven_bit=["0", "4"])
    assert opts["seven_bit_weights"] == ["0", "4"]
    ranges = [
        tuple(n.args[4:6]) for n in gm.graph.nodes if "dequantize_per_channel" in str(n.target)
    ]
    # conv 0, conv 2, conv 4, linear 8 in graph order: only 0 and 4 are restricted
    assert ranges == [(-63, 63), (-127, 127), (-63, 63), (-127, 127)]


def test_pytorch_float_modules_stay_unquantized() -> None:
    gm, opts = _pt2e(float_modules=["0", "4"])
    assert opts["float_modules"] == ["0", "4"]
    weights = [n for n in gm.graph.nodes if "dequantize_per_channel" in str(n.target)]
    assert len(weights) == 2  # conv 2 and the linear; convs 0 and 4 keep float weights


def test_w8a8_rounding_leaves_the_layers_the_runtime_keeps_in_float(
    as_cpu, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """PyTorch on AVX2 computes the saturating convs in f32: w8a8's GPTQ rounding and bias
    correction must not put their weights (or shift their biases) for an 8-bit grid the runtime
    never uses; the int8 conv between them is rounded."""
    monkeypatch.setenv("EDGEQUANT_CACHE", str(tmp_path))
    be = get_backend("pytorch")
    as_cpu("zen3-avx2.txt")
    model, scheme = module_model("sat", saturating_net(), 4), get_scheme("w8a8")
    plan = be.int8_plan(model, scheme, calib())
    assert plan is not None and plan.float_layers() == ["0", "4"]
    done = be._techniques(model, scheme, calib(), plan)
    assert done.info["techniques_applied"] == ["bn_fold", "gptq", "bias_correction"]
    assert done.module is not None and model.module is not None
    before, after = dict(model.module.named_parameters()), dict(done.module.named_parameters())
    for name in ("0.weight", "0.bias", "4.weight", "4.bias"):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["2.weight"], after["2.weight"])
