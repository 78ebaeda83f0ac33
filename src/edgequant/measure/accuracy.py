"""Accuracy arithmetic on logits or top-k index arrays (plain numpy).

Example:
    >>> import numpy as np
    >>> logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    >>> topk_accuracy(logits, np.array([1, 1, 1]), k=1)
    66.66666666666666
    >>> agreement_pct(logits, logits[:, ::-1])
    0.0
"""

from __future__ import annotations

import numpy as np

from edgequant.errors import ValidationError


def topk_indices(logits: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of the k largest logits per row, best first."""
    logits = np.asarray(logits)
    k = min(k, logits.shape[1])
    part = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(logits, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def topk_correct(pred_topk: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean per sample: label within the first k predicted indices (pred_topk is (N, ≥k))."""
    pred_topk = np.asarray(pred_topk)
    labels = np.asarray(labels).reshape(-1, 1)
    if len(pred_topk) != len(labels):
        raise ValidationError(f"{len(pred_topk)} predictions for {len(labels)} labels")
    return (pred_topk[:, :k] == labels).any(axis=1)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Top-k accuracy in percent."""
    if len(labels) == 0:
        raise ValidationError("no samples to measure accuracy on")
    return float(topk_correct(topk_indices(logits, k), labels, k).mean() * 100.0)


def agreement_pct(a: np.ndarray, b: np.ndarray) -> float:
    """Percent of samples whose top-1 class agrees between two logit arrays (or two 1-D
    arrays of predicted classes)."""
    pa = np.asarray(a)
    pb = np.asarray(b)
    pa = pa.argmax(axis=1) if pa.ndim == 2 else pa
    pb = pb.argmax(axis=1) if pb.ndim == 2 else pb
    if len(pa) != len(pb) or len(pa) == 0:
        raise ValidationError(f"cannot compare {len(pa)} and {len(pb)} predictions")
    return float((pa == pb).mean() * 100.0)
