"""Accuracy arithmetic on fixed arrays."""

import numpy as np
import pytest

from edgequant.errors import ValidationError
from edgequant.measure.accuracy import agreement_pct, topk_accuracy, topk_correct, topk_indices

LOGITS = np.array(
    [
        [0.1, 0.5, 0.3, 0.05, 0.05],  # order 1,2,0
        [0.9, 0.0, 0.05, 0.02, 0.03],  # order 0,2,4
        [0.2, 0.2, 0.1, 0.4, 0.1],  # order 3,0|1
        [0.0, 0.1, 0.2, 0.3, 0.4],  # order 4,3,2
    ]
)
LABELS = np.array([2, 0, 1, 0])


def test_topk_indices_best_first() -> None:
    idx = topk_indices(LOGITS, 3)
    assert idx[:, 0].tolist() == [1, 0, 3, 4]
    assert idx[0].tolist() == [1, 2, 0]
    assert idx[3].tolist() == [4, 3, 2]


def test_top1_top5() -> None:
    assert topk_accuracy(LOGITS, LABELS, 1) == 25.0
    assert topk_accuracy(LOGITS, LABELS, 2) == 50.0
    assert topk_accuracy(LOGITS, LABELS, 5) == 100.0
    assert topk_correct(topk_indices(LOGITS, 5), LABELS, 3).tolist() == [True, True, True, False]


def test_agreement() -> None:
    other = LOGITS.copy()
    other[0] = [1, 0, 0, 0, 0]
    assert agreement_pct(LOGITS, other) == 75.0
    assert agreement_pct(LOGITS.argmax(1), LOGITS) == 100.0
    with pytest.raises(ValidationError):
        agreement_pct(LOGITS, LOGITS[:2])
    with pytest.raises(ValidationError):
        topk_accuracy(LOGITS[:0], LABELS[:0])
