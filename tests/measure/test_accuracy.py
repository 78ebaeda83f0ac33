"""Accuracy arithmetic on fixed arrays."""

import numpy as np
import pytest

from edgequant.errors import ValidationError
from edgequant.measure.accuracy import (
    agreement_pct,
    margin_flips,
    paired_drop_interval,
    topk_accuracy,
    topk_correct,
    topk_indices,
    wilson_interval,
)

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


def test_wilson_interval_matches_published_values() -> None:
    # Brown, Cai & DasGupta (2001) / Newcombe (1998): 81/263 -> [0.2553, 0.3662]
    lo, hi = wilson_interval(81, 263)
    assert (round(lo, 2), round(hi, 2)) == (25.53, 36.62)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 100.0
    assert wilson_interval(10, 10)[0] < 100.0  # never empty at n of n
    with pytest.raises(ValidationError):
        wilson_interval(3, 2)


def test_paired_drop_interval_covers_the_true_drop() -> None:
    """Simulated paired scores with a known drop: the 95% interval holds it >= 93% of the time,
    and it is narrower than the unpaired one because most images agree."""
    rng = np.random.default_rng(0)
    n, p_ok, p_lost, p_won = 200, 0.89, 0.03, 0.01
    hits, widths = 0, []
    for _ in range(400):
        ref = rng.random(n) < p_ok
        u = rng.random(n)
        new = ref.copy()
        new[ref & (u < p_lost / p_ok)] = False
        new[~ref & (u < p_won / (1 - p_ok))] = True
        lo, hi = paired_drop_interval(ref, new)
        hits += lo <= 100 * (p_lost - p_won) <= hi
        widths.append(hi - lo)
    assert hits / 400 >= 0.93
    unpaired = 2 * 1.96 * 100 * np.sqrt(2 * 0.89 * 0.11 / n)
    assert np.mean(widths) < 0.7 * unpaired


def test_paired_drop_interval_contains_the_drop() -> None:
    ref = np.array([True] * 90 + [False] * 10)
    assert paired_drop_interval(ref, ref)[0] < 0.0 < paired_drop_interval(ref, ref)[1]
    worse = ref.copy()
    worse[:20] = False  # 20 points lost: the interval excludes 0
    lo, hi = paired_drop_interval(ref, worse)
    assert 0.0 < lo < 20.0 < hi
    with pytest.raises(ValidationError):
        paired_drop_interval(ref, ref[:5])


def test_margin_flips_tells_near_ties_from_clear_answers() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(500, 10))
    ref[:, 0] += 3.0  # mostly clear winners ...
    ref[:5, 1] = ref[:5, 0] - 0.01  # ... and five near-ties
    out = ref + rng.normal(scale=0.05, size=ref.shape)
    f = margin_flips(ref, out)
    assert 0.05 < f["margin_noise_sd"] < 0.1  # the difference of two N(0, 0.05): sd 0.071
    assert f["within_noise"] == f["disagreements"]
    observed = 100.0 * (1 - f["disagreements"] / 500)
    assert f["disagreements"] >= 1 and abs(f["expected_agreement_pct"] - observed) < 1.0
    out[10] = ref[10][::-1]  # one clear answer broken
    g = margin_flips(ref, out)
    assert g["disagreements"] - g["within_noise"] == 1
    with pytest.raises(ValidationError):
        margin_flips(ref, out[:, :3])
