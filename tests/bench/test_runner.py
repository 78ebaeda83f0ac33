"""run_benchmark end to end on a small zoo model with a real runtime; status na/failed; Ctrl-C."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgequant.bench.harness import run_scenario
from edgequant.bench.qsl import SampleLibrary
from edgequant.bench.runner import BenchConfig, run_benchmark
from edgequant.bench.settings import BenchSettings
from edgequant.errors import DatasetError, ValidationError
from edgequant.results.record import ResultRecord
from tests.bench.sessions import MatmulSession

pytest.importorskip("mlperf_loadgen")
pytest.importorskip("onnxruntime")

FAST = {"duration_s": 0.5, "warmup_s": 0.1, "idle_s": 0.0}


def test_bench_with_accuracy_matches_direct_fp32(tmp_path: Path) -> None:
    import torch

    from edgequant.data import open_dataset
    from edgequant.measure.accuracy import topk_accuracy
    from edgequant.models.loader import load_model

    cfg = BenchConfig(
        model="digits_cnn",
        backend="onnxruntime",
        scheme="fp32",
        scenario="Offline",
        data="digits",
        count=48,
        accuracy=True,
        run_dir=tmp_path / "run",
        **FAST,
    )
    rec = run_benchmark(cfg)
    assert rec.status == "ok", rec.reason
    assert rec.valid and rec.loadgen is not None and rec.loadgen["valid"] is True
    assert rec.throughput_ips and rec.throughput_ips > 0
    assert rec.latency_ms and {"mean", "p50", "p90", "p99"} <= set(rec.latency_ms)
    assert rec.size_bytes and rec.size_bytes > 0 and rec.peak_rss_bytes
    assert rec.energy is None and rec.energy_unavailable_reason  # no sensor on this VM
    assert Path(rec.loadgen["log_dir"], "mlperf_log_detail.txt").is_file()
    # same samples, same preprocessing as a direct fp32 evaluation
    model = load_model("digits_cnn")
    ds = open_dataset("digits", model.input_spec, split="test", limit=48)
    assert model.module is not None
    with torch.inference_mode():
        logits = model.module(torch.from_numpy(ds.load_all())).numpy()
    assert rec.accuracy is not None and rec.accuracy["samples"] == 48
    assert rec.accuracy["top1_pct"] == pytest.approx(topk_accuracy(logits, ds.labels, 1))
    assert rec.accuracy["top5_pct"] == pytest.approx(topk_accuracy(logits, ds.labels, 5))
    assert rec.accuracy["agreement_with_fp32_pct"] == 100.0
    saved = ResultRecord.load(tmp_path / "run")
    assert saved.throughput_ips == rec.throughput_ips and saved.schema == "edgequant.result/1"


def test_unsupported_scheme_is_na(tmp_path: Path) -> None:
    rec = run_benchmark(
        BenchConfig(
            model="digits_cnn",
            backend="onnxruntime",
            scheme="bf16",
            scenario="SingleStream",
            run_dir=tmp_path,
            **FAST,
        )
    )
    assert rec.status == "na" and rec.reason and "bfloat16" in rec.reason
    assert not rec.valid and (tmp_path / "result.json").is_file()


def test_short_dataset_needs_permission(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="allow-short"):
        run_benchmark(
            BenchConfig(
                model="digits_cnn",
                backend="onnxruntime",
                data="synthetic:8",
                count=20,
                scenario="SingleStream",
                run_dir=tmp_path,
                **FAST,
            )
        )
    rec = run_benchmark(
        BenchConfig(
            model="digits_cnn",
            backend="onnxruntime",
            data="synthetic:8",
            count=20,
            allow_short_dataset=True,
            scenario="SingleStream",
            run_dir=tmp_path,
            **FAST,
        )
    )
    assert rec.status == "ok" and rec.dataset.startswith("synthetic")


def test_config_errors() -> None:
    with pytest.raises(ValidationError, match="did you mean Offline"):
        BenchConfig(model="m", backend="b", scenario="Ofline")
    with pytest.raises(ValidationError, match="--model and --backend"):
        BenchConfig(scenario="Offline")


def test_ctrl_c_marks_the_run_interrupted(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((16, 3, 4, 4)).astype(np.float32)
    qsl = SampleLibrary(lambda idx: x[list(idx)], total=16)
    # Ctrl-C on LoadGen's 20th query, whatever the machine's speed
    session = MatmulSession((3, 4, 4), delay_s=0.001, interrupt_after=20)
    out = run_scenario(
        session,
        qsl,
        BenchSettings(scenario="SingleStream", duration_s=5),
        tmp_path,
        warmup_s=0.05,
        on_start=session.arm,
    )
    assert out.interrupted and not out.result.valid
    assert "interrupted" in out.result.reasons[0]
    # LoadGen wound down (its thread finished within the grace period) ...
    assert not out.abandoned
    # ... because the SUT stopped running the model and answered the rest of the 5 s schedule
    # empty: only the queries before the Ctrl-C (and the few in flight) got a real result,
    # where running on would have answered thousands (1 ms each for 5 s)
    assert 20 <= out.samples_completed < 1000


def test_interrupted_run_records_no_throughput(tmp_path: Path) -> None:
    from edgequant.bench.measurement import fill_perf

    x = np.random.default_rng(0).standard_normal((16, 3, 4, 4)).astype(np.float32)
    qsl = SampleLibrary(lambda idx: x[list(idx)], total=16)
    session = MatmulSession((3, 4, 4), delay_s=0.001, interrupt_after=20)
    settings = BenchSettings(scenario="SingleStream", duration_s=5)
    out = run_scenario(session, qsl, settings, tmp_path, warmup_s=0.05, on_start=session.arm)
    assert out.interrupted
    # LoadGen's partial log still yields a rate (a few queries over a short span) ...
    assert out.result.throughput_ips is not None
    rec = ResultRecord(
        model="m",
        backend="b",
        scheme="fp32",
        scenario="SingleStream",
        dataset="d",
        threads=1,
        batch_size=1,
    )
    fill_perf(rec, settings, out)
    # ... which is no measurement of the run: recorded as null, and the run is not valid
    assert rec.throughput_ips is None
    assert rec.loadgen is not None and rec.loadgen["partial"] and not rec.loadgen["valid"]
