"""The roofline: measured through ONNX Runtime's own GEMM kernels, cached per CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgequant.measure.roofline import Roofline, achieved_gops, measure_roofline, roofline


def test_achieved_gops_counts_two_ops_per_mac() -> None:
    assert achieved_gops(macs_per_sample=1e9, throughput_ips=10.0) == 20.0


def test_peak_follows_precision() -> None:
    r = Roofline(cpu="x", int8_class="avx2", threads=2, fp32_gops=100.0, int8_gops=160.0)
    assert r.peak("i8") == r.peak("int8") == r.peak("w8a8") == 160.0
    assert r.peak("f32") == r.peak("fp16") == r.peak("bf16") == 100.0
    assert r.int8_over_fp32 == 1.6 and r.percent_of_peak(80.0, "int8") == 50.0


def test_measure_and_cache(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    measured = measure_roofline(1, seconds=0.05, n=256)
    assert measured.fp32_gops > 0 and measured.int8_gops > 0 and measured.threads == 1
    # a cached quiet figure is returned as it was, without measuring again
    fake = Roofline(cpu="cached", int8_class="avx2", threads=1, fp32_gops=1.0, int8_gops=2.0)
    r = roofline(1, cache_dir=tmp_path)  # measures (and caches it if the machine was quiet)
    files = list((tmp_path / "roofline").glob("*.json"))
    if r.noise == "quiet":
        assert len(files) == 1
        files[0].write_text(json.dumps(fake.to_dict()))
        assert roofline(1, cache_dir=tmp_path) == fake
        # a corrupt cache file costs a new measurement, not an error
        files[0].write_text("{not json")
        assert roofline(1, cache_dir=tmp_path).cpu != "cached"
    else:
        assert files == []  # noisy measurements are never cached
