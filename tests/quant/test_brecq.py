"""Block reconstruction: cuts where one tensor is live, lower block-output error than nearest,
weights on the grid, the technique end to end."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from edgequant.errors import ValidationError
from edgequant.quant.adaround import AdaRoundConfig, WeightGrid, adaround_module, clipped
from edgequant.quant.brecq import block_module, blocks, float_twin
from edgequant.quant.fake_quant import fake_quant_weight, weight_qparams
from edgequant.quant.scheme import get_scheme
from edgequant.quant.simulate import quantize_module
from edgequant.quant.transforms import apply_techniques, planned_techniques
from tests.helpers import make_tiny_model, tiny_inputs
from tests.quant.test_adaround import _calib, _nearest


class _Residual(nn.Module):
    """stem → (expand, ReLU, depthwise, ReLU, project) + skip → head: an inverted residual."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(
            nn.Conv2d(8, 24, 1),
            nn.ReLU(),
            nn.Conv2d(24, 24, 3, padding=1, groups=24),
            nn.ReLU(),
            nn.Conv2d(24, 8, 1),
        )
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        y = y + self.body(y)
        return self.head(y.mean((2, 3)))


def _sim(net: nn.Module, n: int = 8) -> torch.fx.GraphModule:
    return quantize_module(net.eval(), get_scheme("w4a8"), _calib(n))


def test_blocks_cut_where_one_tensor_carries_everything() -> None:
    sim = _sim(_Residual())
    got = blocks(sim)
    # the skip keeps the stem's output live through the body: one block, whatever its size
    assert [b.layers for b in got] == [("stem",), ("body.0", "body.2", "body.4"), ("head",)]
    assert [b.layers for b in blocks(sim, max_layers=1)] == [
        ("stem",),
        ("body.0", "body.2", "body.4"),  # cannot be cut inside the skip
        ("head",),
    ]
    chain = nn.Sequential(*[m for _ in range(3) for m in (nn.Conv2d(3, 3, 1), nn.ReLU())])
    assert [len(b.layers) for b in blocks(_sim(chain), max_layers=2)] == [2, 1]
    # each block, run alone on its source's value, gives the graph's value at its output
    x = _calib(4)
    twin = float_twin(sim)
    with torch.no_grad():
        y = x
        for b in blocks(twin):
            y = block_module(twin, b)(y)
        assert torch.allclose(y, _Residual().eval()(x), atol=1e-5)


def test_block_rounding_lowers_the_block_error_and_stays_on_the_grid() -> None:
    net, x = _Residual().eval(), _calib(32)
    plain = AdaRoundConfig(
        iterations=150, method="brecq", block_images=8, clip_search=False, correct_bias=False
    )
    out, stats = adaround_module(net, get_scheme("w4a8"), x, config=plain)
    assert [s.layer for s in stats] == ["stem", "body.0", "body.2", "body.4", "head"]
    for s in stats:
        assert s.mse_adaround <= s.mse_nearest
    body = [s for s in stats if s.layer.startswith("body")]
    assert body[0].mse_adaround < 0.9 * body[0].mse_nearest
    assert {s.mse_nearest for s in body} == {body[0].mse_nearest}  # one block, one figure
    # the simulated network's output is closer to fp32 than with nearest rounding
    scheme = get_scheme("w4a8")
    with torch.no_grad():
        ref = net(x)
        err = {
            k: float(((quantize_module(m, scheme, x)(x) - ref) ** 2).mean())
            for k, m in (("brecq", out), ("nearest", _nearest(net, "w4a8")))
        }
    assert err["brecq"] < err["nearest"]
    # the defaults at 4 bits: ranges clipped where the layer's output says so, biases learnt
    full, full_stats = adaround_module(
        net, scheme, x, config=AdaRoundConfig(iterations=150, method="brecq", block_images=8)
    )
    tq = scheme.weights
    assert tq is not None
    for orig, m in zip(net.modules(), full.modules(), strict=True):
        if isinstance(m, nn.Conv2d | nn.Linear):
            w = m.weight.detach()
            assert torch.equal(fake_quant_weight(w, *weight_qparams(w, tq), tq), w)
            # each channel's range is the full one or clipped (a narrower scale), and every
            # weight is its clipped value rounded up or down on that grid
            s_old, _ = weight_qparams(orig.weight, tq)
            s_new, _ = weight_qparams(w, tq)
            assert bool((s_new <= s_old * (1 + 1e-6)).all())
            top = w.abs().flatten(1).amax(1).reshape(-1, *([1] * (w.dim() - 1)))
            near = clipped(orig.weight.detach(), top)
            assert float(((w - near).abs() / s_new.reshape(top.shape)).max()) < 1.0 + 1e-5
    clipped_body = next(s for s in full_stats if s.layer == "body.0")
    assert clipped_body.mse_nearest < 0.5 * body[0].mse_nearest  # clipping pays here


def test_per_layer_grids_and_the_technique_end_to_end() -> None:
    net, x = _Residual().eval(), _calib(8)

    def grid(name: str, _m: nn.Module) -> WeightGrid | None:
        return None if name == "head" else WeightGrid(bits=3 if name == "stem" else 8)

    cfg = AdaRoundConfig(iterations=10, method="brecq")
    out, stats = adaround_module(net, get_scheme("w8a8"), x, grid=grid, config=cfg)
    assert [s.layer for s in stats] == ["stem", "body.0", "body.2", "body.4"]
    assert torch.equal(out.head.weight, net.head.weight)
    assert len(torch.unique(out.stem.weight.detach()[0])) <= 7  # 3-bit: codes -3..3

    s = get_scheme({"base": "w4a8", "name": "w4a8-brecq", "techniques": ["brecq"]})
    assert planned_techniques(s) == ["bn_fold", "brecq"]
    model = make_tiny_model()
    calib = tiny_inputs(model, 8, seed=4)
    done = apply_techniques(model, s, calib, adaround_config=AdaRoundConfig(iterations=10))
    assert "+bn_fold+brecq-" in done.weights_hash and done.info["adaround_layers"] > 0
    with pytest.raises(ValidationError, match="keep one of them"):
        apply_techniques(model, s.with_(techniques=("adaround", "brecq")), calib)


def test_a_layer_with_no_grid_stays_float_in_the_block_simulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A conv the runtime computes in float (no grid: a CPU-class remedy) is float in the
    simulator the blocks learn on, and its weights are left alone (as AdaRound and GPTQ do)."""
    import edgequant.quant.simulate as simulate
    from edgequant.quant.simulate import QuantLayer, node_module

    sims: list[torch.fx.GraphModule] = []
    real = simulate.quantize_module

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        sims.append(real(*args, **kwargs))
        return sims[-1]

    monkeypatch.setattr(simulate, "quantize_module", recording)
    net, x = _Residual().eval(), _calib(8)

    def grid(name: str, _m: nn.Module) -> WeightGrid | None:
        return None if name == "body.2" else WeightGrid(bits=4)

    cfg = AdaRoundConfig(iterations=10, method="brecq")
    out, stats = adaround_module(net, get_scheme("w8a8"), x, grid=grid, config=cfg)
    assert [s.layer for s in stats] == ["stem", "body.0", "body.4", "head"]
    quantized = {
        str(n.target)
        for n in sims[0].graph.nodes
        if isinstance(node_module(sims[0], n), QuantLayer)
    }
    assert quantized == {"stem", "body.0", "body.4", "head"}
    assert torch.equal(out.body[2].weight, net.body[2].weight)


class _TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.a, self.b = nn.Conv2d(4, 2, 1), nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        return self.a(y), self.b(y)


def test_a_model_with_two_outputs_is_refused_with_the_way_out() -> None:
    with pytest.raises(ValidationError, match="use adaround"):
        adaround_module(
            _TwoHeads().eval(),
            get_scheme("w8a8"),
            _calib(4),
            config=AdaRoundConfig(iterations=2, method="brecq"),
        )
