"""GPTQ-style rounding: lower layer-output error than nearest, codes on the grid, maxima pinned."""

from __future__ import annotations

import pytest
import torch

from edgequant.quant.adaround import AdaRoundConfig, adaround_module
from edgequant.quant.fake_quant import fake_quant_weight, weight_qparams
from edgequant.quant.gptq import gptq_codes
from edgequant.quant.scheme import get_scheme
from tests.quant.test_adaround import _calib, _nearest, _net

GPTQ = AdaRoundConfig(method="gptq")


def _correlated_rows(n: int, g: int, k: int, seed: int = 0) -> torch.Tensor:
    """Inputs whose taps correlate (as neighbouring pixels do): where nearest is not optimal."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n, g, 1, generator=gen)
    return base + 0.3 * torch.randn(n, g, k, generator=gen)


def _grid(w: torch.Tensor, qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = w.abs().amax(2, keepdim=True) / qmax
    return s, (w / s).abs() >= qmax - 1e-3


def _out_mse(rows: torch.Tensor, w: torch.Tensor, w_q: torch.Tensor) -> float:
    return float((torch.einsum("rgk,gok->rgo", rows, w - w_q) ** 2).mean())


@pytest.mark.parametrize(
    ("groups", "out_per_group", "k", "qmax"), [(1, 12, 27, 7), (16, 1, 9, 127)]
)
def test_error_feedback_lowers_the_layer_output_error(
    groups: int, out_per_group: int, k: int, qmax: int
) -> None:
    """A dense layer at 4 bits and a depthwise one (16 groups of one channel) at 8 bits."""
    rows = _correlated_rows(2048, groups, k)
    w = torch.randn(groups, out_per_group, k, generator=torch.Generator().manual_seed(1))
    s, pinned = _grid(w, qmax)
    codes = gptq_codes(rows, w, s, pinned, qmax)
    nearest = torch.clamp(torch.round(w / s), -qmax, qmax)
    assert torch.equal(codes, torch.round(codes))  # integers
    assert float(codes.abs().max()) <= qmax
    assert torch.equal(codes[pinned], torch.sign(w[pinned]) * qmax)  # the scale is kept
    assert _out_mse(rows, w, codes * s) < 0.8 * _out_mse(rows, w, nearest * s)


def test_too_few_rows_keep_nearest_rounding() -> None:
    rows = _correlated_rows(30, 1, 27)  # fewer than 2 rows per input: H would fit the rows
    w = torch.randn(1, 4, 27, generator=torch.Generator().manual_seed(2))
    s, pinned = _grid(w, 7)
    nearest = torch.clamp(torch.round(w / s), -7, 7)
    assert torch.equal(gptq_codes(rows, w, s, pinned, 7), nearest)


@pytest.mark.parametrize("scheme", ["w4a8", "w8a8"])
def test_the_model_path_puts_weights_on_the_runtimes_grid(scheme: str) -> None:
    net, x = _net(), _calib(32)
    out, stats = adaround_module(net, get_scheme(scheme), x, config=GPTQ)
    tq = get_scheme(scheme).weights
    assert tq is not None
    assert [s.layer for s in stats] == ["0", "2", "4", "6"]
    for orig, m in zip(net.modules(), out.modules(), strict=True):
        if not isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            continue
        w = m.weight.detach()
        assert torch.equal(fake_quant_weight(w, *weight_qparams(w, tq), tq), w)
        # the scale is the channel's max|w| / qmax, or less where the clip search narrowed it
        s_new, s_old = weight_qparams(w, tq)[0], weight_qparams(orig.weight, tq)[0]
        assert bool((s_new <= s_old * (1 + 1e-6)).all())
    for s in stats:
        assert s.mse_adaround <= s.mse_nearest
    with torch.no_grad():  # the network's output is closer to fp32 than with nearest rounding
        ref = net(x)
        near = _nearest(net, scheme)
        assert float(((out(x) - ref) ** 2).mean()) < float(((near(x) - ref) ** 2).mean())


def test_the_gptq_technique_in_a_scheme() -> None:
    from edgequant.errors import ValidationError
    from edgequant.quant.transforms import apply_techniques, planned_techniques
    from tests.helpers import make_tiny_model, tiny_inputs

    s = get_scheme({"base": "w8a8", "name": "w8a8-gptq", "techniques": ["gptq", "bias_correction"]})
    assert s.needs_calibration
    assert planned_techniques(s) == ["bn_fold", "gptq", "bias_correction"]
    model = make_tiny_model()
    calib = tiny_inputs(model, 16, seed=4)
    out = apply_techniques(model, s, calib)
    assert out.info["techniques_applied"] == ["bn_fold", "gptq", "bias_correction"]
    assert "+bn_fold+gptq-" in out.weights_hash and out.info["adaround_layers"] > 0
    ada = apply_techniques(
        model,
        s.with_(techniques=("adaround",)),
        calib,
        adaround_config=AdaRoundConfig(iterations=5),
    )
    assert ada.weights_hash != out.weights_hash  # another rounding, another model
    both = s.with_(techniques=("adaround", "gptq"))
    with pytest.raises(ValidationError, match="keep one"):
        apply_techniques(model, both, calib)
    with pytest.raises(ValidationError, match="gptq needs calibration"):
        apply_techniques(model, s.with_(techniques=("gptq",)), None)
