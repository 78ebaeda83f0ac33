"""``edgequant demo --quick``: the demo's plumbing end to end on the digits model (real runs)."""

from __future__ import annotations

import argparse
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


def _demo_args(*flags: str) -> argparse.Namespace:
    from edgequant.cli import build_parser

    return build_parser().parse_args(["demo", *flags])


def test_devices_and_cluster_flags_reach_the_demo_options() -> None:
    from edgequant.cli.demo_cmd import demo_options

    args = _demo_args("--devices", "local, rpi5", "--cluster", "tcp://10.0.0.2:8786")
    assert (args.devices, args.cluster) == ("local, rpi5", "tcp://10.0.0.2:8786")
    opts = demo_options(args)
    assert opts["devices"] == ["local", "rpi5"] and opts["cluster"] == "tcp://10.0.0.2:8786"
    assert demo_options(_demo_args("--devices", "rpi5"))["devices"] == ["rpi5"]


def test_devices_local_is_the_demo_as_without_the_flag() -> None:
    import inspect

    from edgequant.cli.demo_cmd import demo_options
    from edgequant.sweep.demo import demo

    plain = _demo_args("--quick")
    assert plain.devices == "local" and plain.cluster is None
    opts = demo_options(plain)
    assert opts == demo_options(_demo_args("--quick", "--devices", "local"))
    assert "devices" not in opts and "cluster" not in opts
    # the very call `edgequant demo` makes binds to demo() as it is
    inspect.signature(demo).bind(plain.output, **opts)


def test_demo_help_lists_devices_and_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    from edgequant.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "--devices NAMES" in out and "--cluster tcp://HOST:PORT" in out


def test_devices_bind_to_the_demo_function() -> None:
    import inspect

    from edgequant.cli.demo_cmd import demo_options
    from edgequant.sweep.demo import demo

    if "devices" not in inspect.signature(demo).parameters:
        pytest.skip("demo() takes no devices= in this tree yet (the fleet demo adds it)")
    args = _demo_args("--devices", "local,rpi5", "--cluster", "tcp://10.0.0.2:8786")
    inspect.signature(demo).bind(args.output, **demo_options(args))
