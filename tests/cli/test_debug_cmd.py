"""``edgequant debug ARTIFACT --data D``: the per-layer view from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgequant.backends import get_backend
from edgequant.cli import main


def _quantize(backend: str, out: Path, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    rc = main(
        ["quantize", "--model", "digits_cnn", "--backend", backend, "--scheme", "w8a8",
         "--calib", "digits", "-o", str(out), "--json"]
    )  # fmt: skip
    assert rc == 0
    return json.loads(capsys.readouterr().out)


def test_debug_json_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    be = get_backend("onnxruntime")
    if not be.available():
        pytest.skip(f"onnxruntime unavailable: {be.unavailable_reason()}")
    _quantize("onnxruntime", tmp_path / "art", capsys)
    art = str(tmp_path / "art")
    assert main(["debug", art, "--data", "digits", "--samples", "4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["samples"] == 4 and doc["scheme"] == "w8a8" and doc["layers"]
    for row in doc["layers"]:
        assert row["matched"], row
        assert row["runtime_sqnr_db"] > 20.0 and row["sim_sqnr_db"] > 20.0, row
    assert (tmp_path / "art" / "layer_debug.json").is_file()
    assert (
        main(["debug", art, "--data", "digits", "--samples", "2", "--top", "2", "--no-save"]) == 0
    )
    text = capsys.readouterr().out
    assert "per-layer SQNR vs fp32 on 2 samples" in text and "runtime dB" in text
    body = [ln for ln in text.splitlines()[5:] if ln.strip() and not ln.startswith("note")]
    assert len(body) == 2  # --top 2: the two worst layers


def test_debug_unsupported_runtime_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _quantize("sim", tmp_path / "sim", capsys)
    rc = main(["debug", str(tmp_path / "sim"), "--data", "digits", "--samples", "2"])
    err = capsys.readouterr().err.strip()
    assert rc == 3 and err.count("\n") == 0
    assert "no per-layer view" in err and err.startswith("edgequant: error:")


def test_debug_needs_data(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["debug", "somewhere"])
    assert "--data" in capsys.readouterr().err
