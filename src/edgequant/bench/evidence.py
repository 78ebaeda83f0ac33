"""What a record says about the conditions of its measurement: noise, and the machine's roofline.

:class:`RunWatch` starts a :class:`~edgequant.measure.noise.NoiseMonitor` when LoadGen starts
(the warm-up is not watched) and stops it when the run is over; :func:`fill_roofline` puts the
achieved GOP/s and the matching peak of :func:`edgequant.measure.roofline.roofline` into the
record (the roofline is measured once per CPU and cached; never during a timed run).

Example:
    >>> watch = RunWatch()
    >>> watch.start(); _ = sum(range(1000)); report = watch.stop()
    >>> report is not None and isinstance(report.noisy, bool)
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgequant.measure.noise import NoiseMonitor, NoiseReport

if TYPE_CHECKING:
    from edgequant.bench.config import BenchConfig
    from edgequant.models.base import Model
    from edgequant.results.record import ResultRecord


class RunWatch:
    """Watches the machine from the first LoadGen start (retries included) to :meth:`stop`.

    ``then`` is called at every start as well (the energy meter's start)."""

    def __init__(self, then: Callable[[], None] | None = None) -> None:
        self._then = then
        self._monitor: NoiseMonitor | None = None

    def start(self) -> None:
        if self._monitor is None:
            self._monitor = NoiseMonitor()
            self._monitor.__enter__()
        if self._then is not None:
            self._then()

    def stop(self) -> NoiseReport | None:
        """The report of the watched span (None when LoadGen never started)."""
        mon, self._monitor = self._monitor, None
        if mon is None:
            return None
        mon.__exit__(None, None, None)
        return mon.report


def prefetch_roofline(cfg: BenchConfig) -> None:
    """Measure (or read) this CPU's roofline now, so that :func:`fill_roofline` finds it cached.

    A machine without ONNX Runtime has no roofline; :func:`fill_roofline` records why.
    """
    from edgequant.errors import EdgequantError
    from edgequant.measure.roofline import roofline

    with contextlib.suppress(EdgequantError):
        roofline(cfg.threads, cache_dir=cfg.cache_dir)


def fill_roofline(rec: ResultRecord, model: Model, cfg: BenchConfig) -> None:
    """``rec.roofline``: achieved GOP/s, this CPU's matching peak and the % of it.

    Without ONNX Runtime (whose GEMM kernels measure the peaks) the peaks are null and
    ``reason`` says why; the achieved figure is still given when the MACs are known.
    """
    from edgequant.errors import EdgequantError
    from edgequant.measure.roofline import is_integer_precision, roofline, roofline_figures
    from edgequant.models.profile import model_macs

    macs, source = model_macs(model)
    precision = "int8" if is_integer_precision(rec.scheme, rec.scheme_detail) else "fp32"
    reason = None if macs is not None else source
    peaks = None
    try:
        peaks = roofline(rec.threads, cache_dir=cfg.cache_dir)
    except EdgequantError as e:
        reason = str(e)
    figures = roofline_figures(
        macs_per_sample=macs,
        throughput_ips=_samples_per_s(rec),
        precision=precision,
        peaks=peaks,
        reason=reason,
    )
    figures["macs_source"] = source if macs is not None else None
    rec.roofline = figures


def _samples_per_s(rec: ResultRecord) -> float | None:
    """Samples per second of the run: LoadGen's throughput, else from the p50 query latency."""
    if rec.throughput_ips:
        return rec.throughput_ips
    p50 = (rec.latency_ms or {}).get("p50")
    return rec.batch_size * 1000.0 / p50 if p50 else None


__all__ = ["RunWatch", "fill_roofline", "prefetch_roofline"]
