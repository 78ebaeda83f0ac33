"""benchmark() and evaluate(): the Python functions behind `edgequant bench` and `edgequant eval`."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgequant.bench.api import benchmark
from edgequant.bench.evaluate import evaluate, reference_backend
from edgequant.errors import ValidationError
from edgequant.results.record import ResultRecord

FAST = {"warmup_s": 0.1, "idle_s": 0.0, "progress": False}


def test_benchmark_a_model_object_calibrated_on_an_array(
    tiny_model, tiny_calibration, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("mlperf_loadgen")
    pytest.importorskip("onnxruntime")
    rec = benchmark(
        tiny_model,
        backend="onnxruntime",
        scheme="w8a8",
        scenario="SingleStream",
        calib=tiny_calibration,
        duration_s=0.5,
        threads=1,
        output=tmp_path / "run",
        **FAST,
    )
    assert rec.status == "ok", rec.reason
    assert rec.model == tiny_model.name and rec.threads == 1 and rec.scheme == "w8a8"
    assert rec.artifact_metadata and rec.artifact_metadata["calibration_samples"] == len(
        tiny_calibration
    )
    assert rec.extra["config"]["extra"]["calibration"] == f"array {tiny_calibration.shape}"
    # the array, not synthetic data, calibrated it: no synthetic-calibration note
    assert not any("synthetic" in w for w in rec.extra["warnings"])
    assert ResultRecord.load(tmp_path / "run").scheme == "w8a8"


def test_benchmark_without_output_writes_a_temporary_run_dir() -> None:
    pytest.importorskip("onnxruntime")
    rec = benchmark("digits_cnn", backend="onnxruntime", scheme="bf16", **FAST)
    assert rec.status == "na"
    assert rec.loadgen is None
    run_dir = Path(rec.extra["config"]["run_dir"])
    assert run_dir.name.startswith("edgequant-bench-") and (run_dir / "result.json").is_file()


def test_benchmark_option_errors() -> None:
    with pytest.raises(ValidationError, match=r"unknown option.*batch"):
        benchmark("digits_cnn", backend="onnxruntime", batch=4)
    with pytest.raises(ValidationError, match="--model and --backend"):
        benchmark("digits_cnn")


def test_evaluate_a_model_object() -> None:
    from edgequant.models import load_model

    m = load_model("digits_cnn")
    doc = evaluate(m, "digits", limit=32, progress=False)
    assert doc["samples"] == 32 and doc["model"] == "digits_cnn" and doc["scheme"] == "fp32"
    assert doc["backend"] == reference_backend(m)
    assert 0 <= doc["top1_pct"] <= doc["top5_pct"] <= 100
