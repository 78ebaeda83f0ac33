"""A bench of a user's model (a ``module:factory`` the test writes): the record carries the
conversion check (``model_source``), and accuracy mode without labels or class logits reports
the output-by-output agreement with fp32 (``accuracy["reference"]``: SQNR, cosine)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgequant.bench.runner import BenchConfig, run_benchmark

pytest.importorskip("mlperf_loadgen")
pytest.importorskip("onnxruntime")

FAST = {"duration_s": 0.3, "warmup_s": 0.05, "idle_s": 0.0, "roofline": False}

_NETS = """\
import torch
import torch.nn as nn


def dense():
    # a feature map out (N, 4, 8, 8): no class axis
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1)).eval()


def classifier():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 6),
    ).eval()
"""


@pytest.fixture
def user_nets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    (tmp_path / "eq_bench_nets.py").write_text(_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("eq_bench_nets", None)


def _bench(tmp_path: Path, factory: str, scheme: str, name: str, **kw: object):  # type: ignore[no-untyped-def]
    from edgequant.models.loader import load_model

    model = load_model(f"eq_bench_nets:{factory}", input_options={"input_shape": "3,8,8"})
    cfg = BenchConfig(
        model=f"eq_bench_nets:{factory}",
        backend="onnxruntime",
        scheme=scheme,
        scenario="Offline",
        data="synthetic",
        count=32,
        run_dir=tmp_path / name,
        cache_dir=tmp_path / "cache",
        progress=False,
        **FAST,
        **kw,  # type: ignore[arg-type]
    )
    return run_benchmark(cfg, model=model)


def test_bench_of_a_user_model_records_the_conversion_check(
    tmp_path: Path, user_nets: None
) -> None:
    rec = _bench(tmp_path, "classifier", "w8a8", "w8a8")
    assert rec.status == "ok", rec.reason
    src = rec.model_source
    assert src is not None and src["format"] == "factory"
    check = src["check"]
    assert check["reference"] == "the eager PyTorch module"
    assert check["against"] == "fp32 onnxruntime artifact" and check["samples"] == 16
    assert check["faithful"] and check["cosine_min"] > 0.999 and check["sqnr_db"] > 40
    # kept in the cached artifact: the next bench finds it there, and the saved record has it
    from edgequant.results.record import ResultRecord

    assert rec.artifact_metadata["model_source"] == src
    assert ResultRecord.load(tmp_path / "w8a8" / "result.json").model_source == src


def test_accuracy_without_labels_on_a_dense_output(tmp_path: Path, user_nets: None) -> None:
    fp32 = _bench(tmp_path, "dense", "fp32", "fp32", accuracy=True)
    assert fp32.status == "ok", fp32.reason
    acc = fp32.accuracy
    assert acc is not None and acc["samples"] == 32
    ref = acc["reference"]
    # fp32 ONNX Runtime against the eager module: the same numbers up to rounding
    assert ref["samples"] == 32 and ref["cosine"] > 0.99999 and ref["sqnr_db"] > 80
    assert ref["class_like"] is False and ref["top1_agreement_pct"] is None
    assert ref["margins"] is None  # no class axis: no top-1 margins
    # no labels, no class axis: no top-k figures of a feature map
    assert (acc["top1_pct"], acc["top5_pct"], acc["agreement_with_fp32_pct"]) == (None,) * 3

    w8 = _bench(tmp_path, "dense", "w8a8", "w8a8", accuracy=True)
    assert w8.status == "ok", w8.reason
    q = w8.accuracy["reference"]  # type: ignore[index]
    assert np.isfinite(q["sqnr_db"]) and 10 < q["sqnr_db"] < ref["sqnr_db"]
    assert 0.9 < q["cosine"] < 1.0 and q["cosine_min"] <= q["cosine"]


def test_accuracy_without_labels_on_class_logits(tmp_path: Path, user_nets: None) -> None:
    rec = _bench(tmp_path, "classifier", "w8a8", "acc", accuracy=True)
    assert rec.status == "ok", rec.reason
    acc = rec.accuracy
    assert acc is not None and acc["top1_pct"] is None and acc["top5_pct"] is None
    ref = acc["reference"]
    assert ref["class_like"] is True and 50.0 <= ref["top1_agreement_pct"] <= 100.0
    # the same samples, the same top-1: LoadGen's agreement and the direct one agree
    assert acc["agreement_with_fp32_pct"] == pytest.approx(ref["top1_agreement_pct"], abs=0.01)
    assert ref["sqnr_db"] > 10 and ref["cosine"] > 0.9
    lo, hi = acc["agreement_ci95_pct"]
    assert lo <= acc["agreement_with_fp32_pct"] <= hi and hi - lo > 0
    # the changed top-1s, counted from the outputs themselves, match the agreement
    m = ref["margins"]
    changed = round((100 - ref["top1_agreement_pct"]) * ref["samples"] / 100)
    assert m["samples"] == ref["samples"] and m["disagreements"] == changed
    assert 0 <= m["within_noise"] <= changed and m["margin_noise_sd"] > 0
    assert "drop_vs_fp32_pts" not in acc  # no labels: no drop
