"""Noise detection with a real CPU hog started and stopped by the test (no timing asserts)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from edgequant.measure.noise import NoiseMonitor, NoiseReport

pytest.importorskip("psutil")

HOG = "import time\nt = time.time()\nwhile time.time() - t < 30: pass\n"


def _busy_wait(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_run_beside_a_cpu_hog_is_flagged() -> None:
    from tests.helpers import cpu_hog

    with cpu_hog(30), NoiseMonitor(sample_s=0.2) as mon:
        _busy_wait(1.5)
    report = mon.report
    assert report is not None and report.noisy, report
    assert report.other_cpu_cores is not None and report.other_cpu_cores > 0.5
    assert "other processes used" in report.summary()
    d = report.to_dict()
    assert d["noisy"] is True and d["source"] == "psutil" and d["reasons"]


def test_own_children_are_not_counted_as_others() -> None:
    """Work done by the monitored process's own child is the run, not noise."""
    burn = HOG.replace("30", "1.0") + "print(time.process_time())\n"
    with NoiseMonitor(sample_s=0.2) as mon:
        out = subprocess.run([sys.executable, "-c", burn], capture_output=True, text=True)
    child_cpu_s = float(out.stdout.strip())
    report = mon.report
    assert report is not None and report.own_cpu_s is not None
    # the reaped child's CPU time is the run's own, not another process's
    assert report.own_cpu_s >= 0.9 * child_cpu_s, (report, child_cpu_s)


def test_thresholds_decide_the_verdict() -> None:
    mon = NoiseMonitor(thresholds={"other_cpu_cores": 0.0, "steal_pct": 100.0})
    with mon:
        _busy_wait(0.2)
    assert mon.report is not None
    r = mon._verdict(1.0, 0.3, 12.0, 2000.0, 3000.0, 33.3, 2)
    assert r.noisy and len(r.reasons) == 3  # others, clock drop, throttling (steal under 100%)


def test_unavailable_report_is_never_flagged() -> None:
    r = NoiseReport.unavailable("psutil is not installed")
    assert not r.noisy and r.to_dict()["source"].startswith("unavailable")
