"""The shipped digits model: loads, is accurate, and its architecture is quantizer-friendly."""

from __future__ import annotations

import numpy as np

from edgequant.data import open_dataset
from edgequant.measure.accuracy import topk_accuracy
from edgequant.models import load_model
from edgequant.models.digits import WEIGHTS
from edgequant.models.reference import reference_logits


def test_shipped_weights_reach_97_pct() -> None:
    assert WEIGHTS.is_file() and WEIGHTS.stat().st_size < 200_000
    model = load_model("digits_cnn")
    assert model.pretrained and model.weights_hash != "random"
    ds = open_dataset("digits", model.input_spec)
    acc = topk_accuracy(reference_logits(model, ds, progress=False), np.asarray(ds.labels))
    assert acc >= 97.0


def test_no_module_object_used_twice() -> None:
    model = load_model("digits_cnn", pretrained=False)
    assert model.module is not None
    mods = [id(m) for _, m in model.module.named_modules(remove_duplicate=False)]
    assert len(mods) == len(set(mods))
