"""Every energy meter against fixture sysfs trees and CSV files built here."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edgequant.errors import ValidationError
from edgequant.measure.energy import (
    CsvMeter,
    EnergySession,
    Ina3221Meter,
    RaplMeter,
    find_meter,
    integrate_trapezoid,
)


def _rapl(root: Path, zones: dict[str, tuple[int, int]]) -> Path:
    base = root / "sys/class/powercap"
    for name, (energy, rng) in zones.items():
        z = base / name
        z.mkdir(parents=True, exist_ok=True)
        (z / "energy_uj").write_text(f"{energy}\n")
        (z / "max_energy_range_uj").write_text(f"{rng}\n")
        (z / "name").write_text("package-0\n")
    return base


def test_trapezoid_on_fixed_arrays() -> None:
    assert integrate_trapezoid([0, 1, 2, 3], [10, 10, 10, 10], 0, 3) == pytest.approx(30.0)
    # ramp 0..20 W over 2 s = 20 J; window [0.5, 1.5] of it = 10 J (edges interpolated)
    assert integrate_trapezoid([0, 2], [0, 20], 0, 2) == pytest.approx(20.0)
    assert integrate_trapezoid([0, 2], [0, 20], 0.5, 1.5) == pytest.approx(10.0)
    # unsorted input is sorted first
    assert integrate_trapezoid([2, 0, 1], [20, 0, 10], 0, 2) == pytest.approx(20.0)
    with pytest.raises(ValidationError, match="cover"):
        integrate_trapezoid([0, 1], [5, 5], 0, 2)


def test_rapl_counts_and_wraps_around(tmp_path: Path) -> None:
    base = _rapl(
        tmp_path,
        {
            "intel-rapl:0": (1_000_000, 10_000_000),
            "intel-rapl:1": (9_500_000, 10_000_000),
            "intel-rapl:0:0": (5, 10_000_000),
        },
    )
    meter = RaplMeter(tmp_path)
    assert [z.name for z in meter.zones] == [
        "intel-rapl:0",
        "intel-rapl:1",
    ]  # sub-zones not double counted
    meter.start()
    (base / "intel-rapl:0/energy_uj").write_text("3000000\n")  # +2 J
    (base / "intel-rapl:1/energy_uj").write_text("500000\n")  # wrapped: +0.5 + 0.5 = +1 J
    joules, seconds = meter.stop()
    assert joules == pytest.approx(3.0)
    assert seconds >= 0


def test_idle_baseline_is_subtracted(tmp_path: Path) -> None:
    base = _rapl(tmp_path, {"intel-rapl:0": (0, 2**40)})
    meter = RaplMeter(tmp_path)
    es = EnergySession(meter, idle_s=0)
    es.idle_power_w = 5.0  # as if measured: 5 W idle
    es.start()
    time.sleep(0.2)
    (base / "intel-rapl:0/energy_uj").write_text(f"{int(4e6)}\n")  # 4 J during the run
    res = es.stop(inferences=100)
    assert res is not None
    assert res.source == "rapl" and res.joules_total == pytest.approx(4.0)
    assert res.net_joules == pytest.approx(4.0 - 5.0 * res.duration_s)
    assert res.joules_per_inference == pytest.approx(res.net_joules / 100)
    assert res.avg_power_w == pytest.approx(4.0 / res.duration_s)


def test_idle_measurement_uses_the_meter(tmp_path: Path) -> None:
    class Fixed(CsvMeter):
        pass

    now = time.time()
    csv = tmp_path / "power.csv"
    csv.write_text(
        "timestamp,watts\n" + "".join(f"{now - 5 + 0.5 * i:.3f},7.0\n" for i in range(40))
    )
    es = EnergySession(Fixed(csv), idle_s=0.2)
    es.baseline()
    assert es.idle_power_w == pytest.approx(7.0)


def test_csv_meter_aligns_by_time(tmp_path: Path) -> None:
    csv = tmp_path / "power.csv"
    # 100 W before the run, 10 W during [1000, 1010], 100 W after: only the run's window counts
    rows = (
        [(990 + i, 100.0) for i in range(10)]
        + [(1000 + i, 10.0) for i in range(11)]
        + [(1011 + i, 100.0) for i in range(5)]
    )
    csv.write_text("timestamp,watts\n" + "".join(f"{t},{w}\n" for t, w in rows))
    clock = iter([1000.0, 1010.0])
    meter = CsvMeter(csv, clock=lambda: next(clock))
    meter.start()
    joules, seconds = meter.stop()
    assert seconds == 10.0 and joules == pytest.approx(100.0)
    assert meter.energy_between(999.5, 1000.5) == pytest.approx(
        0.5 * (55 + 10) / 2 + 0.5 * 10, rel=1e-6
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,watts\n1,2\nnot,a number\n")
    with pytest.raises(ValidationError, match=r"bad\.csv:3"):
        CsvMeter(bad).read()


def test_ina3221_hwmon_layout(tmp_path: Path) -> None:
    hw = tmp_path / "sys/class/hwmon/hwmon3"
    hw.mkdir(parents=True)
    (hw / "name").write_text("ina3221\n")
    for ch, (label, mv, ma) in enumerate(
        [("VDD_IN", 5000, 1200), ("VDD_CPU_GPU_CV", 5000, 400)], start=1
    ):
        (hw / f"in{ch}_label").write_text(label + "\n")
        (hw / f"in{ch}_input").write_text(f"{mv}\n")
        (hw / f"curr{ch}_input").write_text(f"{ma}\n")
    meter = Ina3221Meter(tmp_path, interval_s=0.01)
    assert meter.read_watts() == pytest.approx(6.0)  # VDD_IN only: 5 V x 1.2 A
    meter.start()
    time.sleep(0.1)
    joules, seconds = meter.stop()
    assert joules == pytest.approx(6.0 * seconds, rel=1e-6)
    assert Ina3221Meter(tmp_path, rail="none").read_watts() == pytest.approx(
        8.0
    )  # no such rail: sum


def test_ina3221_iio_layout(tmp_path: Path) -> None:
    dev = tmp_path / "sys/bus/i2c/drivers/ina3221x/1-0040/iio:device0"
    dev.mkdir(parents=True)
    for ch, (rail, mw) in enumerate([("VDD_IN", 4500), ("VDD_GPU", 1000), ("VDD_CPU", 800)]):
        (dev / f"rail_name_{ch}").write_text(rail + "\n")
        (dev / f"in_power{ch}_input").write_text(f"{mw}\n")
    assert Ina3221Meter(tmp_path).read_watts() == pytest.approx(4.5)


def test_no_sensor_gives_null_and_reason(tmp_path: Path) -> None:
    meter, reason = find_meter(tmp_path)
    assert meter is None
    assert reason is not None and "no energy sensor" in reason and "RAPL" in reason
    es = EnergySession(meter, reason=reason)
    es.baseline()
    es.start()
    assert es.stop(10) is None


def test_find_meter_prefers_rapl(tmp_path: Path) -> None:
    _rapl(tmp_path, {"intel-rapl:0": (1, 2**32)})
    meter, reason = find_meter(tmp_path)
    assert isinstance(meter, RaplMeter) and reason is None
    assert np.isfinite(meter.measure(0.01))
