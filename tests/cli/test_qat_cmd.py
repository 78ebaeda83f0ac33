"""``edgequant qat``: trains, exports ONNX QDQ, runs it in ONNX Runtime, prints a result record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgequant.cli import main
from edgequant.data import open_dataset
from edgequant.models.loader import load_model
from edgequant.quant.qat import run_qat
from edgequant.quant.scheme import QATConfig, get_scheme
from edgequant.studies.qat_export import export_qdq, int8_ops, run_onnx


@pytest.fixture(scope="module")
def digits_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained digits_cnn checkpoint (the shipped weights may not exist yet)."""
    from edgequant.models.training import train_classifier

    shipped = load_model("digits_cnn")
    path = tmp_path_factory.mktemp("digits") / "digits.pth"
    if shipped.pretrained:
        torch.save(shipped.module.state_dict(), path)
        return path
    m = load_model("digits_cnn", pretrained=False)
    train = open_dataset("digits", m.input_spec, split="train", limit=500)
    test = open_dataset("digits", m.input_spec, split="test", limit=50)
    train_classifier(m, train, test, epochs=4, progress=False)
    torch.save(m.module.state_dict(), path)
    return path


def test_qat_export_matches_simulation_in_onnxruntime(digits_weights: Path, tmp_path: Path) -> None:
    m = load_model("digits_cnn", weights=str(digits_weights))
    train = open_dataset("digits", m.input_spec, split="train", limit=256)
    result = run_qat(
        m.module,
        get_scheme("w4a8"),
        train,
        config=QATConfig(
            epochs=1, lr=1e-3, freeze_bn_after_steps=4, freeze_observers_after_steps=6
        ),
    )
    assert result.steps == 8
    x = open_dataset("digits", m.input_spec, split="test", limit=120).load_all()
    with torch.no_grad():
        sim = result.module(torch.from_numpy(x)).numpy()
    path = export_qdq(result.module, m.input_spec, tmp_path / "m.onnx")
    ort = run_onnx(path, x)
    assert (ort.argmax(1) == sim.argmax(1)).mean() >= 0.99
    assert np.abs(ort - sim).max() < 0.5
    ops = int8_ops(path)
    assert ops.get("QLinearConv", 0) == 5  # every conv runs as a real INT8 kernel
    path4 = export_qdq(result.module, m.input_spec, tmp_path / "m4.onnx", int4_storage=True)
    assert path4.stat().st_size < path.stat().st_size
    assert (run_onnx(path4, x).argmax(1) == sim.argmax(1)).mean() >= 0.99


def test_qat_cli_json(
    digits_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    rc = main(
        [
            "qat",
            "--model",
            "digits_cnn",
            "--weights",
            str(digits_weights),
            "--scheme",
            "w8a8",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--limit",
            "192",
            "--lr",
            "1e-4",
            "-o",
            str(out),
            "--json",
        ]
    )
    assert rc == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["backend"] == "onnxruntime" and rec["scheme"] == "w8a8-qat"
    assert rec["scenario"] == "Accuracy" and rec["simulated"] is False
    acc = rec["accuracy"]
    assert acc["samples"] > 0 and acc["top1_pct"] is not None
    # the runtime runs what the simulator trained (the 0.3-point bar)
    assert abs(acc["top1_pct"] - rec["extra"]["qat_sim"]["top1_pct"]) <= 0.3
    assert acc["top1_pct"] >= rec["extra"]["fp32"]["top1_pct"] - 5.0  # 1 short epoch: no collapse
    # PTQ with AdaRound's learnt rounding is scored beside plain PTQ and QAT, on the same images
    ada, ptq = rec["extra"]["ptq_adaround_sim"], rec["extra"]["ptq_sim"]
    assert ada["samples"] == ptq["samples"] == acc["samples"]
    assert ada["top1_pct"] >= rec["extra"]["fp32"]["top1_pct"] - 2.0
    assert Path(rec["artifact"]).is_file() and rec["size_bytes"] > 0
    assert (out / "result.json").is_file() and (out / "artifact.json").is_file()


def test_qat_cli_rejects_float_scheme(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "qat",
            "--model",
            "digits_cnn",
            "--scheme",
            "fp16",
            "--data",
            "digits",
            "-o",
            str(tmp_path),
        ]
    )
    assert rc != 0
    assert "static integer scheme" in capsys.readouterr().err


def test_qat_runtime_comes_from_registry_capabilities() -> None:
    from edgequant.backends import backend_names, get_backend
    from edgequant.errors import ValidationError
    from edgequant.studies.qat import qat_backends, resolve_qat_backend

    runtimes = qat_backends()
    default = resolve_qat_backend(None)
    assert default in runtimes and get_backend(default).available()
    assert runtimes == [n for n in backend_names() if n in runtimes]  # the registry's order
    assert not any(get_backend(n).simulated for n in runtimes)
    other = next(n for n in backend_names() if n not in runtimes)
    with pytest.raises(ValidationError, match=f"{other} cannot run it"):
        resolve_qat_backend(other)
    with pytest.raises(ValidationError, match="unknown backend"):
        resolve_qat_backend("no-such-runtime")


def test_qat_output_is_checked_before_training(tmp_path: Path) -> None:
    import edgequant
    from edgequant.errors import ValidationError

    taken = tmp_path / "taken"
    taken.write_text("mine")
    with pytest.raises(ValidationError, match="is a file"):
        edgequant.qat("digits_cnn", scheme="w8a8", data="digits", output=taken)
    assert taken.read_text() == "mine"


def test_qat_from_python_returns_the_record(digits_weights: Path, tmp_path: Path) -> None:
    import edgequant
    from edgequant.results.record import ResultRecord
    from edgequant.studies.qat import QATOptions

    rec = edgequant.qat(
        "digits_cnn",
        weights=str(digits_weights),
        scheme="w8a8",
        data="digits",
        epochs=0,
        limit=128,
        output=tmp_path / "q",
        progress=False,
        options=QATOptions(ptq_adaround=False),
    )
    assert rec.extra["ptq_adaround_sim"] is None  # asked not to
    assert rec.scheme == "w8a8-qat" and rec.scenario == "Accuracy" and not rec.simulated
    assert ResultRecord.load(tmp_path / "q") == rec
    meta = rec.artifact_metadata or {}
    assert meta["format"] == "onnx-qdq" and meta["qat"]["steps"] == 0
    # the runtime's own inspector was asked (stored for the report, which reads stored data only)
    assert meta["inspect_summary"] and "not inspected" not in meta["inspect_summary"]
    assert meta["executed_precision"] == "int8 (QDQ)"
