"""Latency statistics, memory, size and environment meters on fixed inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgequant.errors import ValidationError
from edgequant.measure.environment import cpu_info, environment_info
from edgequant.measure.latency import Latency
from edgequant.measure.memory import current_rss_bytes, peak_rss_bytes
from edgequant.measure.size import artifact_sizes


def test_latency_from_values_units() -> None:
    lat = Latency.from_values(np.arange(1, 101) * 1e6, unit="ns")  # 1..100 ms
    assert lat.count == 100
    assert lat.mean_ms == pytest.approx(50.5)
    assert lat.p50_ms == pytest.approx(50.5)
    assert lat.p90_ms == pytest.approx(90.1)
    assert lat.p99_ms == pytest.approx(99.01)
    assert lat.min_ms == 1 and lat.max_ms == 100
    assert Latency.from_values([0.002], unit="s").p99_ms == pytest.approx(2.0)
    assert set(lat.to_dict()) >= {"mean", "p50", "p90", "p99"}
    with pytest.raises(ValidationError):
        Latency.from_values([])
    with pytest.raises(ValidationError):
        Latency.from_values([1.0], unit="hours")
    with pytest.raises(ValidationError):
        Latency.from_values([float("nan")])


def test_peak_rss_grows_with_a_big_allocation() -> None:
    before = peak_rss_bytes()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB touched
    after = peak_rss_bytes()
    assert after >= before and after >= block.nbytes
    current = current_rss_bytes()
    assert current is None or current > block.nbytes  # the block is resident now


def test_artifact_sizes() -> None:
    assert artifact_sizes({"size_bytes": 10, "weight_bytes": 4}) == (10, 4)
    assert artifact_sizes({"size_bytes": 10}, size_bytes=12) == (12, None)


def test_cpu_info_from_fixture_cpuinfo(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    core = "model name\t: Test CPU 9000\nflags\t\t: fpu sse avx2 avx512f avx512_vnni amx_int8\nphysical id\t: 0\ncore id\t\t: {}\n\n"
    (tmp_path / "proc/cpuinfo").write_text(core.format(0) + core.format(1) + core.format(1))
    info = cpu_info(tmp_path)
    assert info["cpu"] == "Test CPU 9000"
    assert info["cpu_flags"] == ["avx2", "avx512f", "avx512_vnni", "amx_int8"]
    assert info["physical_cores"] == 2
    env = environment_info({"openvino": "2026.4"}, root=tmp_path)
    assert env["runtime_versions"]["openvino"] == "2026.4"
    assert {"python", "os", "edgequant_version", "date"} <= set(env)


def test_artifact_disk_bytes(tmp_path: Path) -> None:
    from edgequant.measure.size import artifact_disk_bytes

    (tmp_path / "model.xml").write_bytes(b"x" * 10)
    (tmp_path / "model.bin").write_bytes(b"x" * 100)
    (tmp_path / "artifact.json").write_text("{}")
    (tmp_path / "other.txt").write_text("unrelated")
    assert artifact_disk_bytes(tmp_path / "model.xml") == 110
    assert artifact_disk_bytes(tmp_path) == 110 + len("unrelated")
