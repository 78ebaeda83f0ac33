"""``edgequant report`` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgequant.cli import main
from edgequant.results.record import ResultRecord
from edgequant.results.store import ResultStore


def _runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    with ResultStore(runs) as store:
        for scheme, ips, size in (("fp32", 100.0, 4000), ("w8a8", 260.0, 1000)):
            rec = ResultRecord(
                model="tinynet",
                backend="onnxruntime",
                scheme=scheme,
                scenario="Offline",
                dataset="synthetic",
                threads=2,
                batch_size=8,
                throughput_ips=ips,
                latency_ms={"p50": 10.0, "p90": 12.0, "p99": 15.0},
                size_bytes=size,
                loadgen={"valid": True},
            )
            rec.save(runs / scheme)
            store.add(scheme, rec, runs / scheme)
    return runs


def test_report_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = _runs(tmp_path)
    assert main(["report", str(runs)]) == 0
    assert (runs / "report.html").read_text().count("<svg") >= 2
    assert main(["report", str(runs), "-o", str(tmp_path / "r.md")]) == 0  # format from the suffix
    assert (tmp_path / "r.md").read_text().startswith("# edgequant report")
    assert main(["report", str(runs), "--format", "csv", "-o", str(tmp_path / "r.txt")]) == 0
    assert (tmp_path / "r.txt").read_text().startswith("model,backend,scheme")
    capsys.readouterr()
    assert main(["report", str(runs), "--json", "--max-drop", "0.5"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "html"
    assert doc["recommendations"]["tinynet"].startswith(
        "onnxruntime w8a8: 260 img/s in Offline, 2.60×"
    )


def test_report_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0] and "edgequant sweep" in err[0]
