"""The per-layer view of each runtime's own int8 execution (ONNX Runtime, OpenVINO, LiteRT,
PyTorch where installed), against fp32 and beside the simulator's prediction."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgequant.backends import get_backend
from edgequant.errors import UnsupportedError
from edgequant.quant.scheme import get_scheme
from edgequant.studies.layer_debug import SUMMARY_FILE, debug_artifact
from tests.helpers import module_model

RUNTIMES = ["onnxruntime", "openvino", "litert", "pytorch"]
#: the sim's prediction and the runtime agree within this many dB on these layers (the runtimes
#: requantize at slightly different points and calibrate on their own: measured within 1.5 dB)
TOLERANCE_DB = 3.0


class OutlierNet(nn.Module):
    """``good``: a plain conv; ``bad``: one weight 1000x the others, on an input channel that is
    always zero (so it sets a per-tensor scale but carries no signal)."""

    def __init__(self) -> None:
        super().__init__()
        self.good = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.bad = nn.Conv2d(8, 8, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bad(self.relu(self.good(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _outlier_model():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    net = OutlierNet()
    with torch.no_grad():
        net.good.bias[7] = -100.0  # channel 7 of good's output: always 0 after the ReLU
        net.bad.weight[0, 7] = 1000.0 * float(net.bad.weight.abs().max())
    return module_model("outliernet", net, 4, size=16)


@pytest.fixture(scope="module")
def outlier():  # type: ignore[no-untyped-def]
    model = _outlier_model()
    x = np.random.default_rng(0).standard_normal((32, 3, 16, 16)).astype(np.float32)
    return model, x


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_layer_sqnr_and_sim_prediction(runtime, outlier, tmp_path) -> None:  # type: ignore[no-untyped-def]
    be = get_backend(runtime)
    if not be.available():
        pytest.skip(f"{runtime} unavailable: {be.unavailable_reason()}")
    model, x = outlier
    scheme = get_scheme("w8a8-pt")
    if be.supports(scheme, model) is not None:
        pytest.skip(f"{runtime} cannot run w8a8-pt: {be.supports(scheme, model)}")
    art = be.prepare(model, scheme, x, tmp_path / runtime)
    result = debug_artifact(art, x, model=model, samples=8)
    rows = {r.name: r for r in result.layers}
    assert set(rows) == {"good", "bad", "fc"}  # every layer listed, matched or not
    good, bad = rows["good"], rows["bad"]
    assert good.matched and bad.matched, result.render()
    assert good.runtime_sqnr_db is not None and bad.runtime_sqnr_db is not None
    assert np.isfinite(good.runtime_sqnr_db) and good.runtime_sqnr_db > 30.0, result.render()
    assert bad.runtime_sqnr_db < 15.0, result.render()
    for r in (good, bad):
        assert r.sim_sqnr_db is not None
        assert abs(r.sim_sqnr_db - r.runtime_sqnr_db) < TOLERANCE_DB, result.render()
        assert r.saturated is not None and r.pairs is not None
    assert "bad" in result.render() and result.worst(1)[0].name == "bad"
    summary = json.loads((art.directory / SUMMARY_FILE).read_text())
    assert summary["format"] == "edgequant.layer_debug/1"
    assert summary["worst"][0]["name"] == "bad" and summary["backend"] == art.backend


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", "litert"])
def test_prediction_calibrates_as_the_runtime(
    runtime, tiny_model, tiny_calibration, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """These runtimes calibrate min/max for ``default``; the prediction does too (the sim's own
    default is MSE): each conv's predicted SQNR within 0.5 dB of the runtime's (measured within
    0.2 dB; with the sim's MSE ranges the depthwise conv was 2 dB off)."""
    be = get_backend(runtime)
    if not be.available():
        pytest.skip(f"{runtime} unavailable: {be.unavailable_reason()}")
    default = get_scheme({"base": "w8a8", "name": "w8a8-default", "calibration": {}})
    art = be.prepare(tiny_model, default, tiny_calibration, tmp_path / runtime)
    result = debug_artifact(art, tiny_calibration, model=tiny_model, samples=8, save=False)
    assert f"prediction: activation ranges minmax, as {runtime} calibrates for 'default'" in (
        result.notes
    )
    # w8a8's weights were rounded by GPTQ on the runtime's grid: the prediction rounds them too
    assert any("after bn_fold, gptq, bias_correction" in n for n in result.notes), result.notes
    convs = {r.name: r for r in result.layers if r.name in ("conv1", "dw", "pw", "conv3")}
    assert len(convs) == 4 and all(r.matched for r in convs.values()), result.render()
    for r in convs.values():
        assert r.runtime_sqnr_db is not None and r.sim_sqnr_db is not None
        assert abs(r.sim_sqnr_db - r.runtime_sqnr_db) < 0.5, result.render()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_matching_names_reported(runtime, tiny_model, tiny_calibration, tmp_path) -> None:  # type: ignore[no-untyped-def]
    be = get_backend(runtime)
    if not be.available():
        pytest.skip(f"{runtime} unavailable: {be.unavailable_reason()}")
    art = be.prepare(tiny_model, get_scheme("w8a8"), tiny_calibration, tmp_path / runtime)
    x = tiny_calibration[:4]
    out = be.layer_outputs(art, x, ["conv1", "dw", "pw", "conv3", "fc", "bn1", "bn2", "bn3"])
    # every conv of TinyNet is found, under its own or its folded BN's name
    found = {
        "conv1" if k == "bn1" else "dw" if k == "bn2" else "pw" if k == "bn3" else k for k in out
    }
    assert {"conv1", "dw", "pw", "conv3"} <= found, (out.sources, out.unmatched)
    assert set(out.sources) == set(out)
    for v in out.values():
        assert v.shape[0] == 4 and np.isfinite(v).all()
    result = debug_artifact(art, tiny_calibration, model=tiny_model, samples=4, save=False)
    for r in result.layers:
        assert r.matched == (r.runtime_op is not None)
        if r.matched:
            assert r.runtime_sqnr_db is not None and r.runtime_sqnr_db > 20.0, result.render()
        else:
            assert "unmatched" in r.note


def test_runtime_without_intermediates_says_why(tiny_model, tiny_calibration, tmp_path) -> None:  # type: ignore[no-untyped-def]
    be = get_backend("sim")
    art = be.prepare(tiny_model, get_scheme("w8a8"), tiny_calibration, tmp_path / "sim")
    with pytest.raises(UnsupportedError, match="no per-layer view"):
        debug_artifact(art, tiny_calibration, model=tiny_model, samples=2)
    with pytest.raises(UnsupportedError, match="no per-layer view"):
        get_backend("tensorrt").layer_outputs(art, tiny_calibration[:1])
