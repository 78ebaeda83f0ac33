"""Energy meters behind one interface, with an idle baseline subtracted.

Sources, tried in this order by :func:`find_meter`:

- ``rapl``: Linux powercap (``/sys/class/powercap/intel-rapl:N/energy_uj``; AMD Zen exposes the
  same files). A microjoule counter per package; wrap-around handled with ``max_energy_range_uj``.
- ``nvml``: NVIDIA GPUs through ``pynvml`` (total energy counter, millijoules).
- ``ina3221``: Jetson boards' INA3221 power monitor, either the hwmon layout
  (``/sys/class/hwmon/hwmonN/name`` = ``ina3221``, ``inK_input`` mV × ``currK_input`` mA, rail names
  in ``inK_label``) or the older iio layout (``/sys/bus/i2c/drivers/ina3221x/*/iio:device*/
  in_power*_input`` mW). The ``VDD_IN`` rail (whole board) is used when present, else the sum.
- ``csv``: an external meter's log, ``timestamp,watts`` (Unix seconds), aligned with the run's
  start/end by time and integrated with the trapezoid rule.

Every meter takes a ``root`` path (default ``/``) so tests build fixture sysfs trees.

Example:
    >>> meter, reason = find_meter(root="/nonexistent")
    >>> meter is None and "no energy sensor" in reason
    True
    >>> integrate_trapezoid([0.0, 1.0, 2.0], [10.0, 10.0, 20.0], 0.0, 2.0)
    25.0
"""

from __future__ import annotations

import csv
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgequant.errors import ValidationError


@dataclass(frozen=True, kw_only=True)
class EnergyResult:
    """Energy of a run with the idle baseline subtracted (units in the names)."""

    source: str
    joules_total: float  # gross energy over the run
    duration_s: float
    idle_power_w: float | None  # baseline measured before the run (None: not measured)
    avg_power_w: float  # gross average power over the run
    net_joules: float  # total - idle_power * duration (never below 0)
    inferences: int
    joules_per_inference: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def integrate_trapezoid(times: Any, watts: Any, t0: float, t1: float) -> float:
    """Joules between ``t0`` and ``t1`` from power samples, interpolating at the edges.

    Samples outside ``[t0, t1]`` are used only to interpolate the edge values; a window that the
    samples do not cover raises :class:`ValidationError` (a guess would not be a measurement).
    """
    t = np.asarray(times, np.float64)
    w = np.asarray(watts, np.float64)
    if t.size < 2 or t.shape != w.shape:
        raise ValidationError("need at least two (time, watts) samples to integrate energy")
    order = np.argsort(t, kind="stable")
    t, w = t[order], w[order]
    if t1 <= t0:
        raise ValidationError(f"empty time window [{t0}, {t1}]")
    if t0 < t[0] or t1 > t[-1]:
        raise ValidationError(
            f"power samples cover [{t[0]:.3f}, {t[-1]:.3f}] but the run spans [{t0:.3f}, {t1:.3f}]"
        )
    inside = (t > t0) & (t < t1)
    tt = np.concatenate([[t0], t[inside], [t1]])
    ww = np.concatenate([[np.interp(t0, t, w)], w[inside], [np.interp(t1, t, w)]])
    return float(np.sum((ww[1:] + ww[:-1]) * 0.5 * np.diff(tt)))


class EnergyMeter(ABC):
    """One energy source. ``start()`` then ``stop()`` gives the joules in between."""

    name: str = "meter"

    @abstractmethod
    def start(self) -> None:
        """Begin a measurement window."""

    @abstractmethod
    def stop(self) -> tuple[float, float]:
        """End the window; return ``(joules, seconds)``."""

    def measure(self, seconds: float) -> float:
        """Average watts over ``seconds`` of doing nothing (the idle baseline)."""
        self.start()
        time.sleep(seconds)
        joules, dur = self.stop()
        return joules / dur if dur > 0 else 0.0


class RaplMeter(EnergyMeter):
    """Linux powercap RAPL package counters (Intel and AMD), summed over packages."""

    name = "rapl"

    def __init__(self, root: Path | str = "/") -> None:
        base = Path(root) / "sys/class/powercap"
        # top-level zones only (intel-rapl:0, not the intel-rapl:0:0 sub-zones, which they include)
        self.zones = sorted(
            z
            for z in base.glob("intel-rapl:*")
            if z.name.count(":") == 1 and (z / "energy_uj").is_file()
        )
        if not self.zones:
            raise ValidationError(f"no RAPL zones under {base}")
        self._start: list[int] = []
        self._t0 = 0.0

    def _read(self) -> list[int]:
        try:
            return [int((z / "energy_uj").read_text().split()[0]) for z in self.zones]
        except (OSError, ValueError) as e:
            raise ValidationError(
                f"cannot read RAPL counters ({e}); reading them may need root"
            ) from None

    def _range(self, zone: Path) -> int:
        try:
            return int((zone / "max_energy_range_uj").read_text().split()[0])
        except (OSError, ValueError):
            return 2**32  # the architectural counter width when the range file is missing

    def start(self) -> None:
        self._start = self._read()
        self._t0 = time.monotonic()

    def stop(self) -> tuple[float, float]:
        end = self._read()
        dur = time.monotonic() - self._t0
        total_uj = 0
        for zone, a, b in zip(self.zones, self._start, end):
            # the counter wraps at max_energy_range_uj; one wrap per window is all a run can see
            total_uj += b - a if b >= a else b + self._range(zone) - a
        return total_uj * 1e-6, dur


class _SamplingMeter(EnergyMeter):
    """Meters that read instantaneous power: a thread samples it, trapezoid integration."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self._times: list[float] = []
        self._watts: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def read_watts(self) -> float:
        """Instantaneous power in watts."""

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._times.append(time.monotonic())
            self._watts.append(self.read_watts())

    def start(self) -> None:
        self._times = [time.monotonic()]
        self._watts = [self.read_watts()]
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"eq-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> tuple[float, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._times.append(time.monotonic())
        self._watts.append(self.read_watts())
        t0, t1 = self._times[0], self._times[-1]
        return integrate_trapezoid(self._times, self._watts, t0, t1), t1 - t0


class Ina3221Meter(_SamplingMeter):
    """Jetson INA3221 rails (hwmon or the older iio driver layout)."""

    name = "ina3221"

    def __init__(
        self, root: Path | str = "/", rail: str = "VDD_IN", interval_s: float = 0.05
    ) -> None:
        super().__init__(interval_s)
        r = Path(root)
        self._pairs: list[tuple[Path, Path]] = []  # (millivolts, milliamps)
        self._mw: list[Path] = []
        for hw in sorted((r / "sys/class/hwmon").glob("hwmon*")):
            name = hw / "name"
            if name.is_file() and name.read_text().strip() == "ina3221":
                chans = sorted(p.name[2:-6] for p in hw.glob("in*_input"))
                pairs = [
                    (hw / f"in{c}_input", hw / f"curr{c}_input", hw / f"in{c}_label") for c in chans
                ]
                pairs = [p for p in pairs if p[1].is_file()]
                labelled = [p for p in pairs if p[2].is_file() and p[2].read_text().strip() == rail]
                self._pairs += [(v, i) for v, i, _ in (labelled or pairs)]
        if not self._pairs:
            for dev in sorted((r / "sys/bus/i2c/drivers/ina3221x").glob("*/iio:device*")):
                powers = sorted(dev.glob("in_power*_input"))
                named = [p for p in powers if _rail_name(dev, p) == rail]
                self._mw += named or powers
        if not self._pairs and not self._mw:
            raise ValidationError(f"no INA3221 power monitor under {r}")

    def read_watts(self) -> float:
        try:
            w = sum(float(v.read_text()) * float(i.read_text()) * 1e-6 for v, i in self._pairs)
            return w + sum(float(p.read_text()) * 1e-3 for p in self._mw)
        except (OSError, ValueError) as e:
            raise ValidationError(f"cannot read INA3221 power ({e})") from None


def _rail_name(dev: Path, power_file: Path) -> str:
    """Rail name of an iio ``in_powerN_input`` file (``rail_name_N``), '' when there is none."""
    label = dev / power_file.name.replace("in_power", "rail_name_").replace("_input", "")
    return label.read_text().strip() if label.is_file() else ""


class NvmlMeter(EnergyMeter):
    """NVIDIA GPU energy through NVML's total-energy counter (needs ``pip install nvidia-ml-py``)."""

    name = "nvml"

    def __init__(self, index: int = 0) -> None:
        try:
            import pynvml  # type: ignore[import-not-found]

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except ImportError:
            raise ValidationError("pynvml is not installed (pip install nvidia-ml-py)") from None
        except Exception as e:  # NVMLError_* has no common importable base without pynvml
            raise ValidationError(f"NVML is not usable here ({e})") from None
        self._e0 = 0
        self._t0 = 0.0

    def start(self) -> None:
        self._e0 = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        self._t0 = time.monotonic()

    def stop(self) -> tuple[float, float]:
        e1 = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        return (e1 - self._e0) * 1e-3, time.monotonic() - self._t0


class CsvMeter(EnergyMeter):
    """An external meter's ``timestamp,watts`` log (Unix seconds), read after the run.

    The window is the wall-clock time between ``start()`` and ``stop()``; the file is read at
    ``stop()``, so a logger writing it while the run goes on works. A header line is allowed.
    """

    name = "csv"

    def __init__(self, path: Path | str, *, clock: Any = time.time) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ValidationError(f"power log {self.path} does not exist")
        self._clock = clock
        self._t0 = 0.0

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """All ``(timestamps, watts)`` rows of the file."""
        ts: list[float] = []
        ws: list[float] = []
        with self.path.open(newline="") as f:
            for n, row in enumerate(csv.reader(f)):
                if not row or row[0].strip().startswith("#"):
                    continue
                try:
                    ts.append(float(row[0]))
                    ws.append(float(row[1]))
                except (ValueError, IndexError):
                    if n == 0:
                        continue  # header
                    raise ValidationError(
                        f"{self.path}:{n + 1}: expected 'timestamp,watts', got {row}"
                    ) from None
        return np.asarray(ts), np.asarray(ws)

    def energy_between(self, t0: float, t1: float) -> float:
        t, w = self.read()
        return integrate_trapezoid(t, w, t0, t1)

    def start(self) -> None:
        self._t0 = float(self._clock())

    def stop(self) -> tuple[float, float]:
        t1 = float(self._clock())
        return self.energy_between(self._t0, t1), t1 - self._t0


def find_meter(
    root: Path | str = "/", *, csv_path: Path | str | None = None
) -> tuple[EnergyMeter | None, str | None]:
    """The first usable meter, or ``(None, reason)`` naming what was looked for."""
    if csv_path is not None:
        return CsvMeter(csv_path), None
    reasons: list[str] = []
    for make in (lambda: RaplMeter(root), lambda: Ina3221Meter(root), NvmlMeter):
        try:
            meter: EnergyMeter = make()
            if isinstance(meter, RaplMeter):
                meter.start()
                meter.stop()  # unreadable counters (root-only on recent kernels) count as absent
            return meter, None
        except ValidationError as e:
            reasons.append(str(e))
    return None, "no energy sensor: " + "; ".join(reasons)


class EnergySession:
    """Idle baseline, then the run: ``baseline()``, ``start()``, run, ``stop(inferences)``.

    Example:
        >>> es = EnergySession(None, reason="no sensor")
        >>> es.stop(10) is None
        True
    """

    def __init__(
        self, meter: EnergyMeter | None, *, reason: str | None = None, idle_s: float = 1.0
    ) -> None:
        self.meter = meter
        self.reason = reason
        self.idle_s = idle_s
        self.idle_power_w: float | None = None

    def baseline(self) -> None:
        """Measure idle power for ``idle_s`` seconds (skipped when ``idle_s`` is 0)."""
        if self.meter is not None and self.idle_s > 0:
            self.idle_power_w = self.meter.measure(self.idle_s)

    def start(self) -> None:
        if self.meter is not None:
            self.meter.start()

    def stop(self, inferences: int) -> EnergyResult | None:
        if self.meter is None:
            return None
        joules, dur = self.meter.stop()
        idle = self.idle_power_w
        net = max(0.0, joules - (idle or 0.0) * dur)
        return EnergyResult(
            source=self.meter.name,
            joules_total=joules,
            duration_s=dur,
            idle_power_w=idle,
            avg_power_w=joules / dur if dur > 0 else 0.0,
            net_joules=net,
            inferences=inferences,
            joules_per_inference=net / inferences if inferences > 0 else None,
        )
