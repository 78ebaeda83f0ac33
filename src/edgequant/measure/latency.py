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
#: the percentiles a summary carries (fields ``p50_ms`` ...)
PERCENTILES = (50, 90, 95, 99)
#: the keys of the record's ``latency_ms``, in order; each is the field ``<key>_ms``
RECORD_KEYS = ("mean", *(f"p{q}" for q in PERCENTILES), "min", "max")


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
        percentiles = np.percentile(ms, PERCENTILES)
        return cls(
            count=int(ms.size),
            mean_ms=float(ms.mean()),
            min_ms=float(ms.min()),
            max_ms=float(ms.max()),
            std_ms=float(ms.std()),
            **{f"p{q}_ms": float(v) for q, v in zip(PERCENTILES, percentiles, strict=True)},
        )

    def to_dict(self) -> dict[str, Any]:
        """The record's ``latency_ms`` shape: ``{mean, p50, p90, p95, p99, min, max, count}``."""
        return {**{key: getattr(self, f"{key}_ms") for key in RECORD_KEYS}, "count": self.count}
