"""Every LoadGen run records its noise verdict, the CPU and the roofline figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgequant.bench.evidence import RunWatch
from edgequant.report.run_summary import run_summary

HOG = "import time\nt = time.time()\nwhile time.time() - t < 60: pass\n"


def test_run_watch_covers_every_start_and_reports_once() -> None:
    starts: list[int] = []
    watch = RunWatch(lambda: starts.append(1))
    assert watch.stop() is None  # LoadGen never started: nothing to report
    watch.start()
    watch.start()  # a retried LoadGen run: the same watch goes on
    report = watch.stop()
    assert report is not None and len(starts) == 2
    assert watch.stop() is None


@pytest.mark.slow
def test_a_benchmark_beside_a_cpu_hog_is_flagged_noisy(tmp_path: Path) -> None:
    pytest.importorskip("mlperf_loadgen")
    pytest.importorskip("psutil")
    from edgequant.backends import get_backend
    from edgequant.bench.api import benchmark

    runtime = "onnxruntime"
    if get_backend(runtime).unavailable_reason():
        pytest.skip(get_backend(runtime).unavailable_reason())
    from tests.helpers import cpu_hog

    with cpu_hog(60):
        rec = benchmark(
            "digits_cnn",
            backend=runtime,
            scheme="w8a8",
            scenario="SingleStream",
            data="digits",
            count=32,
            duration_s=1.0,
            output=tmp_path,
            progress=False,
        )
    assert rec.status == "ok", rec.reason
    stored = json.loads((tmp_path / "result.json").read_text())
    assert stored["noise"]["noisy"] is True
    assert "other processes used" in stored["noise"]["summary"]
    assert stored["device"] == "local"
    assert stored["cpu_profile"]["int8_class"] == rec.cpu_profile["int8_class"]  # type: ignore[index]
    assert "NOISY RUN" in run_summary(rec)
    # the roofline: a w8a8 model is compared with the int8 peak, from counted MACs
    rl = stored["roofline"]
    assert rl["precision"] == "int8" and rl["macs_per_sample"] > 0
    assert rl["achieved_gops"] > 0
    if rl["peak"] is not None:
        assert rl["peak_gops"] == rl["peak"]["int8_gops"]
        assert rl["pct_of_peak"] == pytest.approx(100 * rl["achieved_gops"] / rl["peak_gops"], 0.01)
    else:
        assert rl["reason"]
