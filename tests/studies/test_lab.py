"""Lab studies: sensitivity, mixed precision, INT4 granularities, result records on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgequant.cli import main
from edgequant.quant.scheme import get_scheme
from edgequant.quant.sensitivity import layer_sensitivity, mixed_precision
from edgequant.quant.simulate import quantize_module
from edgequant.results.record import ResultRecord
from edgequant.studies import lab
from tests.helpers import make_tiny_model, tiny_inputs


def test_lab_scheme_shorthand() -> None:
    assert lab.lab_scheme("w4-b16").weights.block_size == 16  # type: ignore[union-attr]
    assert lab.lab_scheme("w4-b16").activations is None
    assert lab.lab_scheme("w6a8-pt").weights.granularity == "tensor"  # type: ignore[union-attr]
    assert lab.lab_scheme("w8a8") == get_scheme("w8a8")


def test_sensitivity_and_mixed_precision() -> None:
    m = make_tiny_model()
    calib = tiny_inputs(m, 32, seed=1)
    x = tiny_inputs(m, 64, seed=4)
    scheme = lab.lab_scheme("w3a8")
    rows = layer_sensitivity(m.module, scheme, calib, x)
    assert [r.sqnr_db for r in rows] == sorted(r.sqnr_db for r in rows)
    assert {r.name for r in rows} == {"conv1", "dw", "pw", "conv3", "fc"}
    ref = lab.logits(m.module, x)

    def err(module: torch.nn.Module) -> float:
        return float(np.linalg.norm(lab.logits(module, x) - ref))

    full = err(quantize_module(m.module, scheme, calib))
    keep2 = err(mixed_precision(m.module, scheme, calib, [r.name for r in rows[:2]]))
    keep_all = err(mixed_precision(m.module, scheme, calib, [r.name for r in rows]))
    assert keep2 < full  # keeping the most sensitive layers in float helps
    assert keep_all < 0.2 * full  # only the graph input and adds remain quantized


def test_int4_per_block_beats_per_channel() -> None:
    m = make_tiny_model()
    x = tiny_inputs(m, 64, seed=4)
    ref = lab.logits(m.module, x)
    errs = {
        s: float(
            np.linalg.norm(lab.logits(quantize_module(m.module, lab.lab_scheme(s), None), x) - ref)
        )
        for s in ("w4-pt", "w4-only", "w4-b4")
    }
    assert errs["w4-b4"] < errs["w4-only"] < errs["w4-pt"]


def test_lab_cli_writes_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "lab",
            "ptq",
            "--model",
            "digits_cnn",
            "--data",
            "digits",
            "--limit",
            "60",
            "--calib-samples",
            "32",
            "--schemes",
            "w8a8,w4-only",
            "--calibrators",
            "minmax,entropy",
            "--techniques",
            "none,cle+bias_correction",
            "-o",
            str(tmp_path),
            "--json",
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    labels = [r["scheme"] for r in doc["results"]]
    assert (
        labels[0] == "fp32" and "w8a8:entropy+cle+bias_correction" in labels and "w4-only" in labels
    )
    files = sorted(tmp_path.glob("*/result.json"))
    assert len(files) == len(labels) == 1 + 2 * 2 + 2
    rec = ResultRecord.load(files[0])
    assert rec.backend == "sim" and rec.simulated and rec.scenario == "Accuracy"
    assert rec.accuracy and rec.accuracy["samples"] == 60
    fp32 = next(r for r in doc["results"] if r["scheme"] == "fp32")
    w8 = next(r for r in doc["results"] if r["scheme"] == "w8a8:minmax")
    assert abs(fp32["top1_pct"] - w8["top1_pct"]) <= 5.0


def test_lab_cli_winograd_and_sensitivity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "lab",
            "winograd",
            "--model",
            "digits_cnn",
            "--data",
            "digits",
            "--limit",
            "40",
            "--calib-samples",
            "16",
            "-o",
            str(tmp_path / "w"),
            "--json",
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    wino = doc["results"][-1]["winograd"]
    assert wino["layers"] == 1 and wino["reduction"] == pytest.approx(2.25, rel=0.02)
    rc = main(
        [
            "lab",
            "sensitivity",
            "--model",
            "digits_cnn",
            "--data",
            "digits",
            "--limit",
            "40",
            "--calib-samples",
            "16",
            "--keep-float",
            "0,1",
            "-o",
            str(tmp_path / "s"),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "sqnr_db" in out and "w4a8+float1" in out
    assert "w4a8+8bit1" in out  # the most sensitive layer at 8 bits (layer_bits) instead
    rc = main(
        [
            "lab",
            "ptq",
            "--model",
            "digits_cnn",
            "--data",
            "digits",
            "--techniques",
            "magic",
            "-o",
            str(tmp_path / "x"),
        ]
    )
    assert rc != 0
