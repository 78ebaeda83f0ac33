"""run_benchmark end to end on a small zoo model with a real runtime; status na/failed; Ctrl-C."""

from __future__ import annotations

import os
import signal
import threading
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
    timer = threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    out = run_scenario(
        MatmulSession((3, 4, 4), delay_s=0.001),
        qsl,
        BenchSettings(scenario="SingleStream", duration_s=5),
        tmp_path,
        warmup_s=0.05,
    )
    timer.join()
    assert out.interrupted and not out.result.valid
    assert "interrupted" in out.result.reasons[0]
    assert out.seconds < 4 and not out.abandoned  # LoadGen wound down instead of running 5 s
