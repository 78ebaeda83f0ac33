"""Paired comparisons: the ratio of two configurations measured in interleaved rounds, with a 95% CI.

A speed-up quoted from two runs made minutes apart on a shared machine mixes the effect with the
machine's mood (on the 2-core VMs here one run of the same artifact moves 20-40%). Measured as
rounds ``A B A B …`` (who goes first alternates), each round's ratio ``a_i / b_i`` sees the same
conditions on both sides, and the spread of the ratios over rounds says how far to trust it.

The point estimate is the **median of the per-round ratios**. Its interval:

- ``order-statistic`` (n ≥ 6): the distribution-free interval for a median,
  ``[r_(k), r_(n-k+1)]`` with the largest ``k`` whose binomial coverage is still ≥ 95%. It assumes
  only that the rounds are independent and identically distributed; nothing about their shape.
- ``log-t`` (3 ≤ n < 6, where no order-statistic interval reaches 95%): a Student-t interval on
  the log ratios, centred on the median (speed ratios are multiplicative, so logs are the natural
  scale); it assumes roughly log-normal rounds and says so in ``method``.
- fewer than 3 rounds: no interval (``None``); one round is a single number, not a comparison.

The stopping rule (:class:`StoppingRule`) adds rounds until the interval's half-width is at most
3% of the median or a round or time cap is hit; :class:`PairedRatio` records which stopped it.

Example:
    >>> r = PairedRatio.from_rounds([(10.0, 4.0), (11.0, 4.2), (9.6, 4.0), (10.4, 4.1)])
    >>> round(r.median, 3), r.rounds, r.method
    (2.518, 4, 'log-t')
    >>> r.ci_low < r.median < r.ci_high
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgequant.errors import ValidationError

#: the target half-width of the 95% interval, as a fraction of the median
TARGET_HALF_WIDTH = 0.03
CONFIDENCE = 0.95


def _binom_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def order_statistic_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """1-based ranks ``(k, n-k+1)`` of the distribution-free CI for a median, or None if n is too small.

    Example:
        >>> order_statistic_ranks(6), order_statistic_ranks(10), order_statistic_ranks(5)
        ((1, 6), (2, 9), None)
    """
    best = None
    for k in range(1, n // 2 + 1):
        coverage = 1 - 2 * _binom_cdf(k - 1, n)
        if coverage >= confidence:
            best = (k, n - k + 1)
        else:
            break
    return best


def _t_quantile(p: float, df: int) -> float:
    """Student-t quantile (scipy when present; a table for the small df used here otherwise)."""
    try:
        from scipy import stats

        return float(stats.t.ppf(p, df))
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365}
        return table.get(df, 1.96)


@dataclass(frozen=True, kw_only=True)
class PairedRatio:
    """The median ratio a/b over paired rounds, its 95% interval and how it was obtained."""

    median: float
    ci_low: float | None
    ci_high: float | None
    rounds: int
    method: str  # "order-statistic" | "log-t" | "none"
    ratios: tuple[float, ...]
    stopped_by: str = "fixed"  # "half-width" | "max-rounds" | "time-cap" | "fixed"

    @classmethod
    def from_rounds(
        cls, pairs: Sequence[tuple[float, float]], *, stopped_by: str = "fixed"
    ) -> PairedRatio:
        """From ``(a_i, b_i)`` values of the same rounds (e.g. INT8 and FP32 throughput)."""
        ratios = []
        for a, b in pairs:
            if not (math.isfinite(a) and math.isfinite(b)) or a <= 0 or b <= 0:
                raise ValidationError(
                    f"a paired round needs two positive measurements, got {a!r} and {b!r}"
                )
            ratios.append(a / b)
        return cls.from_ratios(ratios, stopped_by=stopped_by)

    @classmethod
    def from_ratios(cls, ratios: Sequence[float], *, stopped_by: str = "fixed") -> PairedRatio:
        if not ratios:
            raise ValidationError("no paired rounds to compare")
        r = np.sort(np.asarray(ratios, dtype=float))
        n = len(r)
        median = float(np.median(r))
        ranks = order_statistic_ranks(n)
        lo: float | None
        hi: float | None
        if ranks is not None:
            lo, hi, method = float(r[ranks[0] - 1]), float(r[ranks[1] - 1]), "order-statistic"
        elif n >= 3:
            logs = np.log(r)
            half = _t_quantile(0.5 + CONFIDENCE / 2, n - 1) * float(np.std(logs, ddof=1)) / n**0.5
            lo, hi, method = median * math.exp(-half), median * math.exp(half), "log-t"
        else:
            lo = hi = None
            method = "none"
        return cls(
            median=median,
            ci_low=lo,
            ci_high=hi,
            rounds=n,
            method=method,
            ratios=tuple(float(x) for x in ratios),
            stopped_by=stopped_by,
        )

    @property
    def half_width(self) -> float | None:
        """Half the interval's width as a fraction of the median (None without an interval)."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_high - self.ci_low) / 2 / self.median

    def contains(self, value: float) -> bool:
        """True when ``value`` lies inside the interval (False without one)."""
        return (
            self.ci_low is not None
            and self.ci_high is not None
            and (self.ci_low <= value <= self.ci_high)
        )

    def text(self, digits: int = 2) -> str:
        """E.g. ``2.58× [2.51, 2.66] (6 rounds)``."""
        if self.ci_low is None or self.ci_high is None:
            return (
                f"{self.median:.{digits}f}× ({self.rounds} round{'s' * (self.rounds != 1)}, no CI)"
            )
        return (
            f"{self.median:.{digits}f}× [{self.ci_low:.{digits}f}, {self.ci_high:.{digits}f}]"
            f" ({self.rounds} rounds)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "ci95": [self.ci_low, self.ci_high] if self.ci_low is not None else None,
            "half_width_pct": None if self.half_width is None else 100 * self.half_width,
            "rounds": self.rounds,
            "method": self.method,
            "ratios": list(self.ratios),
            "stopped_by": self.stopped_by,
        }


@dataclass(frozen=True, kw_only=True)
class StoppingRule:
    """When to stop adding paired rounds.

    Example:
        >>> rule = StoppingRule(min_rounds=3, max_rounds=8, time_cap_s=60)
        >>> rule.verdict(PairedRatio.from_ratios([2.0, 2.01, 1.99]), elapsed_s=10)
        'half-width'
        >>> rule.verdict(PairedRatio.from_ratios([2.0, 2.6]), elapsed_s=10) is None
        True
    """

    min_rounds: int = 3
    max_rounds: int = 10
    time_cap_s: float = 600.0
    half_width: float = TARGET_HALF_WIDTH

    def __post_init__(self) -> None:
        if not 1 <= self.min_rounds <= self.max_rounds:
            raise ValidationError(
                f"rounds must satisfy 1 <= min ({self.min_rounds}) <= max ({self.max_rounds})"
            )
        if not (self.time_cap_s > 0 and math.isfinite(self.time_cap_s)):
            raise ValidationError(f"the time cap must be a positive number, got {self.time_cap_s}")

    def verdict(self, ratio: PairedRatio, *, elapsed_s: float) -> str | None:
        """Why to stop now (``half-width``, ``max-rounds``, ``time-cap``) or None to go on."""
        if ratio.rounds >= self.min_rounds:
            hw = ratio.half_width
            if hw is not None and hw <= self.half_width:
                return "half-width"
        if ratio.rounds >= self.max_rounds:
            return "max-rounds"
        if elapsed_s >= self.time_cap_s:
            return "time-cap"
        return None


__all__ = [
    "CONFIDENCE",
    "TARGET_HALF_WIDTH",
    "PairedRatio",
    "StoppingRule",
    "order_statistic_ranks",
]
