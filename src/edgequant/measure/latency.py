"""Latency statistics that carry their unit: plain numpy, no runtime imports.

Example:
    >>> lat = Latency.from_values([0.010, 0.012, 0.011, 0.030], unit="s")
    >>> round(lat.p50_ms, 2)
    11.5
    >>> sorted(lat.to_dict())[:3]
    ['count', 'max', 'mean']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgequant.errors import ValidationError

_TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True, kw_only=True)
class Latency:
    """Summary of per-query latencies, in milliseconds (the unit is in every field name).

    Percentiles use numpy's linear interpolation; LoadGen's own figures (which the bench records)
    come from :mod:`edgequant.bench.logs`, this class is for the meters and warm-up estimates.
    """

    count: int
    mean_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    std_ms: float

    @classmethod
    def from_values(cls, values: Iterable[float] | np.ndarray, *, unit: str = "s") -> Latency:
        """Build from raw latencies in ``unit`` (``ns``, ``us``, ``ms`` or ``s``)."""
        if unit not in _TO_MS:
            raise ValidationError(f"unknown latency unit {unit!r}; use one of {', '.join(_TO_MS)}")
        arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, np.float64)
        if arr.size == 0:
            raise ValidationError("no latency values to summarise")
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValidationError("latencies must be finite and non-negative")
        ms = arr * _TO_MS[unit]
        p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
        return cls(
            count=int(ms.size),
            mean_ms=float(ms.mean()),
            min_ms=float(ms.min()),
            max_ms=float(ms.max()),
            p50_ms=float(p50),
            p90_ms=float(p90),
            p95_ms=float(p95),
            p99_ms=float(p99),
            std_ms=float(ms.std()),
        )

    def to_dict(self) -> dict[str, Any]:
        """The record's ``latency_ms`` shape: ``{mean, p50, p90, p95, p99, min, max, count}``."""
        return {
            "mean": self.mean_ms,
            "p50": self.p50_ms,
            "p90": self.p90_ms,
            "p95": self.p95_ms,
            "p99": self.p99_ms,
            "min": self.min_ms,
            "max": self.max_ms,
            "count": self.count,
        }
