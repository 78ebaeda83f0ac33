"""Per-layer weight bit widths (``layer_bits``): the selectors, the scheme, and every consumer
(simulator, AdaRound/GPTQ grids, bias correction, QAT) putting each layer on its own bits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgequant.errors import ValidationError
from edgequant.models.base import Model
from edgequant.quant.adaround import AdaRoundConfig, adaround_module
from edgequant.quant.bias_correction import correct_bias
from edgequant.quant.bn_fold import fold_batchnorm
from edgequant.quant.layer_bits import changed_bits, layer_weight_quants, weight_layers
from edgequant.quant.qat import prepare_qat
from edgequant.quant.scheme import Scheme, get_scheme
from edgequant.quant.simulate import QuantLayer, prepare

FL8 = {"base": "w4a8", "name": "w4a8-fl8", "layer_bits": {"first": 8, "last": 8}}


class Reordered(nn.Module):
    """The classifier registered before the convs: execution order is not registration order."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8, 4)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw(torch.relu(self.stem(x)))
        return self.head(x.mean((2, 3)))


def _bits(module: nn.Module, scheme: Scheme) -> dict[str, int]:
    return {n: q.bits for n, q in layer_weight_quants(module, scheme).items()}


def test_first_and_last_follow_execution_order() -> None:
    net = Reordered()
    assert weight_layers(net) == ["stem", "dw", "head"]
    assert _bits(net, get_scheme(FL8)) == {"stem": 8, "dw": 4, "head": 8}


def test_depthwise_glob_and_later_entries_win() -> None:
    net = Reordered()
    s = get_scheme({"base": "w4a8", "layer_bits": {"depthwise": 8, "s*": 6, "last": 2}})
    assert _bits(net, s) == {"stem": 6, "dw": 8, "head": 2}
    s = get_scheme({"base": "w4a8", "layer_bits": {"first": 8, "*": 3}})
    assert _bits(net, s) == {"stem": 3, "dw": 3, "head": 3}
    assert changed_bits(net, get_scheme(FL8)) == {"stem": 8, "head": 8}
    assert changed_bits(net, get_scheme("w4a8")) == {}


def test_a_glob_that_matches_nothing_names_the_layers() -> None:
    with pytest.raises(ValidationError, match=r"'features\.\*' matches no conv/linear.*stem"):
        layer_weight_quants(
            Reordered(), get_scheme({"base": "w4a8", "layer_bits": {"features.*": 8}})
        )


def test_scheme_round_trips_and_rejects_bad_layer_bits() -> None:
    s = get_scheme(FL8)
    assert s.layer_bits == (("first", 8), ("last", 8))
    assert Scheme.from_dict(s.to_dict()) == s
    assert s.weight_bits_used == {4, 8}
    assert "layer_bits" not in get_scheme("w4a8").to_dict()  # old schemes keep their dicts
    assert s.weights_key != get_scheme("w4a8").weights_key
    with pytest.raises(ValidationError, match="from 2 to 16"):
        get_scheme({"base": "w4a8", "layer_bits": {"first": 1}})
    with pytest.raises(ValidationError, match="must map selectors to bits"):
        get_scheme({"base": "w4a8", "layer_bits": ["first", 8]})
    with pytest.raises(ValidationError, match="needs a scheme with integer weights"):
        get_scheme({"base": "fp16", "layer_bits": {"first": 8}})


def test_simulator_puts_each_layer_on_its_bits(tiny_model: Model) -> None:
    assert tiny_model.module is not None
    gm = prepare(tiny_model.module, get_scheme(FL8))
    bits = {n: m.wq.bits for n, m in gm.named_modules() if isinstance(m, QuantLayer) and m.wq}
    assert bits == {"conv1": 8, "dw": 4, "pw": 4, "conv3": 4, "fc": 8}


def test_rounding_techniques_use_each_layers_grid(
    tiny_model: Model, tiny_calibration: np.ndarray
) -> None:
    assert tiny_model.module is not None
    folded, _ = fold_batchnorm(tiny_model.module)
    cfg = AdaRoundConfig(method="gptq", clip_search=False, correct_bias=False)
    out, _ = adaround_module(folded, get_scheme(FL8), tiny_calibration[:16], config=cfg)
    for name, bits in {"conv1": 8, "conv3": 4, "fc": 8}.items():
        w = out.get_submodule(name).weight.detach().flatten(1)
        step = w.abs().amax(1, keepdim=True) / (2 ** (bits - 1) - 1)
        levels = torch.round(w / step)
        assert torch.allclose(levels * step, w, atol=1e-5), name  # on that layer's grid
        assert int(levels.abs().max()) == 2 ** (bits - 1) - 1, name


def test_bias_correction_and_qat_use_each_layers_bits(
    tiny_model: Model, tiny_calibration: np.ndarray
) -> None:
    assert tiny_model.module is not None
    folded, _ = fold_batchnorm(tiny_model.module)
    x = tiny_calibration[:16]
    mixed, _ = correct_bias(folded, get_scheme(FL8), x)
    same, _ = correct_bias(folded, get_scheme("w4a8"), x, weight_bits={"conv1": 8, "fc": 8})
    plain, _ = correct_bias(folded, get_scheme("w4a8"), x)
    assert torch.equal(mixed.get_submodule("fc").bias, same.get_submodule("fc").bias)
    assert not torch.equal(mixed.get_submodule("fc").bias, plain.get_submodule("fc").bias)
    qat = prepare_qat(tiny_model.module, get_scheme(FL8), x)
    assert qat.get_submodule("conv1").wq.bits == 8
    assert qat.get_submodule("conv3").wq.bits == 4
