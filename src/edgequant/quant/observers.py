"""Calibration observers: they watch activations and choose the clipping range.

* ``minmax`` — the observed extremes (never clips; outliers stretch the scale).
* ``percentile:P`` — the P-th percentile of ``|x|`` (symmetric) or the (100-P, P) percentiles.
* ``mse`` — the clipping range (a fraction of min/max) minimising the quantization MSE.
* ``entropy`` — TensorRT's KL-divergence calibration: a 2048-bin histogram of ``|x|`` (or of
  ``x`` when it is non-negative, e.g. after ReLU), the threshold whose quantized distribution is
  closest to the reference distribution in KL divergence. Exact zeros are left out of the
  histogram (measured: with them, the ReLU zero spike pulled every threshold to its minimum and
  digits w8a8 fell to 36 %).
* ``ema`` — exponential moving average of batch min/max, for QAT.

``default`` picks ``minmax`` for weights and **mse** for activations: on the digits model and the
tiny test net it matched or beat percentile/entropy, and unlike percentile it has no knob
(see ``benchmarks/lab_digits.py`` and ``edgequant lab ptq``).

Percentile, MSE and entropy keep a bounded uniform random sample (reservoir) of the values seen,
plus the exact min/max, so memory stays constant however much calibration data is used.

Example:
    >>> import torch
    >>> from edgequant.quant.scheme import TensorQuant
    >>> obs = make_observer("percentile:99")
    >>> obs.update(torch.linspace(0, 100, 10001))
    >>> lo, hi = obs.range(TensorQuant(bits=8, symmetric=False))
    >>> round(lo, 2), round(hi, 2)
    (1.0, 99.0)
"""

from __future__ import annotations

import numpy as np
import torch

from edgequant.errors import ValidationError
from edgequant.quant.fake_quant import fake_quant, qparams_from_range
from edgequant.quant.scheme import CalibrationConfig, TensorQuant

#: what ``default`` means for activations (see the module docstring)
DEFAULT_ACTIVATION_METHOD = "mse"
_RESERVOIR = 1 << 16


class Observer:
    """Watches tensors (``update``) and proposes a range (``range``) for a TensorQuant."""

    method = "minmax"

    def __init__(self) -> None:
        self.lo = float("inf")
        self.hi = float("-inf")
        self.count = 0

    def update(self, x: torch.Tensor) -> None:
        x = x.detach()
        if x.numel() == 0:
            return
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))
        self.count += x.numel()

    def range(self, tq: TensorQuant) -> tuple[float, float]:
        """The clipping range ``(lo, hi)``; raises when nothing was observed."""
        if self.count == 0:
            raise ValidationError("observer saw no data: the calibration set is empty")
        return self.lo, self.hi

    def qparams(self, tq: TensorQuant) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.range(tq)
        return qparams_from_range(torch.tensor(lo), torch.tensor(hi), tq)


class EmaObserver(Observer):
    """Moving average of per-batch min/max (QAT; ``momentum`` weights the newest batch)."""

    method = "ema"

    def __init__(self, momentum: float = 0.01) -> None:
        super().__init__()
        self.momentum = momentum

    def update(self, x: torch.Tensor) -> None:
        x = x.detach()
        if x.numel() == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        if self.count == 0:
            self.lo, self.hi = lo, hi
        else:
            m = self.momentum
            self.lo, self.hi = (1 - m) * self.lo + m * lo, (1 - m) * self.hi + m * hi
        self.count += x.numel()


class _SampledObserver(Observer):
    """Keeps a uniform random sample of the values (reservoir) besides the exact extremes."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self._gen = torch.Generator().manual_seed(seed)
        self._chunks: list[torch.Tensor] = []
        self._kept = 0

    def update(self, x: torch.Tensor) -> None:
        super().update(x)
        flat = x.detach().float().reshape(-1)
        if flat.numel() > _RESERVOIR // 4:
            idx = torch.randint(0, flat.numel(), (_RESERVOIR // 4,), generator=self._gen)
            flat = flat[idx]
        self._chunks.append(flat.clone())
        self._kept += flat.numel()
        if self._kept > 2 * _RESERVOIR:
            allv = torch.cat(self._chunks)
            idx = torch.randperm(allv.numel(), generator=self._gen)[:_RESERVOIR]
            self._chunks, self._kept = [allv[idx]], _RESERVOIR

    def samples(self) -> torch.Tensor:
        return torch.cat(self._chunks) if self._chunks else torch.zeros(0)


class PercentileObserver(_SampledObserver):
    method = "percentile"

    def __init__(self, percentile: float = 99.99) -> None:
        super().__init__()
        if not 50.0 < percentile <= 100.0:
            raise ValidationError(f"percentile must be in (50, 100], got {percentile}")
        self.percentile = percentile

    def range(self, tq: TensorQuant) -> tuple[float, float]:
        super().range(tq)
        v = self.samples().numpy().astype(np.float64)
        if tq.symmetric:
            amax = float(np.percentile(np.abs(v), self.percentile))
            return -amax, amax
        return float(np.percentile(v, 100.0 - self.percentile)), float(
            np.percentile(v, self.percentile)
        )


class MseObserver(_SampledObserver):
    """Grid search over shrinking the min/max range; keeps the one with the least MSE."""

    method = "mse"
    steps = 40

    def range(self, tq: TensorQuant) -> tuple[float, float]:
        super().range(tq)
        v = self.samples()
        if v.numel() > 1 << 14:  # the search needs the shape of the distribution, not every value
            v = v[torch.randperm(v.numel(), generator=self._gen)[: 1 << 14]]
        best, best_err = (self.lo, self.hi), float("inf")
        for frac in torch.linspace(1.0, 0.05, self.steps).tolist():
            lo, hi = self.lo * frac, self.hi * frac
            s, z = qparams_from_range(torch.tensor(lo), torch.tensor(hi), tq)
            err = float(((fake_quant(v, s, z, tq.qmin, tq.qmax) - v) ** 2).mean())
            if err < best_err:
                best, best_err = (lo, hi), err
        return best


class EntropyObserver(_SampledObserver):
    """TensorRT-style KL-divergence threshold on a 2048-bin histogram."""

    method = "entropy"
    bins = 2048

    def range(self, tq: TensorQuant) -> tuple[float, float]:
        super().range(tq)
        v = self.samples().numpy().astype(np.float64)
        nonneg = self.lo >= 0.0
        a = v if nonneg else np.abs(v)
        # exact zeros (the ReLU spike) are represented exactly at any threshold; left in, their
        # spike dominates the KL of the merged bins and drags the threshold to the minimum
        a = a[a != 0.0]
        amax = float(a.max()) if a.size else 0.0
        if amax == 0.0:
            return self.lo, self.hi
        hist, edges = np.histogram(a, bins=self.bins, range=(0.0, amax))
        levels = tq.qmax - tq.qmin + 1
        if not nonneg:
            levels //= 2  # one side of a signed range
        threshold = _kl_threshold(hist.astype(np.float64), edges, levels)
        if nonneg:
            return 0.0, threshold
        if tq.symmetric:
            return -threshold, threshold
        return max(self.lo, -threshold), min(self.hi, threshold)


def _kl_threshold(hist: np.ndarray, edges: np.ndarray, levels: int) -> float:
    """The clipping threshold whose ``levels``-level quantization minimises KL(P || Q)."""
    n = len(hist)
    if levels >= n:
        return float(edges[-1])
    best_i, best_kl = n, float("inf")
    stride = max(1, (n - levels) // 128)  # ~128 candidates keeps calibration fast
    for i in range(levels, n + 1, stride):
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()  # outliers are clipped into the last bin
        nz = p > 0
        # merge the i reference bins into `levels` quantized bins, spread back over non-zeros
        groups = np.minimum((np.arange(i) * levels) // i, levels - 1)
        qsum = np.bincount(groups, weights=hist[:i], minlength=levels)
        qcnt = np.bincount(groups, weights=nz.astype(np.float64), minlength=levels)
        q = np.where(nz, qsum[groups] / np.maximum(qcnt[groups], 1.0), 0.0)
        ps, qs = p.sum(), q.sum()
        if ps == 0 or qs == 0:
            continue
        p, q = p / ps, q / qs
        mask = p > 0
        kl = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
        if kl < best_kl:
            best_i, best_kl = i, kl
    return float(edges[best_i])


def make_observer(method: str | CalibrationConfig, *, for_weights: bool = False) -> Observer:
    """An observer for a calibration method name (``default`` resolved as documented).

    Example:
        >>> type(make_observer("entropy")).__name__
        'EntropyObserver'
    """
    name = method.method if isinstance(method, CalibrationConfig) else method
    if name == "default":
        name = "minmax" if for_weights else DEFAULT_ACTIVATION_METHOD
    if name == "minmax":
        return Observer()
    if name == "ema":
        return EmaObserver()
    if name == "mse":
        return MseObserver()
    if name == "entropy":
        return EntropyObserver()
    if name.startswith("percentile"):
        p = CalibrationConfig(method=name).percentile
        return PercentileObserver(99.99 if p is None else p)
    raise ValidationError(
        f"unknown calibration method {name!r}; use minmax, percentile:P, mse or entropy"
    )


def resolve_method(method: str, *, for_weights: bool = False) -> str:
    """The concrete method ``default`` stands for."""
    if method == "default":
        return "minmax" if for_weights else DEFAULT_ACTIVATION_METHOD
    return method


__all__ = [
    "DEFAULT_ACTIVATION_METHOD",
    "EmaObserver",
    "EntropyObserver",
    "MseObserver",
    "Observer",
    "PercentileObserver",
    "make_observer",
    "resolve_method",
]
