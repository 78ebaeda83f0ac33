"""Paired ratios: median, 95% intervals (order statistics and log-t), the stopping rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgequant.errors import ValidationError
from edgequant.measure.paired import PairedRatio, StoppingRule, order_statistic_ranks


def test_order_statistic_ranks_reach_95_percent() -> None:
    assert order_statistic_ranks(5) is None  # [min, max] of 5 covers only 93.75%
    assert order_statistic_ranks(6) == (1, 6)  # 96.9%
    assert order_statistic_ranks(9) == (2, 8)  # 96.1%
    for n in range(6, 40):
        k, j = order_statistic_ranks(n) or (0, 0)
        coverage = 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n
        assert coverage >= 0.95 and j == n - k + 1


def test_order_statistic_interval_is_taken_from_the_sorted_ratios() -> None:
    r = PairedRatio.from_ratios([2.2, 2.0, 2.4, 2.1, 2.3, 2.5, 1.9])
    assert r.method == "order-statistic"
    assert (r.ci_low, r.median, r.ci_high) == (1.9, 2.2, 2.5)
    assert r.contains(2.0) and not r.contains(2.6)


def test_log_t_for_few_rounds_and_none_for_two() -> None:
    r = PairedRatio.from_ratios([2.0, 2.1, 1.9])
    assert r.method == "log-t" and r.ci_low is not None and r.ci_high is not None
    assert r.ci_low < 2.0 < r.ci_high
    two = PairedRatio.from_ratios([2.0, 2.1])
    assert two.method == "none" and two.half_width is None and "no CI" in two.text()


def test_rounds_are_ratios_of_pairs_and_bad_values_refused() -> None:
    r = PairedRatio.from_rounds([(10.0, 5.0), (9.0, 3.0), (8.0, 4.0)])
    assert r.ratios == (2.0, 3.0, 2.0) and r.median == 2.0
    for bad in [(0.0, 1.0), (1.0, float("nan")), (-1.0, 2.0)]:
        with pytest.raises(ValidationError, match="positive"):
            PairedRatio.from_rounds([bad])
    with pytest.raises(ValidationError):
        PairedRatio.from_ratios([])


def test_to_dict_carries_interval_and_stop_reason() -> None:
    d = PairedRatio.from_ratios([1.0] * 6, stopped_by="half-width").to_dict()
    assert d["ci95"] == [1.0, 1.0] and d["half_width_pct"] == 0.0
    assert d["stopped_by"] == "half-width" and d["rounds"] == 6


@given(st.lists(st.floats(0.2, 5.0), min_size=3, max_size=30))
def test_interval_brackets_the_median(ratios: list[float]) -> None:
    r = PairedRatio.from_ratios(ratios)
    assert r.ci_low is not None and r.ci_high is not None
    assert r.ci_low <= r.median * (1 + 1e-12) and r.median <= r.ci_high * (1 + 1e-12)


def test_coverage_of_a_known_ratio() -> None:
    """Simulated rounds around a true ratio of 2.5: the interval holds it about 95% of the time."""
    rng = np.random.default_rng(0)
    hits = 0
    trials = 400
    for _ in range(trials):
        noise = np.exp(rng.normal(0, 0.05, size=8))
        hits += PairedRatio.from_ratios(list(2.5 * noise)).contains(2.5)
    assert 0.9 <= hits / trials <= 1.0


def test_stopping_rule() -> None:
    rule = StoppingRule(min_rounds=3, max_rounds=5, time_cap_s=100)
    tight = PairedRatio.from_ratios([2.0, 2.0, 2.01])
    wide = PairedRatio.from_ratios([2.0, 3.0, 1.5])
    assert rule.verdict(tight, elapsed_s=1) == "half-width"
    assert rule.verdict(wide, elapsed_s=1) is None
    assert rule.verdict(wide, elapsed_s=101) == "time-cap"
    assert rule.verdict(PairedRatio.from_ratios([2.0, 3.0, 1.5, 2, 4]), elapsed_s=1) == "max-rounds"
    with pytest.raises(ValidationError):
        StoppingRule(min_rounds=4, max_rounds=2)
    with pytest.raises(ValidationError):
        StoppingRule(time_cap_s=float("nan"))
