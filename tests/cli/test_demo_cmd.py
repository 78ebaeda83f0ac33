"""``edgequant demo --quick``: the demo's plumbing end to end on the digits model (real runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgequant.results.record import ResultRecord
from edgequant.results.store import ResultStore


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path: Path) -> None:
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "edgequant", "demo", "--quick", "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 3 and "digits_cnn" in html
    with ResultStore(out / "runs") as store:
        rows = store.rows()
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}, [
        (r["run_id"], r["reason"]) for r in rows
    ]
    assert all(
        r["top1_pct"] is not None for r in rows if r["mode"] == "accuracy"
    )  # real accuracy on digits
    # the terminal summary: the recommendation and a table per model
    assert "digits_cnn: onnxruntime" in proc.stdout and "speedup" in proc.stdout
    assert f"report: {out / 'report.html'}" in proc.stdout
    # the paired fp32/w8a8 rounds: each w8a8 record has its ratio with an interval, printed too
    paired = [r for r in rows if r["scheme"] == "w8a8"]
    assert len(paired) == 2
    for row in paired:
        rec = ResultRecord.load(Path(row["run_dir"]))
        assert rec.paired is not None and rec.paired["rounds"] >= 3 and rec.paired["ci95"]
        low, high = rec.paired["ci95"]
        assert low <= rec.paired["median"] <= high
        assert f"{row['run_id']} " in proc.stdout.split("paired ratios vs fp32")[1]
