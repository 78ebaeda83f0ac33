"""The sweep runner, for real: fresh bench subprocesses, n/a and failed cells, resuming, Ctrl-C."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from edgequant.results.record import ResultRecord
from edgequant.results.store import ResultStore
from edgequant.sweep.experiment import parse_experiment
from edgequant.sweep.runner import run_sweep
from tests.sweep.real_sweep import real_sweep, sweep_cli


@pytest.mark.slow
def test_real_sweep_lands_rows_and_resumes() -> None:
    run = real_sweep()
    counts = run.summary["counts"]
    assert counts.get("ok") == 4 and counts.get("na") == 2, run.summary
    with ResultStore(run.runs_dir) as store:
        rows = store.rows()
    assert len(rows) == 6
    ok = [r for r in rows if r["status"] == "ok"]
    assert {(r["scheme"], r["scenario"]) for r in ok} == {
        ("fp32", "SingleStream"),
        ("fp32", "Offline"),
        ("w8a8", "SingleStream"),
        ("w8a8", "Offline"),
    }
    for r in ok:  # measured by LoadGen in the child, not made up by the sweep
        assert r["throughput_ips"] > 0 and r["latency_p50_ms"] > 0 and r["size_bytes"] > 0
        assert r["run_dir"].endswith(r["run_id"])
    acc = [r for r in ok if r["mode"] == "accuracy"]
    assert {r["scenario"] for r in acc} == {"Offline"} and all(
        r["top1_pct"] is not None for r in acc
    )
    na = [r for r in rows if r["status"] == "na"]
    assert {r["scheme"] for r in na} == {"w4a8"} and all("int4" in r["reason"] for r in na)
    # result.json is the source of truth and matches the row
    rec = ResultRecord.load(run.runs_dir / ok[0]["run_id"])
    assert rec.throughput_ips == ok[0]["throughput_ips"]
    assert rec.extra["sweep"]["cell"] == ok[0]["run_id"]

    # a second run skips every recorded cell: nothing is spawned again
    logs = {p: p.stat().st_mtime_ns for p in run.runs_dir.glob("*/bench.log")}
    t0 = time.perf_counter()
    again = sweep_cli(run.experiment, run.runs_dir)
    elapsed = time.perf_counter() - t0
    assert again.returncode == 0, again.stderr
    import json

    summary = json.loads(again.stdout)
    assert summary["counts"]["skipped"] == 6, summary
    assert {p: p.stat().st_mtime_ns for p in run.runs_dir.glob("*/bench.log")} == logs
    print(f"first sweep {run.seconds:.1f} s, resumed sweep {elapsed:.1f} s")


def _crash_command(tmp_path: Path) -> list[str]:
    """A bench stand-in that dies the way a broken runtime does: by a signal."""
    script = tmp_path / "crash.py"
    script.write_text(
        "import os, signal, sys\nsys.stderr.write('loading...\\n')\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    return [sys.executable, str(script)]


def test_failed_cells_are_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    exp = parse_experiment(
        "models: [no_such_model]\nbackends: [onnxruntime]\nschemes: [fp32, w4a8]\nscenarios: [Offline]\n"
        "duration_s: 0.5\n"
    )
    runs = tmp_path / "runs"
    summary = run_sweep(exp, runs, show_progress=False)
    by_scheme = {o.cell.scheme.name: o for o in summary.outcomes}
    # the real bench exits non-zero with one line: recorded as failed with that line
    failed = by_scheme["fp32"].record
    assert failed is not None and failed.status == "failed"
    assert "no_such_model" in (failed.reason or "")
    assert not failed.reason.startswith("edgequant: error")  # type: ignore[union-attr]
    # the unsupported cell never reached a subprocess
    na = by_scheme["w4a8"].record
    assert na is not None and na.status == "na" and "int4" in (na.reason or "")
    assert not (runs / by_scheme["w4a8"].cell.cell_id / "bench.log").exists()
    with ResultStore(runs) as store:
        assert {r["status"] for r in store.rows()} == {"failed", "na"}

    # a crash by signal costs one cell; failed cells are retried when the sweep is resumed
    summary = run_sweep(exp, runs, show_progress=False, bench_command=_crash_command(tmp_path))
    crashed = next(o for o in summary.outcomes if o.cell.scheme.name == "fp32")
    assert not crashed.skipped and crashed.record is not None
    assert crashed.record.status == "failed" and "signal 11" in (crashed.record.reason or "")
    assert next(o for o in summary.outcomes if o.cell.scheme.name == "w4a8").skipped


def test_interrupt_loses_only_the_cell_in_flight(tmp_path: Path) -> None:
    exp = parse_experiment("models: [digits_cnn]\nschemes: [fp32, fp16]\nscenarios: [Offline]\n")
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, _interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(exp, tmp_path, show_progress=False, bench_command=sleeper)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    first = exp.cells()[0].cell_id
    rec = ResultRecord.load(tmp_path / first)
    assert rec.status == "interrupted"
    with ResultStore(tmp_path) as store:
        assert [r["status"] for r in store.rows()] == [
            "interrupted"
        ]  # the second cell never started


def test_dry_run_runs_nothing(tmp_path: Path) -> None:
    from edgequant.cli import main

    exp = tmp_path / "e.yaml"
    exp.write_text(
        "models: [digits_cnn]\nbackends: [onnxruntime]\nschemes: [fp32, w4a8]\nscenarios: [Offline]\n"
    )
    assert main(["sweep", str(exp), "-o", str(tmp_path / "runs"), "--dry-run"]) == 0
    assert not (tmp_path / "runs").exists()


def test_backend_isolation_runs_a_group_in_one_process(tmp_path: Path) -> None:
    exp = parse_experiment(
        "models: [digits_cnn]\nbackends: [onnxruntime]\nschemes: [fp32, w8a8, w4a8]\n"
        "scenarios: [SingleStream, Offline]\ndata: digits\naccuracy: true\nduration_s: 0.5\n"
        "isolation: backend\n"
    )
    runs = tmp_path / "runs"
    summary = run_sweep(exp, runs, show_progress=False)
    assert [o.cell.cell_id for o in summary.outcomes] == [c.cell_id for c in exp.cells()]
    assert summary.counts.get("ok") == 4 and summary.counts.get("na") == 2, summary.to_dict()
    # one worker process for the pair, each cell with its own log and record
    assert [p.name for p in (runs / "groups").glob("*.json")] == ["digits_cnn__onnxruntime.json"]
    for o in summary.outcomes:
        rec = o.record
        assert rec is not None
        sweep = rec.extra["sweep"]
        assert sweep["isolation"] == "backend"
        if rec.status == "ok":  # measured by LoadGen in the worker, not made up by the sweep
            assert rec.throughput_ips and rec.throughput_ips > 0
            assert sweep["child_cpu_s"] > 0
            assert (runs / o.cell.cell_id / "bench.log").stat().st_size > 0
            assert (runs / o.cell.cell_id / "loadgen").is_dir()
    acc = [o.record for o in summary.outcomes if o.cell.mode == "accuracy" and o.status == "ok"]
    assert acc and all(
        r is not None and r.accuracy and r.accuracy["top1_pct"] is not None for r in acc
    )
    with ResultStore(runs) as store:
        assert len(store.rows()) == 6
    # resumed: nothing runs again
    again = run_sweep(exp, runs, show_progress=False)
    assert again.counts["skipped"] == 6


def _group_crash_command(tmp_path: Path) -> list[str]:
    """A worker stand-in that starts the first cell, then dies by a signal."""
    script = tmp_path / "crash_group.py"
    script.write_text(
        "import json, os, signal, sys\n"
        "cells = json.load(open(sys.argv[-1]))\n"
        "print('runtime noise on stdout')\n"
        "print(json.dumps({'event': 'start', 'cell': cells[0]['cell']}), flush=True)\n"
        "sys.stderr.write('loading...\\n'); sys.stderr.flush()\n"
        "os.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    return [sys.executable, str(script)]


def test_a_crashed_group_records_its_cells_failed(tmp_path: Path) -> None:
    exp = parse_experiment(
        "models: [digits_cnn]\nbackends: [onnxruntime]\nschemes: [fp32, w8a8]\n"
        "scenarios: [Offline]\nisolation: backend\n"
    )
    summary = run_sweep(
        exp, tmp_path, show_progress=False, group_command=_group_crash_command(tmp_path)
    )
    first, second = (o.record for o in summary.outcomes)
    assert first is not None and first.status == "failed"
    assert "signal 11" in (first.reason or ""), first.reason
    assert second is not None and second.status == "failed"
    assert "not run" in (second.reason or "") and "signal 11" in (second.reason or "")
    with ResultStore(tmp_path) as store:
        assert [r["status"] for r in store.rows()] == ["failed", "failed"]


def test_interrupt_in_a_group_loses_only_the_cell_in_flight(tmp_path: Path) -> None:
    exp = parse_experiment("models: [digits_cnn]\nschemes: [fp32, fp16]\nscenarios: [Offline]\n")
    script = tmp_path / "slow_group.py"
    script.write_text(
        "import json, sys, time\n"
        "cells = json.load(open(sys.argv[-1]))\n"
        "print(json.dumps({'event': 'start', 'cell': cells[0]['cell']}), flush=True)\n"
        "time.sleep(120)\n"
    )

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, _interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(
                exp,
                tmp_path,
                show_progress=False,
                isolation="backend",
                group_command=[sys.executable, str(script)],
            )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    first = exp.cells()[0].cell_id
    assert ResultRecord.load(tmp_path / first).status == "interrupted"
    with ResultStore(tmp_path) as store:
        assert [r["status"] for r in store.rows()] == ["interrupted"]


def test_build_jobs_build_pairs_ahead_then_measure(tmp_path: Path) -> None:
    exp = parse_experiment(
        "models: [digits_cnn]\nbackends: [onnxruntime, openvino]\nschemes: [fp32, w8a8]\n"
        "scenarios: [Offline]\ndata: digits\nduration_s: 0.5\nisolation: backend\n"
        "build_jobs: 2\n"
    )
    assert exp.build_jobs == 2
    runs = tmp_path / "runs"
    summary = run_sweep(exp, runs, show_progress=False)
    assert summary.counts.get("ok") == 4, summary.to_dict()
    for pair in ("digits_cnn__onnxruntime", "digits_cnn__openvino"):
        text = (runs / "groups" / f"{pair}.build.log").read_text()
        # each pair's artifacts were built by its own build process, before measuring
        assert text.count(f"built {pair}__") == 2, text
        assert "failed" not in text
    for o in summary.outcomes:
        assert o.record is not None and o.record.throughput_ips and o.record.throughput_ips > 0
    # nothing left to run: no build pass either
    stamp = (runs / "groups" / "digits_cnn__openvino.build.log").stat().st_mtime_ns
    again = run_sweep(exp, runs, show_progress=False)
    assert again.counts["skipped"] == 4
    assert (runs / "groups" / "digits_cnn__openvino.build.log").stat().st_mtime_ns == stamp


def test_mixed_isolation_runs_each_group_with_its_launcher(tmp_path: Path) -> None:
    exp = parse_experiment(
        "schemes: [fp32, w8a8]\nscenarios: [Offline]\nmodels: [digits_cnn]\ngroups:\n"
        "  - isolation: backend\n  - models: [mobilenet_v2]\n"
    )
    summary = run_sweep(
        exp,
        tmp_path,
        show_progress=False,
        bench_command=_crash_command(tmp_path),
        group_command=_group_crash_command(tmp_path),
    )
    assert [o.cell.cell_id for o in summary.outcomes] == [c.cell_id for c in exp.cells()]
    reasons = {o.cell.cell_id: (o.record.reason or "") for o in summary.outcomes if o.record}
    grouped = [r for cid, r in reasons.items() if cid.startswith("digits_cnn")]
    single = [r for cid, r in reasons.items() if cid.startswith("mobilenet_v2")]
    # the pair ran in one worker (its second cell never started); each other cell alone
    assert "not run" not in grouped[0] and "not run" in grouped[1]
    assert len(single) == 2 and all("bench was killed by signal 11" in r for r in single)
    assert [p.name for p in (tmp_path / "groups").glob("*.json")] == [
        "digits_cnn__onnxruntime.json"
    ]
