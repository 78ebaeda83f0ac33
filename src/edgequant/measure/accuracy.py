"""Accuracy arithmetic on logits or top-k index arrays (plain numpy).

Example:
    >>> import numpy as np
    >>> logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    >>> topk_accuracy(logits, np.array([1, 1, 1]), k=1)
    66.66666666666666
    >>> agreement_pct(logits, logits[:, ::-1])
    0.0

On a few hundred images a top-1 figure moves by whole images (0.5 point each on 200), so each
comes with its 95% interval: :func:`wilson_interval` for a share (top-1, agreement),
:func:`paired_drop_interval` for the drop between two models scored on the same images, and
:func:`margin_flips` says whether the images on which a quantized model disagrees with fp32 were
near-ties that its output noise flips by chance, or clear answers it got wrong.
"""

from __future__ import annotations

import math
from typing import Any

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


#: the normal quantile of a two-sided 95% interval
Z95 = 1.959963984540054
#: a disagreement is "within the noise" when fp32's top-1 margin is below this many standard
#: deviations of the output noise on that margin: a coin flip of the noise, not a broken layer
NOISE_SIGMAS = 2.0


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (95% by default) of a share, in percent.

    Unlike the normal approximation it stays inside [0, 100] and is not empty at 0 or n
    (Wilson 1927; recommended by Brown, Cai & DasGupta 2001 for small n).

    Example:
        >>> [round(v, 1) for v in wilson_interval(196, 200)]
        [95.0, 99.2]
        >>> [round(v, 1) for v in wilson_interval(200, 200)]
        [98.1, 100.0]
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValidationError(f"a share needs 0 <= successes <= n and n > 0, got {successes}/{n}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    lo = 0.0 if successes == 0 else centre - half
    hi = 1.0 if successes == n else centre + half
    return 100.0 * lo, 100.0 * hi


def paired_drop_interval(
    reference_correct: np.ndarray, correct: np.ndarray, z: float = Z95
) -> tuple[float, float]:
    """95% interval of the top-1 drop (points, reference minus model) of two models scored on
    the *same* images (per-image booleans): Newcombe's hybrid score interval for paired shares
    (Newcombe 1998, method 10), which uses the pairing — the images both get right or both get
    wrong say nothing about the drop — and stays sensible when no image changes.

    Example:
        >>> ref = np.array([True] * 178 + [False] * 22)
        >>> new = ref.copy(); new[:2] = False                  # two images lost, none won
        >>> [round(v, 2) for v in paired_drop_interval(ref, new)]
        [-0.88, 3.1]
    """
    a_ok = np.asarray(reference_correct, bool).ravel()
    b_ok = np.asarray(correct, bool).ravel()
    n = len(a_ok)
    if n == 0 or len(b_ok) != n:
        raise ValidationError(
            f"a paired drop needs two equal, non-empty sets; got {n} and {len(b_ok)}"
        )
    both = int(np.sum(a_ok & b_ok))
    lost = int(np.sum(a_ok & ~b_ok))
    won = int(np.sum(~a_ok & b_ok))
    neither = n - both - lost - won
    p1, p2 = (both + lost) / n, (both + won) / n
    l1, u1 = (v / 100 for v in wilson_interval(both + lost, n, z))
    l2, u2 = (v / 100 for v in wilson_interval(both + won, n, z))
    den = (both + lost) * (won + neither) * (both + won) * (lost + neither)
    phi = (both * neither - lost * won) / math.sqrt(den) if den > 0 else 0.0
    d = p1 - p2
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    eps = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return 100.0 * (d - delta), 100.0 * (d + eps)


def margin_flips(reference: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
    """Where a model's top-1 disagrees with the reference's, was it a near-tie?

    For class logits (N, C): ``margin_noise_sd`` is the standard deviation over the samples of
    how much the model's output moved the reference's top-1-over-top-2 logit margin;
    ``disagreements`` the samples whose top-1 differs; ``within_noise`` how many of those had a
    reference margin under :data:`NOISE_SIGMAS` times that deviation (near-ties its noise flips
    by chance; the rest are clear answers it changed: look for a broken layer);
    ``expected_agreement_pct`` the agreement that noise gives on these samples on average
    (each sample keeps its top-1 with probability Φ(margin / sd): a steadier figure than the
    count on a few hundred samples, the noise taken as normal).

    Example:
        >>> ref = np.array([[3.0, 1.0, 0.0], [1.0, 0.95, 0.0], [0.0, 2.0, 5.0]])
        >>> out = ref + np.array([[0.0, 0.1, 0.0], [-0.05, 0.05, 0.0], [0.0, 0.0, -0.1]])
        >>> f = margin_flips(ref, out)
        >>> f["disagreements"], f["within_noise"]
        (1, 1)
    """
    ref = np.asarray(reference, np.float64)
    out = np.asarray(outputs, np.float64)
    if ref.ndim != 2 or ref.shape != out.shape or ref.shape[1] < 2 or len(ref) == 0:
        raise ValidationError(
            f"margins need two equal (samples, classes) arrays, got {ref.shape} and {out.shape}"
        )
    rows = np.arange(len(ref))
    order = np.argsort(-ref, axis=1, kind="stable")
    first, second = order[:, 0], order[:, 1]
    margin = ref[rows, first] - ref[rows, second]
    moved = (out[rows, first] - out[rows, second]) - margin
    sd = float(np.sqrt(np.mean(moved**2)))
    flipped = np.flatnonzero(out.argmax(axis=1) != first)
    if sd > 0:
        keep = np.array([0.5 * math.erfc(-m / (sd * math.sqrt(2))) for m in margin])
    else:
        keep = (margin > 0).astype(float)
    return {
        "samples": len(ref),
        "margin_noise_sd": round(sd, 6),
        "disagreements": len(flipped),
        "within_noise": int(np.sum(margin[flipped] < NOISE_SIGMAS * sd)),
        "largest_flipped_margin": round(float(margin[flipped].max()), 6) if len(flipped) else None,
        "expected_agreement_pct": round(100.0 * float(keep.mean()), 2),
    }


def flips_text(flips: dict[str, Any]) -> str:
    """One phrase for :func:`margin_flips`' figures.

    Example:
        >>> flips_text({"disagreements": 4, "within_noise": 4, "margin_noise_sd": 0.134,
        ...             "expected_agreement_pct": 98.23, "samples": 200})
        'top-1 changed on 4 of 200, all near-ties (fp32 margin < 2σ, σ 0.134 of the margin noise): expected agreement 98.2%'
    """
    n, k, near = flips["samples"], flips["disagreements"], flips["within_noise"]
    sd = f"{NOISE_SIGMAS:g}σ, σ {flips['margin_noise_sd']:.3g} of the margin noise"
    if k == 0:
        which = f"no top-1 changed on {n}"
    elif near == k:
        which = f"top-1 changed on {k} of {n}, all near-ties (fp32 margin < {sd})"
    else:
        which = (
            f"top-1 changed on {k} of {n}, {k - near} of them clear answers (fp32 margin ≥ {sd}):"
            " more than noise, look for a broken layer (edgequant debug)"
        )
    return f"{which}: expected agreement {flips['expected_agreement_pct']:.1f}%"


def interval_text(value: object) -> str:
    """`` [lo, hi]`` of a recorded 95% interval, one decimal; empty when ``value`` is not one.

    Example:
        >>> interval_text([95.03, 99.22]), interval_text(None)
        (' [95.0, 99.2]', '')
    """
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f" [{float(value[0]):.1f}, {float(value[1]):.1f}]"
    return ""


def against_fp32(
    reference: np.ndarray, outputs: np.ndarray, labels: np.ndarray | None = None
) -> dict[str, Any]:
    """A quantized model's class logits against fp32's on the same samples, each figure with its
    95% interval: top-1 and its drop (with labels), agreement, expected agreement and near-ties
    (:func:`margin_flips`) and the logits' SQNR (dB).

    Example:
        >>> ref = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]] * 2.0
        >>> f = against_fp32(ref, ref + 0.01, np.array([0, 1, 2, 3, 0, 1, 2, 0]))
        >>> f["drop_points"], f["agreement_pct"], f["agreement_ci95_pct"][0] > 60
        (0.0, 100.0, True)
    """
    ref = np.asarray(reference, np.float64)
    out = np.asarray(outputs, np.float64)
    flips = margin_flips(ref, out)
    agree = out.argmax(1) == ref.argmax(1)
    noise = float(((ref - out) ** 2).sum())
    doc: dict[str, Any] = {
        "samples": len(ref),
        "agreement_pct": round(100.0 * float(agree.mean()), 2),
        "agreement_ci95_pct": [round(v, 2) for v in wilson_interval(int(agree.sum()), len(agree))],
        "expected_agreement_pct": flips["expected_agreement_pct"],
        "disagreements": flips["disagreements"],
        "near_ties": flips["within_noise"],
        "margin_noise_sd": flips["margin_noise_sd"],
        "logits_sqnr_db": round(10 * math.log10(float((ref**2).sum()) / noise), 2)
        if noise > 0
        else math.inf,
    }
    if labels is not None:
        lab = np.asarray(labels)
        ref_ok, ok = ref.argmax(1) == lab, out.argmax(1) == lab
        doc["fp32_top1_pct"] = round(100.0 * float(ref_ok.mean()), 2)
        doc["top1_pct"] = round(100.0 * float(ok.mean()), 2)
        doc["drop_points"] = round(doc["fp32_top1_pct"] - doc["top1_pct"], 2)
        doc["drop_ci95_points"] = [round(v, 2) for v in paired_drop_interval(ref_ok, ok)]
    return doc


def against_fp32_columns(doc: dict[str, Any]) -> str:
    """One fixed-width line of :func:`against_fp32`'s figures (header: :data:`AGAINST_FP32_HEADER`).

    Example:
        >>> ref = np.eye(4)[[0, 1, 2, 3]] * 2.0
        >>> against_fp32_columns(against_fp32(ref, ref, np.arange(4)))
        '  0.00 [-49.0, 49.0]  100.00 [ 51.0, 100.0]   100.00%    0/0        inf'
    """
    d, a = doc.get("drop_ci95_points"), doc["agreement_ci95_pct"]
    drop = f"{doc['drop_points']:6.2f} [{d[0]:5.1f}, {d[1]:4.1f}]" if d else f"{'-':>20}"
    return (
        f"{drop} {doc['agreement_pct']:7.2f} [{a[0]:5.1f}, {a[1]:5.1f}] "
        f"{doc['expected_agreement_pct']:8.2f}% {doc['near_ties']:>4}/{doc['disagreements']:<4} "
        f"{doc['logits_sqnr_db']:>7.1f}"
    )


#: the header above :func:`against_fp32_columns`
AGAINST_FP32_HEADER = f"{'drop [95% CI]':>20} {'agree % [95% CI]':>22} {'expected':>9} {'near-ties':>9} {'SQNR dB':>7}"
#: what the expected agreement and the near-ties are, for under a table of them
AGAINST_FP32_LEGEND = (
    "expected: the agreement the output's noise gives these samples on average (each keeps its "
    "top-1 with probability Φ(fp32 margin / σ of the margin noise)); near-ties: changed top-1s "
    f"whose fp32 margin was under {NOISE_SIGMAS:g}σ, of all changed"
)
