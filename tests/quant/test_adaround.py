"""AdaRound: lower layer-output error than nearest, weights exactly on the grid, deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgequant.errors import ValidationError
from edgequant.quant.adaround import (
    POOL_ADAROUND,
    POOL_OTHER_METHODS,
    AdaRoundConfig,
    WeightGrid,
    adaround_module,
    apply_adaround,
    on_grid,
    settled,
    with_augmented,
)
from edgequant.quant.fake_quant import fake_quant_weight, weight_qparams
from edgequant.quant.scheme import get_scheme
from edgequant.quant.simulate import quantize_module
from edgequant.quant.transforms import apply_techniques, planned_techniques
from tests.helpers import make_tiny_model, tiny_inputs

FAST = AdaRoundConfig(iterations=120, batch_rows=256)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),
        nn.ReLU(),
        nn.Conv2d(16, 8, 1),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 10),
    ).eval()


def _calib(n: int = 32, seed: int = 1) -> torch.Tensor:
    """Spatially smooth inputs, like images: neighbouring pixels correlate, so the layer's
    output error depends on how the roundings of neighbouring taps combine (with white noise
    inputs round-to-nearest is already optimal in expectation)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, 3, 4, 4, generator=g)
    smooth = torch.nn.functional.interpolate(low, size=(8, 8), mode="bilinear", align_corners=False)
    return smooth + 0.1 * torch.randn(n, 3, 8, 8, generator=g)


def _layer_mse(net: nn.Module, rounded: nn.Module, x: torch.Tensor, idx: int) -> float:
    """Output MSE of layer ``idx`` of ``rounded`` against the fp32 net, both on fp32 inputs."""
    with torch.no_grad():
        inp = net[:idx](x)
        return float(((rounded[idx](inp) - net[idx](inp)) ** 2).mean())


def _nearest(net: nn.Module, tq_scheme: str) -> nn.Module:
    import copy

    tq = get_scheme(tq_scheme).weights
    out = copy.deepcopy(net)
    with torch.no_grad():
        for m in out.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.copy_(fake_quant_weight(m.weight, *weight_qparams(m.weight, tq), tq))
    return out


def test_learnt_rounding_lowers_layer_output_mse() -> None:
    net, x = _net(), _calib()
    ada, stats = adaround_module(net, get_scheme("w4a8"), x, config=FAST)
    near = _nearest(net, "w4a8")
    assert [s.layer for s in stats] == ["0", "2", "4", "6"]
    # the first layer sees the same (fp32) input in both: a clean comparison of the rounding
    assert _layer_mse(net, ada, x, 0) < 0.97 * _layer_mse(net, near, x, 0)
    for s in stats:
        assert s.mse_adaround <= s.mse_nearest
    assert sum(s.mse_adaround < 0.95 * s.mse_nearest for s in stats) >= 2
    with torch.no_grad():  # and the whole network's output is closer to fp32
        ref = net(x)
        assert float(((ada(x) - ref) ** 2).mean()) < float(((near(x) - ref) ** 2).mean())


@pytest.mark.parametrize("scheme", ["w4a8", "w8a8", "w8a8-pt"])
def test_returned_weights_are_exactly_on_the_grid(scheme: str) -> None:
    net, x = _net(), _calib(16)
    cfg = AdaRoundConfig(iterations=20, clip_search=False)
    ada, _ = adaround_module(net, get_scheme(scheme), x, config=cfg)
    tq = get_scheme(scheme).weights
    for orig, m in zip(net.modules(), ada.modules(), strict=True):
        if not isinstance(m, nn.Conv2d | nn.Linear):
            continue
        w = m.weight.detach()
        # the simulator's (and the restricted-range runtimes') quantizer: identity on them
        assert torch.equal(fake_quant_weight(w, *weight_qparams(w, tq), tq), w)
        # the scale (max|w| per channel or tensor) is kept
        s_old, _ = weight_qparams(orig.weight, tq)
        s_new, _ = weight_qparams(w, tq)
        assert torch.allclose(s_new, s_old, rtol=1e-6, atol=0)
        # and every weight moved by less than one step (floor or ceil of w/s)
        assert float(((w - orig.weight).abs() / s_old).max()) < 1.0 + 1e-5


@pytest.mark.parametrize("method", ["adaround", "gptq"])
def test_clip_search_narrows_ranges_where_the_output_says_so(method: str) -> None:
    """Heavy-tailed weights over many inputs: at 4 bits most channels' ranges are clipped (the
    few largest weights pinned at the new maximum, the bulk rounded finer), the layer's output
    error drops, and the simulator's quantizer, recomputing max|w|/qmax, reproduces the
    handed-over weights exactly; no channel's scale grows."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(256, 16)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.distributions.Laplace(0.0, 0.05).sample((16, 256)))
    x = torch.randn(512, 256)
    tq = get_scheme("w4a8").weights
    out = {}
    for clip in (False, True):
        cfg = AdaRoundConfig(
            iterations=100, batch_rows=256, method=method, correct_bias=False, clip_search=clip
        )
        out[clip] = adaround_module(net, get_scheme("w4a8"), x, config=cfg)[0]
    w = out[True][0].weight.detach()
    assert torch.equal(fake_quant_weight(w, *weight_qparams(w, tq), tq), w)
    s_old, _ = weight_qparams(net[0].weight, tq)
    s_new, _ = weight_qparams(w, tq)
    assert bool((s_new <= s_old * (1 + 1e-6)).all())
    assert int((s_new < 0.95 * s_old).sum()) >= 8  # most channels clipped
    with torch.no_grad():
        ref = net(x)
        err = {k: float(((m(x) - ref) ** 2).mean()) for k, m in out.items()}
    assert err[True] < 0.9 * err[False]


def test_on_grid_pins_the_channel_maxima() -> None:
    w = torch.tensor([[0.5, -1.0, 0.26], [2.0, 0.3, -0.1]])
    s, floor, pinned = on_grid(w, WeightGrid(bits=4))
    assert pinned.tolist() == [[False, True, False], [True, False, False]]
    assert floor[pinned].abs().tolist() == [7.0, 7.0]
    assert torch.allclose(s[:, 0], torch.tensor([1 / 7, 2 / 7]))


def test_a_scale_rule_that_cannot_reproduce_its_grid_is_an_error() -> None:
    net, x = _net(), _calib(8)
    shrink = WeightGrid(
        bits=8,
        scale_rule=lambda w: w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / 127.5,
    )
    with pytest.raises(ValidationError, match="does not reproduce"):
        adaround_module(
            net, get_scheme("w8a8"), x, grid=shrink, config=AdaRoundConfig(iterations=5)
        )


def test_per_layer_grids_and_skipped_layers() -> None:
    net, x = _net(), _calib(8)

    def grid(name: str, _m: nn.Module) -> WeightGrid | None:
        return None if name == "6" else WeightGrid(bits=3 if name == "0" else 8)

    ada, stats = adaround_module(
        net, get_scheme("w8a8"), x, grid=grid, config=AdaRoundConfig(iterations=10)
    )
    assert [s.layer for s in stats] == ["0", "2", "4"]
    assert torch.equal(ada[6].weight, net[6].weight)
    w0 = ada[0].weight.detach()
    assert len(torch.unique(w0[0])) <= 7  # 3-bit: codes -3..3


def test_deterministic_with_a_seed() -> None:
    net, x = _net(), _calib(16)
    cfg = AdaRoundConfig(iterations=25, seed=3)
    a, _ = adaround_module(net, get_scheme("w4a8"), x, config=cfg)
    b, _ = adaround_module(net, get_scheme("w4a8"), x, config=cfg)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_scheme_parsing_and_the_technique_end_to_end_in_the_simulator() -> None:
    s = get_scheme({"base": "w4a8", "name": "w4a8-ada", "techniques": ["adaround"]})
    assert s.techniques == ("adaround",) and s.needs_calibration
    assert planned_techniques(s) == ["bn_fold", "adaround"]
    assert planned_techniques(s.with_(techniques=("adaround", "bias_correction"))) == [
        "bn_fold",
        "adaround",
        "bias_correction",
    ]
    with pytest.raises(ValidationError, match="unknown technique"):
        get_scheme({"base": "w4a8", "techniques": ["ada_round"]})
    model = make_tiny_model()
    calib = tiny_inputs(model, 16, seed=4)
    out = apply_techniques(model, s, calib, adaround_config=AdaRoundConfig(iterations=20))
    assert out.info["techniques_applied"] == ["bn_fold", "adaround"]
    assert "+bn_fold+adaround-" in out.weights_hash
    assert out.info["adaround_layers"] > 0
    assert apply_techniques(out, s, calib) is out  # idempotent
    sim = quantize_module(out.module, s, calib)
    with torch.no_grad():
        y = sim(torch.from_numpy(tiny_inputs(model, 4, seed=5)))
    assert y.shape[0] == 4 and bool(torch.isfinite(y).all())
    # the simulator's weight quantizer leaves the AdaRound weights untouched
    tq = s.weights
    for m in out.module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            assert torch.equal(
                fake_quant_weight(m.weight, *weight_qparams(m.weight, tq), tq), m.weight
            )
    with pytest.raises(ValidationError, match="calibration"):
        apply_techniques(make_tiny_model(), s, None)
    # a runtime's own grid (here 3-bit) is honoured and names a different model
    three = apply_techniques(
        model,
        s,
        calib,
        adaround_config=AdaRoundConfig(iterations=5),
        adaround_grid=WeightGrid(bits=3),
    )
    assert three.weights_hash != out.weights_hash
    conv = next(m for m in three.module.modules() if isinstance(m, nn.Conv2d))
    assert len(torch.unique(conv.weight[0])) <= 7


def test_apply_adaround_folds_batchnorm_first() -> None:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    with torch.no_grad():
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].running_mean.uniform_(-0.5, 0.5)
    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    out = apply_adaround(net, get_scheme("w8a8"), x, config=AdaRoundConfig(iterations=20))
    assert isinstance(out[1], nn.Identity)
    with torch.no_grad():
        xt = torch.from_numpy(x)
        rel = float((out(xt) - net(xt)).abs().max() / net(xt).abs().max())
    assert rel < 0.05  # 8-bit on-grid weights: close to the fp32 (BN-folded) net


def test_inputs_come_from_the_simulator_and_targets_pass_the_fused_activation() -> None:
    from edgequant.quant.adaround_data import _simulator

    net, x = _net(), _calib(8)
    sim, acts = _simulator(net, get_scheme("w4a8"), x, AdaRoundConfig())
    assert sorted(acts) == ["0", "2"]  # the convs a ReLU follows; not the projection, not fc
    t = torch.tensor([-1.0, 2.0])
    assert torch.equal(acts["0"](t), torch.tensor([0.0, 2.0]))
    assert sim is not None and any(type(m).__name__ == "ActQuant" for m in sim.modules())
    off, none = _simulator(net, get_scheme("w4a8"), x, AdaRoundConfig(through_activation=False))
    assert off is not None and none == {}
    _, stats = adaround_module(net, get_scheme("w4a8"), x, config=FAST)
    float_inputs = AdaRoundConfig(iterations=120, batch_rows=256, quant_inputs=False)
    _, stats_f = adaround_module(net, get_scheme("w4a8"), x, config=float_inputs)
    # the first layer's input is the 8-bit quantized image, not the float one
    assert stats[0].mse_nearest != stats_f[0].mse_nearest


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return torch.relu(y) if float(x.sum()) > 0 else y  # data-dependent: torch.fx fails


def test_untraceable_model_falls_back_to_float_inputs() -> None:
    torch.manual_seed(0)
    net, x = _Untraceable().eval(), _calib(8)
    ada, stats = adaround_module(net, get_scheme("w4a8"), x, config=AdaRoundConfig(iterations=30))
    assert [s.layer for s in stats] == ["conv"]
    assert stats[0].mse_adaround <= stats[0].mse_nearest
    w, tq = ada.conv.weight, get_scheme("w4a8").weights
    assert torch.equal(fake_quant_weight(w, *weight_qparams(w, tq), tq), w)


class _Residual(nn.Module):
    """conv-ReLU, then an inverted-residual-like block whose input is reused by a skip add (the
    cached sweep must keep it alive past the block's first layer)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.expand = nn.Conv2d(8, 16, 1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.project = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        z = self.project(torch.clamp(self.dw(torch.clamp(self.expand(y), 0, 6)), 0, 6))
        return self.fc((y + z).mean((2, 3)))


@pytest.mark.parametrize("quant_inputs", [True, False])
def test_cached_sweep_equals_one_partial_forward_per_layer(quant_inputs: bool) -> None:
    net, x = _Residual().eval(), _calib(12)
    base = AdaRoundConfig(iterations=40, batch_rows=128, batch_size=5, quant_inputs=quant_inputs)
    cached, st_c = adaround_module(net, get_scheme("w4a8"), x, config=base)
    slow = AdaRoundConfig(**{**base.__dict__, "cache_activations": False})
    uncached, st_u = adaround_module(net, get_scheme("w4a8"), x, config=slow)
    assert [s.layer for s in st_c] == ["stem", "expand", "dw", "project", "fc"]
    assert st_c == st_u  # the same inputs, hence the same learnt rounding, bit for bit
    for pc, pu in zip(cached.parameters(), uncached.parameters(), strict=True):
        assert torch.equal(pc, pu)
    assert sum(s.flipped_pct > 0 for s in st_c) >= 2  # and it did learn something
    for s in st_c:
        assert s.mse_adaround <= s.mse_nearest


def test_bias_shift_lowers_the_first_layers_error_and_keeps_the_codes() -> None:
    net, x = _net(), _calib()
    on, st_on = adaround_module(net, get_scheme("w4a8"), x, config=FAST)
    plain = AdaRoundConfig(**{**FAST.__dict__, "correct_bias": False})
    off, st_off = adaround_module(net, get_scheme("w4a8"), x, config=plain)
    # layer 0 sees the same input in both runs: the same learnt codes, a better bias
    assert torch.equal(on[0].weight, off[0].weight)
    assert torch.equal(off[0].bias, net[0].bias) and not torch.equal(on[0].bias, net[0].bias)
    assert st_on[0].mse_adaround < st_off[0].mse_adaround
    assert _layer_mse(net, on, x, 0) < _layer_mse(net, off, x, 0)
    for s in st_on:
        assert s.mse_adaround <= s.mse_nearest


def test_adaround_learns_on_more_rows_and_augmented_images() -> None:
    def pool(cfg: AdaRoundConfig) -> tuple[int | None, int | None, int | None]:
        return cfg.pool_rows, cfg.pool_floats, cfg.augment_images

    assert pool(settled(AdaRoundConfig())) == POOL_ADAROUND
    for method in ("gptq", "brecq"):  # they keep the settings they were measured with
        assert pool(settled(AdaRoundConfig(method=method))) == POOL_OTHER_METHODS
    assert POOL_ADAROUND[0] > POOL_OTHER_METHODS[0] and POOL_ADAROUND[2] > 0
    assert settled(AdaRoundConfig(augment_images=0)).augment_images == 0
    assert settled(AdaRoundConfig(pool_rows=10)).pool_rows == 10
    assert with_augmented(_calib(16), 64, 0).shape[0] == 16  # 8x8: too small to crop
    x = torch.nn.functional.interpolate(_calib(16), size=(32, 32), mode="bilinear")
    a = with_augmented(x, 64, 0)
    assert a.shape[0] == 64 and torch.equal(a[:16], x)
    assert torch.equal(a, with_augmented(x, 64, 0))
    assert not any(torch.allclose(v, x[0]) for v in a[16:19])  # image 0's variants
    assert with_augmented(x, 16, 0).shape[0] == 16  # already that many images
    assert with_augmented(x, 1000, 0).shape[0] == 64  # at most 3 variants an image


def test_a_4bit_rounding_learns_on_the_augmented_images() -> None:
    net = _net()
    net[6] = nn.Linear(8 * 32 * 32, 10)
    x = torch.nn.functional.interpolate(_calib(8), size=(32, 32), mode="bilinear")
    cfg = AdaRoundConfig(iterations=40, batch_rows=128)
    aug, _ = adaround_module(net.eval(), get_scheme("w4a8"), x, config=cfg)
    plain, _ = adaround_module(
        net.eval(),
        get_scheme("w4a8"),
        x,
        config=AdaRoundConfig(iterations=40, batch_rows=128, augment_images=0),
    )
    assert any(
        not torch.equal(a, p) for a, p in zip(aug.parameters(), plain.parameters(), strict=True)
    )


def test_the_simulator_calibrates_on_the_originals_as_the_runtime_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Crops and flips add rows to learn on; the activation ranges the rounding learns against
    stay those the runtime computes, from the calibration images themselves."""
    import edgequant.quant.adaround as ada

    seen: list[torch.Tensor] = []
    real = ada._simulator

    def recording(module, scheme, x, cfg, *rest):  # type: ignore[no-untyped-def]
        seen.append(x)
        return real(module, scheme, x, cfg, *rest)

    monkeypatch.setattr(ada, "_simulator", recording)
    net = _net()
    net[6] = nn.Linear(8 * 32 * 32, 10)
    x = torch.nn.functional.interpolate(_calib(8), size=(32, 32), mode="bilinear")
    cfg = AdaRoundConfig(iterations=10, batch_rows=128, augment_images=24)
    assert with_augmented(x, 24, 0).shape[0] == 24  # the rows do come from 24 images
    adaround_module(net.eval(), get_scheme("w8a8"), x, config=cfg)
    assert len(seen) == 1 and torch.equal(seen[0], x)


def test_a_layer_with_no_grid_stays_float_in_the_simulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A layer the runtime computes in float (no grid: a CPU remedy) is float in the simulator
    the other layers learn on, so they do not compensate an error the runtime does not make
    (EfficientNet-Lite0 w8a8 for PyTorch on AVX2, 27 float layers: 24.0 dB with it quantized
    there, 29.0 dB float; Intel Xeon, oneDNN capped to AVX2)."""
    import edgequant.quant.adaround as ada
    from edgequant.quant.simulate import QuantLayer, node_module

    sims: list[torch.fx.GraphModule] = []
    real = ada._simulator

    def recording(*args):  # type: ignore[no-untyped-def]
        sim, acts = real(*args)
        sims.append(sim)
        return sim, acts

    monkeypatch.setattr(ada, "_simulator", recording)
    net, x = _net(), _calib(8)

    def grid(name: str, _m: nn.Module) -> WeightGrid | None:
        return None if name == "2" else WeightGrid(bits=8)

    _, stats = adaround_module(
        net, get_scheme("w8a8"), x, grid=grid, config=AdaRoundConfig(iterations=10)
    )
    assert [s.layer for s in stats] == ["0", "4", "6"]
    quantized = {
        str(n.target)
        for n in sims[0].graph.nodes
        if isinstance(node_module(sims[0], n), QuantLayer)
    }
    assert quantized == {"0", "4", "6"}
