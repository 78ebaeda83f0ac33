"""Was the machine quiet while we measured? CPU steal, other processes, frequency, throttling.

A speed figure measured while another job burned a core is another fact than one measured on a
quiet machine (on the 2-core VMs here the same ResNet-50 INT8/FP32 ratio moved from 3.76× to 1.8×
when other jobs ran). :class:`NoiseMonitor` watches a run and :class:`NoiseReport` says whether it
was noisy and why, so a record is flagged instead of silently averaged.

What is read (through ``psutil``, system-wide, from the start of the run to its end):

- **steal**: CPU time the hypervisor gave to other guests (``/proc/stat`` steal column), as a
  percentage of the wall time × the cores this process may use;
- **other processes' CPU**: the whole machine's busy CPU time minus this process tree's, in cores
  (1.0 = one core fully busy with someone else's work);
- **CPU frequency** where the OS exposes it (min and max seen, sampled during the run);
- **thermal throttling** events where Linux counts them
  (``/sys/devices/system/cpu/cpu*/thermal_throttle/*_throttle_count``).

Thresholds (:data:`THRESHOLDS`) come from measurements on this project's 2-core VMs: idle, the
others' CPU stayed below 0.1 core and steal below 1%; one busy-loop process read 0.95-1.0 core.
A quarter of a core of someone else's work is where a 2-thread benchmark starts losing time.

Example:
    >>> with NoiseMonitor() as mon:
    ...     _ = sum(range(10_000))
    >>> report = mon.report
    >>> isinstance(report.noisy, bool) and "other_cpu_cores" in report.to_dict()
    True
"""

from __future__ import annotations

import dataclasses
import glob
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

#: a run is noisy when any of these is exceeded
THRESHOLDS: dict[str, float] = {
    "other_cpu_cores": 0.25,
    "steal_pct": 5.0,
    "freq_drop_pct": 15.0,
    "throttle_events": 0,
}


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _throttle_count() -> int | None:
    paths = glob.glob("/sys/devices/system/cpu/cpu*/thermal_throttle/*_throttle_count")
    if not paths:
        return None
    total = 0
    for p in paths:
        try:
            with open(p) as f:
                total += int(f.read().strip() or 0)
        except (OSError, ValueError):
            continue
    return total


def _tree_cpu_s(proc: Any) -> float:
    """CPU seconds of a process and its live and reaped children."""
    import psutil

    t = proc.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in proc.children(recursive=True):
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.Error:  # gone between listing and reading; its time is in children_*
            continue
    return float(total)


def _busy_s(times: Any) -> float:
    idle = times.idle + getattr(times, "iowait", 0.0)
    # guest time is already counted in user time on Linux
    guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    return float(sum(times) - idle - getattr(times, "steal", 0.0) - guest)


@dataclass(frozen=True, kw_only=True)
class NoiseReport:
    """The evidence of one monitored run and the verdict drawn from it."""

    wall_s: float
    other_cpu_cores: float | None
    own_cpu_s: float | None = None
    steal_pct: float | None
    freq_mhz_min: float | None = None
    freq_mhz_max: float | None = None
    freq_drop_pct: float | None = None
    throttle_events: int | None = None
    reasons: tuple[str, ...] = ()
    thresholds: dict[str, float] = field(default_factory=lambda: dict(THRESHOLDS))
    source: str = "psutil"

    @property
    def noisy(self) -> bool:
        return bool(self.reasons)

    def summary(self) -> str:
        """One line: ``quiet`` or ``noisy: other processes used 0.97 cores``."""
        return "quiet" if not self.noisy else "noisy: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "noisy": self.noisy,
            "summary": self.summary(),
            "reasons": list(self.reasons),
            "wall_s": round(self.wall_s, 3),
            "other_cpu_cores": self.other_cpu_cores,
            "own_cpu_s": self.own_cpu_s,
            "steal_pct": self.steal_pct,
            "freq_mhz": None
            if self.freq_mhz_min is None
            else {"min": self.freq_mhz_min, "max": self.freq_mhz_max},
            "freq_drop_pct": self.freq_drop_pct,
            "throttle_events": self.throttle_events,
            "thresholds": self.thresholds,
            "source": self.source,
        }

    @classmethod
    def unavailable(cls, why: str) -> NoiseReport:
        """A report with no evidence (psutil missing): never flagged, and it says why."""
        return cls(wall_s=0.0, other_cpu_cores=None, steal_pct=None, source=f"unavailable: {why}")


class NoiseMonitor:
    """Context manager around a measurement; ``.report`` holds the :class:`NoiseReport` after it.

    ``sample_s`` is how often the CPU frequency is sampled (the rest is read at start and end).
    """

    def __init__(self, *, sample_s: float = 0.5, thresholds: dict[str, float] | None = None):
        self.sample_s = sample_s
        self.thresholds = {**THRESHOLDS, **(thresholds or {})}
        self.report: NoiseReport | None = None
        self._freqs: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ok = True

    def __enter__(self) -> NoiseMonitor:
        try:
            import psutil
        except ImportError:
            self._ok = False
            return self
        self._proc = psutil.Process()
        self._t0 = time.perf_counter()
        self._sys0 = psutil.cpu_times()
        self._own0 = _tree_cpu_s(self._proc)
        self._thr0 = _throttle_count()
        self._sample_freq()
        self._thread = threading.Thread(target=self._sampler, name="noise-monitor", daemon=True)
        self._thread.start()
        return self

    def _sample_freq(self) -> None:
        import psutil

        try:
            f = psutil.cpu_freq()
        except (OSError, NotImplementedError, RuntimeError):
            f = None
        if f is not None and f.current:
            self._freqs.append(float(f.current))

    def _sampler(self) -> None:
        while not self._stop.wait(self.sample_s):
            self._sample_freq()

    def __exit__(self, *exc: object) -> None:
        if not self._ok:
            self.report = NoiseReport.unavailable("psutil is not installed (pip install psutil)")
            return
        import psutil

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample_freq()
        wall = max(time.perf_counter() - self._t0, 1e-9)
        sys1 = psutil.cpu_times()
        own = _tree_cpu_s(self._proc) - self._own0
        busy = _busy_s(sys1) - _busy_s(self._sys0)
        others = max(busy - own, 0.0) / wall
        steal0, steal1 = getattr(self._sys0, "steal", None), getattr(sys1, "steal", None)
        steal = (
            None
            if steal0 is None or steal1 is None
            else 100 * (steal1 - steal0) / (wall * _usable_cores())
        )
        thr1 = _throttle_count()
        throttle = None if self._thr0 is None or thr1 is None else thr1 - self._thr0
        fmin = min(self._freqs) if self._freqs else None
        fmax = max(self._freqs) if self._freqs else None
        drop = None
        if fmin is not None and fmax:
            drop = 100 * (fmax - fmin) / fmax
        report = self._verdict(wall, others, steal, fmin, fmax, drop, throttle)
        self.report = dataclasses.replace(report, own_cpu_s=round(own, 3))

    def _verdict(
        self,
        wall: float,
        others: float,
        steal: float | None,
        fmin: float | None,
        fmax: float | None,
        drop: float | None,
        throttle: int | None,
    ) -> NoiseReport:
        th = self.thresholds
        reasons = []
        if others > th["other_cpu_cores"]:
            reasons.append(f"other processes used {others:.2f} cores")
        if steal is not None and steal > th["steal_pct"]:
            reasons.append(f"the hypervisor stole {steal:.1f}% of the CPU time")
        if drop is not None and drop > th["freq_drop_pct"]:
            reasons.append(f"the CPU clock fell {drop:.0f}% during the run")
        if throttle is not None and throttle > th["throttle_events"]:
            reasons.append(f"{throttle} thermal throttling events")
        return NoiseReport(
            wall_s=wall,
            other_cpu_cores=round(others, 3),
            steal_pct=None if steal is None else round(steal, 2),
            freq_mhz_min=fmin,
            freq_mhz_max=fmax,
            freq_drop_pct=None if drop is None else round(drop, 1),
            throttle_events=throttle,
            reasons=tuple(reasons),
            thresholds=dict(th),
        )


__all__ = ["THRESHOLDS", "NoiseMonitor", "NoiseReport"]
