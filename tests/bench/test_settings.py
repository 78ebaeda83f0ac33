"""Scenario names, quick vs official settings, user.conf."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgequant.bench.settings import SERVER_BOUND, SERVER_LOAD, BenchSettings, scenario_name
from edgequant.errors import ValidationError


def test_scenario_names_and_suggestions() -> None:
    assert scenario_name("singlestream") == "SingleStream"
    assert scenario_name("multi-stream") == "MultiStream"
    with pytest.raises(ValidationError, match="did you mean SingleStream"):
        scenario_name("SingelStream")
    with pytest.raises(ValidationError, match="valid: SingleStream, MultiStream, Offline, Server"):
        scenario_name("batch")


def test_quick_and_official_settings() -> None:
    lg = pytest.importorskip("mlperf_loadgen")
    quick = BenchSettings(scenario="MultiStream", duration_s=3).test_settings(
        accuracy=False, expected_latency_s=0.01, expected_qps=800, samples=64
    )
    assert quick.min_duration_ms == 3000
    assert quick.multi_stream_samples_per_query == 8
    assert quick.multi_stream_target_latency_percentile == pytest.approx(0.9)
    assert quick.mode == lg.TestMode.PerformanceOnly
    official = BenchSettings(scenario="MultiStream", mlperf=True).test_settings(
        accuracy=True, expected_latency_s=0.01, expected_qps=800, samples=64
    )
    assert official.min_duration_ms == 600_000
    assert official.min_query_count == 662
    assert official.multi_stream_target_latency_percentile == pytest.approx(0.99)
    assert official.mode == lg.TestMode.AccuracyOnly
    server = BenchSettings(
        scenario="Server", mlperf=True, target_qps=50, target_latency_ms=20
    ).test_settings(accuracy=False, expected_latency_s=0.01, expected_qps=100, samples=64)
    assert server.server_target_qps == 50 and server.server_target_latency_ns == 20_000_000
    assert server.server_target_latency_percentile == pytest.approx(0.99)
    offline = BenchSettings(scenario="Offline").test_settings(
        accuracy=False, expected_latency_s=0.01, expected_qps=100, samples=64
    )
    assert offline.offline_expected_qps > 100  # over-estimated so the one query lasts long enough


def test_server_default_load_follows_the_typical_latency() -> None:
    # the fastest warm-up run sizes LoadGen's schedules; the Server's default arrival rate and
    # bound come from the median, or a noisy machine's fast outlier overloads the run
    pytest.importorskip("mlperf_loadgen")
    quick = BenchSettings(scenario="Server")
    fast = quick.test_settings(
        accuracy=False, expected_latency_s=0.003, expected_qps=300, samples=64
    )
    typical = quick.test_settings(
        accuracy=False,
        expected_latency_s=0.003,
        expected_qps=300,
        samples=64,
        typical_latency_s=0.0095,
    )
    assert typical.server_target_qps == pytest.approx(SERVER_LOAD / (0.0095 + 0.0005))
    assert typical.server_target_qps < fast.server_target_qps
    assert typical.server_target_latency_ns == pytest.approx(SERVER_BOUND * 0.0095 * 1e9)
    assert fast.server_target_latency_ns == 15_000_000  # MLPerf's 15 ms floor


def test_user_conf_wins(tmp_path: Path) -> None:
    pytest.importorskip("mlperf_loadgen")
    conf = tmp_path / "user.conf"
    conf.write_text("*.Offline.min_duration = 1234\ntinynet.Offline.target_qps = 77\n")
    ts = BenchSettings(scenario="Offline", user_conf=conf, model_name="tinynet").test_settings(
        accuracy=False, expected_latency_s=0.01, expected_qps=500, samples=64
    )
    assert ts.min_duration_ms == 1234
    assert ts.offline_expected_qps == 77


def test_bad_settings() -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        BenchSettings(scenario="Offline", user_conf=Path("/nonexistent/user.conf"))
    with pytest.raises(ValidationError):
        BenchSettings(scenario="Server", target_qps=0)
