"""`edgequant bench`: one-line errors, --json prints the record alone, a real quick run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgequant.cli import main


def test_mistyped_scenario_suggests_valid_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "bench",
            "--model",
            "digits_cnn",
            "--backend",
            "onnxruntime",
            "--scenario",
            "SingelStream",
            "-o",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert err.count("\n") == 0 and err.startswith("edgequant: error:")
    assert "did you mean SingleStream" in err


def test_missing_artifact_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "bench",
            "--artifact",
            str(tmp_path / "nope"),
            "--scenario",
            "Offline",
            "-o",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.count("\n") == 0
    assert "does not exist" in err and "edgequant quantize" in err


def test_corrupt_artifact_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    art = tmp_path / "art"
    art.mkdir()
    (art / "artifact.json").write_text("{not json")
    rc = main(["bench", "--artifact", str(art), "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.count("\n") == 0 and "corrupt" in err


def test_json_run_prints_only_the_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("mlperf_loadgen")
    pytest.importorskip("onnxruntime")
    out_dir = tmp_path / "run"
    rc = main(
        [
            "bench",
            "--model",
            "digits_cnn",
            "--backend",
            "onnxruntime",
            "--scheme",
            "fp32",
            "--scenario",
            "MultiStream",
            "--data",
            "digits",
            "--count",
            "32",
            "--duration",
            "0.5",
            "-o",
            str(out_dir),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    rec = json.loads(captured.out)  # exactly one JSON document on stdout
    assert rc == 0, captured.err
    assert rec["scenario"] == "MultiStream" and rec["batch_size"] == 8
    assert rec["loadgen"]["valid"] is True and rec["status"] == "ok"
    assert rec["latency_ms"]["p90"] > 0 and rec["throughput_ips"] > 0
    assert (
        json.loads((out_dir / "result.json").read_text())["throughput_ips"] == rec["throughput_ips"]
    )
    assert (out_dir / "loadgen" / "mlperf_log_summary.txt").is_file()


def test_summary_is_printed_without_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    rc = main(
        [
            "bench",
            "--model",
            "digits_cnn",
            "--backend",
            "onnxruntime",
            "--scheme",
            "bf16",
            "--scenario",
            "Offline",
            "-o",
            str(tmp_path),
        ]
    )
    captured = capsys.readouterr()
    assert rc != 0
    assert "status: NA" in captured.out
    assert (
        captured.err.strip()
        .splitlines()[-1]
        .startswith("edgequant: error: onnxruntime cannot run bf16")
    )
