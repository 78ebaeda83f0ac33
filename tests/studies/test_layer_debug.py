"""The runtime-independent part of the per-layer view: sites, SQNR, the sim's prediction, the
result table and its summary file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgequant.errors import ValidationError
from edgequant.quant.scheme import get_scheme
from edgequant.studies.layer_debug import (
    SUMMARY_FILE,
    LayerDebug,
    LayerError,
    LayerOutputs,
    _row,
    capture,
    layer_sites,
    save_summary,
    simulate_layers,
    sqnr_db,
)


def test_sqnr_db_values() -> None:
    ref = np.array([3.0, -4.0])
    assert sqnr_db(ref, ref) == math.inf
    assert sqnr_db(ref, ref * 1.1) == pytest.approx(20.0)
    assert sqnr_db(ref, np.zeros(2)) == pytest.approx(0.0)
    with pytest.raises(ValidationError, match="cannot compare"):
        sqnr_db(ref, np.zeros(3))


def test_sites_go_through_folded_bn_and_fused_activation(tiny_model) -> None:  # type: ignore[no-untyped-def]
    gm, sites, aliases = layer_sites(tiny_model.module)
    by = {s.name: s for s in sites}
    assert list(by) == ["conv1", "dw", "pw", "conv3", "fc"]
    assert by["conv1"].node == "relu1" and by["conv1"].chain == ("conv1", "bn1", "relu1")
    assert by["pw"].node == "bn3"  # pw feeds the residual add: no activation fused
    assert by["fc"].kind == "linear" and by["dw"].kind == "depthwise 3x3"
    assert aliases == {"bn1": "conv1", "bn2": "dw", "bn3": "pw"}
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    got = capture(gm, {"relu1", "fc"}, x)
    with torch.no_grad():
        m = tiny_model.module
        relu1 = torch.relu(m.bn1(m.conv1(torch.from_numpy(x)))).numpy()
        logits = m(torch.from_numpy(x)).numpy()
    assert np.allclose(got["relu1"], relu1, atol=1e-4)
    assert np.allclose(got["fc"], logits, atol=1e-4)


class _Outlier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.good = nn.Conv2d(3, 8, 3, padding=1)
        self.bad = nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bad(torch.relu(self.good(x)))


def test_sim_prediction_high_for_good_low_for_outlier_per_tensor() -> None:
    torch.manual_seed(0)
    net = _Outlier().eval()
    with torch.no_grad():
        net.good.bias[7] = -100.0
        net.bad.weight[0, 7] = 1000.0 * float(net.bad.weight.abs().max())
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    gm, sites, _ = layer_sites(net)
    ref = capture(gm, {s.node for s in sites}, x)
    bad = {}
    for scheme in ("w8a8-pt", "w8a8"):
        sim, sat = simulate_layers(net, get_scheme(scheme), x, x, sites, "exact")
        db = {s.name: sqnr_db(ref[s.node], sim[s.name]) for s in sites}
        assert db["good"] > 30.0, (scheme, db)
        bad[scheme] = db["bad"]
        assert set(sat) == {"good", "bad"} and all(n == 0 for n, _ in sat.values())
    # per tensor: the outlier's scale zeroes every other weight; per channel: only its channel
    assert bad["w8a8-pt"] < 5.0 and bad["w8a8"] > bad["w8a8-pt"] + 5.0, bad
    # the same layers under AVX2's pmaddubsw: 8-bit weights x u8 codes saturate int16 pair sums
    sim, sat = simulate_layers(net, get_scheme("w8a8"), x, x, sites, "pmaddubsw")
    assert sat["good"][0] > 0
    assert sqnr_db(ref[sites[0].node], sim["good"]) < db["good"] - 3.0


def test_row_lists_unmatched_layers_and_result_renders(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgequant.studies.layer_debug import LayerSite

    site = LayerSite(name="conv", kind="conv 3x3", node="conv")
    ref = np.ones((1, 2, 2, 2), np.float32)
    out = LayerOutputs(arith_target="exact")
    missing = _row(site, ref, out, ref * 1.01, (3, 100))
    assert not missing.matched and "unmatched" in missing.note
    assert missing.sim_sqnr_db == pytest.approx(40.0) and missing.saturated_pct == 3.0
    out["conv"] = ref * 1.1
    out.sources["conv"] = "/conv/Conv"
    hit = _row(site, ref, out, None, None)
    assert hit.matched and hit.runtime_sqnr_db == pytest.approx(20.0)
    res = LayerDebug(
        artifact="a",
        backend="rt",
        scheme="w8a8",
        samples=1,
        arithmetic="exact",
        layers=[
            hit,
            missing,
            LayerError(name="fc", kind="linear", runtime_op="fc", runtime_sqnr_db=math.inf),
        ],
        unmatched_runtime_ops=["Gemm_7"],
    )
    text = res.render()
    assert "unmatched" in text and "runtime op matched to no layer: Gemm_7" in text
    assert text.index("/conv/Conv") < text.index("999")  # worst first, identical as 999 dB
    doc = json.loads(json.dumps(res.to_dict()))
    assert [r["name"] for r in doc["layers"]] == ["conv", "conv", "fc"]
    path = save_summary(res, tmp_path)
    assert path.name == SUMMARY_FILE
    summary = json.loads(path.read_text())
    assert summary["unmatched_layers"] == ["conv"]
    assert [r["name"] for r in summary["worst"]] == ["conv", "fc"]
