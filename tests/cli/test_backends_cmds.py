"""CLI: ``edgequant backends``, ``quantize`` and ``inspect``, run in-process through main()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgequant.backends import get_backend
from edgequant.cli import main
from edgequant.errors import BackendUnavailableError

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def user_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test net as a user's .onnx file (the CLI loads it like any user model)."""
    from edgequant.models.export import export_onnx
    from tests.helpers import make_tiny_model

    return export_onnx(make_tiny_model(), tmp_path_factory.mktemp("user") / "tiny.onnx")


def _json(capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    out = capsys.readouterr().out
    return json.loads(out)  # exactly one JSON document, nothing else on stdout


def test_backends_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "--json"]) == 0
    doc = _json(capsys)
    rows = {r["name"]: r for r in doc["backends"]}
    ort = rows["onnxruntime"]
    assert ort["available"] is True and ort["versions"]["onnxruntime"]
    assert ort["schemes"]["w8a8"] == {"supported": True, "reason": None}
    assert ort["schemes"]["bf16"]["supported"] is False and ort["schemes"]["bf16"]["reason"]
    assert rows["tensorrt"]["available"] is False or rows["tensorrt"]["reason"] is None


def test_backends_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "w8a8" in out and "n/a: " in out


def test_quantize_then_inspect(
    user_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "art"
    argv = [
        "quantize",
        "--model",
        str(user_onnx),
        "--backend",
        "ort",
        "--scheme",
        "w8a8",
        "--calib",
        "synthetic:16",
        "--calib-size",
        "16",
        "-o",
        str(out_dir),
        "--json",
    ]
    assert main(argv) == 0
    doc = _json(capsys)
    assert doc["backend"] == "onnxruntime" and doc["scheme"] == "w8a8"
    assert Path(doc["artifact"]).is_file() and (out_dir / "artifact.json").is_file()
    assert doc["calibration_samples"] == 16
    assert doc["weight_reduction_vs_fp32"] > 2.5
    assert any(c["what"] == "activation_type" for c in doc["choices"])

    # a second run hits the cache and replaces the previous output directory
    assert main(argv) == 0
    assert _json(capsys)["cached_at"] == doc["cached_at"]

    assert main(["inspect", str(out_dir), "--json"]) == 0
    rep = _json(capsys)
    assert rep["backend"] == "onnxruntime" and rep["summary"].startswith("4/4 convs")
    assert main(["inspect", str(out_dir / "model.onnx")]) == 0
    text = capsys.readouterr().out
    assert "4/4 convs in integer precision" in text


def test_inspect_lists_float_fallbacks(
    user_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "wo"
    assert (
        main(
            [
                "quantize",
                "--model",
                str(user_onnx),
                "--backend",
                "onnxruntime",
                "--scheme",
                "w8-only",
                "-o",
                str(out_dir),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["inspect", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "0/4 convs in integer precision" in out
    assert "float fallbacks:" in out and "weight-only" in out


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("edgequant: error: ")
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_quantize_errors_are_one_line(
    user_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["quantize", "--model", str(user_onnx), "-o", str(tmp_path / "x")]
    assert main([*base, "--backend", "onnxruntime", "--scheme", "w8a8"]) == 2
    assert "--calib" in _error(capsys)
    assert main([*base, "--backend", "onnxruntime", "--scheme", "bf16"]) == 3
    assert "bf16" in _error(capsys)
    assert main([*base, "--backend", "onnxruntme", "--scheme", "fp32"]) == 2
    assert "did you mean onnxruntime" in _error(capsys)
    # one right answer per machine: built where TensorRT can run, else "not available" (exit 4)
    trt = get_backend("tensorrt")
    rc = main([*base, "--backend", "tensorrt", "--scheme", "fp32"])
    if trt.available():
        assert rc == 0, capsys.readouterr().err
        capsys.readouterr()
    else:
        assert rc == BackendUnavailableError.exit_code == 4
        assert "is not available" in _error(capsys)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert (
        main(
            [
                "quantize",
                "--model",
                str(user_onnx),
                "--backend",
                "onnxruntime",
                "--scheme",
                "fp32",
                "-o",
                str(tmp_path / "busy"),
            ]
        )
        == 2
    )
    assert "non-empty" in _error(capsys)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_inspect_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "missing")]) == 7
    assert "does not exist" in _error(capsys)
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert main(["inspect", str(tmp_path / "m.onnx")]) == 7
    assert "artifact.json" in _error(capsys)


def test_backends_int8_per_cpu_class(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgequant.hw.cpu import INT8_CLASSES, cpu_profile

    fixture = Path(__file__).resolve().parents[1] / "hw" / "cpuinfo" / "zen3-avx2.txt"
    monkeypatch.setenv("EDGEQUANT_CPUINFO", str(fixture))
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    cpu_profile.cache_clear()
    try:
        assert main(["backends", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)["int8_per_cpu"]
        assert doc["this_cpu"]["int8_class"] == "avx2"
        assert set(doc["this_cpu"]["runtime_class"].values()) == {"avx2"}
        assert doc["classes"] == [c for c in INT8_CLASSES if c != "other"]
        for runtime, cells in doc["table"].items():
            assert set(cells) >= set(doc["classes"]), runtime
            assert all(c["config"] and c["reason"] for c in cells.values())
        assert "U8U8" in doc["table"]["onnxruntime"]["avx2"]["config"]
        assert "widens int8 to 16 bits" in doc["table"]["litert"]["avx2"]["reason"]
        assert main(["backends"]) == 0
        text = capsys.readouterr().out
        assert "INT8 per CPU class" in text and "avx2" in text and "* U8S8; U8U8" in text
    finally:
        cpu_profile.cache_clear()
