"""QAT building blocks: the folded-BN training graph, freezing, distillation without labels."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from edgequant.data import ArrayDataset
from edgequant.errors import ValidationError
from edgequant.quant.qat import QATConvBn, run_qat
from edgequant.quant.scheme import QATConfig, get_scheme
from edgequant.quant.simulate import ActQuant, QuantLayer
from tests.helpers import make_tiny_model, tiny_inputs


def _conv_bn() -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    return conv, bn


def test_folded_graph_equals_conv_bn_in_eval_and_training() -> None:
    conv, bn = _conv_bn()
    fused = QATConvBn(conv, bn, None)
    x = torch.randn(8, 3, 6, 6)
    with torch.no_grad():
        fused.eval()
        bn.eval()
        torch.testing.assert_close(fused(x), bn(conv(x)), rtol=1e-4, atol=1e-5)
        # training: batch statistics, exactly as conv -> bn in train mode
        ref_bn = nn.BatchNorm2d(6)
        ref_bn.load_state_dict(bn.state_dict())
        fused.train()
        ref_bn.train()
        torch.testing.assert_close(fused(x), ref_bn(conv(x)), rtol=1e-4, atol=1e-4)
        # ... and the running statistics moved the same way
        torch.testing.assert_close(fused.bn.running_mean, ref_bn.running_mean)
    layer = fused.to_quant_layer()
    assert isinstance(layer, QuantLayer) and layer.inner.bias is not None


def test_distillation_needs_no_labels_and_freezes() -> None:
    m = make_tiny_model()
    unlabeled = ArrayDataset(tiny_inputs(m, 48, seed=2), None, m.input_spec, "npy:unlabeled")
    with pytest.raises(ValidationError, match="--distill"):
        run_qat(m.module, get_scheme("w4a8"), unlabeled, config=QATConfig(epochs=1))
    cfg = QATConfig(
        epochs=1,
        lr=1e-3,
        batch_size=16,
        freeze_bn_after_steps=1,
        freeze_observers_after_steps=2,
        distill=True,
    )
    res = run_qat(m.module, get_scheme("w4a8"), unlabeled, config=cfg)
    assert res.steps == 3 and all(torch.isfinite(torch.tensor(res.losses)))
    assert not any(isinstance(mod, QATConvBn) for mod in res.module.modules())  # folded for export
    acts = [a for a in res.module.modules() if isinstance(a, ActQuant)]
    assert acts and all(a.mode == "quant" and a.observer is None for a in acts)
    x = torch.from_numpy(tiny_inputs(m, 8, seed=9))
    with torch.no_grad():
        y, ref = res.module(x), m.module(x)
    assert torch.nn.functional.cosine_similarity(y.flatten(), ref.flatten(), dim=0) > 0.9


def test_qat_rejects_float_and_dynamic_schemes() -> None:
    m = make_tiny_model()
    data = ArrayDataset(
        tiny_inputs(m, 8), torch.zeros(8, dtype=torch.long).numpy(), m.input_spec, "npy:x"
    )
    for name in ("fp32", "w8-dyn"):
        with pytest.raises(ValidationError):
            run_qat(m.module, get_scheme(name), data, config=QATConfig(epochs=1))
