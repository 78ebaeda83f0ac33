"""Paired rounds in a sweep, for real: digits_cnn on ONNX Runtime, fp32 vs w8a8, short rounds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from edgequant.errors import ValidationError
from edgequant.results.record import ResultRecord
from edgequant.results.store import ResultStore
from edgequant.sweep.experiment import parse_experiment
from edgequant.sweep.pairs import (
    STOP_REASONS,
    RoundsSpec,
    cell_rounds,
    find_pairs,
    pair_order,
    parse_rounds_arg,
)
from edgequant.sweep.records import CellOutcome
from edgequant.sweep.rounds import PAIRED_DIR
from edgequant.sweep.runner import run_sweep

EXPERIMENT = """\
models: [digits_cnn]
backends: [onnxruntime]
schemes: [{{base: w8a8, name: w8a8, calibration: {{samples: 64}}}}, fp32]
scenarios: [SingleStream, Offline]
data: digits
calib: digits
duration_s: 0.5
isolation: {isolation}
rounds: {{min: 3, max: 4, time_cap_s: 20, round_s: 0.3}}
"""
FP32 = "digits_cnn__onnxruntime__fp32__{}"
W8A8 = "digits_cnn__onnxruntime__w8a8__{}"


def _check_paired(rec: ResultRecord, scenario: str) -> None:
    p = rec.paired
    assert p is not None, rec.extra.get("paired_reason")
    assert p["baseline"] == FP32.format(scenario)
    assert p["metric"] == ("throughput_ips" if scenario == "Offline" else "latency_p50")
    assert 3 <= p["rounds"] <= 4 and len(p["ratios"]) == p["rounds"]
    assert p["stopped_by"] in STOP_REASONS
    low, high = p["ci95"]
    assert low <= p["median"] <= high and p["median"] > 0
    # each round is a real LoadGen run of each side, its logs kept
    assert len(p["values"]["fp32"]) == len(p["values"]["w8a8"]) == p["rounds"]
    logs = Path(rec.extra["config"]["run_dir"]) / PAIRED_DIR
    for i in range(1, p["rounds"] + 1):
        for side in ("fp32", "w8a8"):
            assert (logs / f"r{i:02d}-{side}" / "mlperf_log_summary.txt").is_file()


@pytest.mark.slow
def test_a_sweep_pairs_int8_with_fp32_back_to_back_and_resumes(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    exp = parse_experiment(EXPERIMENT.format(isolation="backend"))
    order: list[str] = []

    def seen(o: CellOutcome) -> None:
        order.append(o.cell.cell_id)

    summary = run_sweep(exp, runs, show_progress=False, on_cell=seen)
    assert summary.counts.get("ok") == 4, [(o.cell.cell_id, o.status) for o in summary.outcomes]
    # each fp32 cell runs right before the cell it is paired with
    assert order == [
        FP32.format("SingleStream"),
        W8A8.format("SingleStream"),
        FP32.format("Offline"),
        W8A8.format("Offline"),
    ]
    for scenario in ("SingleStream", "Offline"):
        rec = ResultRecord.load(runs / W8A8.format(scenario))
        _check_paired(rec, scenario)
        assert ResultRecord.load(runs / FP32.format(scenario)).paired is None
        outcome = next(o for o in summary.outcomes if o.cell.cell_id == W8A8.format(scenario))
        assert outcome.record is not None and outcome.record.paired == rec.paired
    with ResultStore(runs) as store:  # the index carries the updated record
        stored = store.get(W8A8.format("Offline"))
    assert (
        stored is not None
        and stored.paired == ResultRecord.load(runs / W8A8.format("Offline")).paired
    )

    # resumed: every cell skipped, the pairs kept as they were, no rounds run again
    before = {p: p.read_text() for p in runs.glob("*/result.json")}
    pair_logs = {p: p.stat().st_mtime_ns for p in (runs / "pairs").glob("*")}
    again = run_sweep(exp, runs, show_progress=False)
    assert again.counts["skipped"] == 4
    assert {p: p.read_text() for p in runs.glob("*/result.json")} == before
    assert {p: p.stat().st_mtime_ns for p in (runs / "pairs").glob("*")} == pair_logs


def _fp32_crash_bench(tmp_path: Path) -> list[str]:
    """The real ``edgequant bench``, except that an fp32 cell dies by a signal."""
    script = tmp_path / "bench.py"
    script.write_text(
        "import os, signal, sys, runpy\n"
        "if sys.argv[sys.argv.index('--scheme') + 1] == 'fp32':\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n"
        "sys.argv = ['edgequant', 'bench', *sys.argv[1:]]\n"
        "runpy.run_module('edgequant', run_name='__main__')\n"
    )
    return [sys.executable, str(script)]


@pytest.mark.slow
def test_a_failed_side_gives_paired_null_with_the_reason_and_resume_fills_it(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    exp = parse_experiment(
        EXPERIMENT.format(isolation="cell").replace("[SingleStream, Offline]", "[Offline]")
    )
    summary = run_sweep(exp, runs, show_progress=False, bench_command=_fp32_crash_bench(tmp_path))
    status = {o.cell.cell_id: o.status for o in summary.outcomes}
    assert status == {FP32.format("Offline"): "failed", W8A8.format("Offline"): "ok"}
    rec = ResultRecord.load(runs / W8A8.format("Offline"))
    assert rec.paired is None
    reason = rec.extra["paired_reason"]
    assert FP32.format("Offline") in reason and "failed" in reason and "signal 11" in reason

    # resumed: the failed fp32 cell is re-run (for real this time); then the rounds process
    # itself dies: the pair is null with that process's last words
    crash = tmp_path / "crash.py"
    crash.write_text("import sys\nsys.stderr.write('rounds worker broke\\n')\nsys.exit(3)\n")
    summary = run_sweep(exp, runs, show_progress=False, pairs_command=[sys.executable, str(crash)])
    assert {o.cell.cell_id: (o.skipped, o.status) for o in summary.outcomes} == {
        FP32.format("Offline"): (False, "ok"),
        W8A8.format("Offline"): (True, "ok"),
    }
    rec = ResultRecord.load(runs / W8A8.format("Offline"))
    assert rec.paired is None and "rounds worker broke" in rec.extra["paired_reason"]

    # resumed again: both cells are recorded, only the pair is measured now; a time cap
    # shorter than one round still leaves the minimum of rounds (an interval needs 3)
    tiny_cap = RoundsSpec(min=3, max=8, time_cap_s=0.01, round_s=0.3)
    summary = run_sweep(exp, runs, show_progress=False, rounds=tiny_cap)
    assert all(o.skipped for o in summary.outcomes)
    rec = ResultRecord.load(runs / W8A8.format("Offline"))
    _check_paired(rec, "Offline")
    assert rec.paired is not None and rec.paired["rounds"] == 3
    assert "paired_reason" not in rec.extra


def test_pairs_are_fp32_with_each_other_scheme_of_one_model_backend_scenario() -> None:
    exp = parse_experiment(
        "models: [digits_cnn]\nbackends: [onnxruntime, openvino]\n"
        "schemes: [w8a8, fp16, fp32]\nscenarios: [Offline, SingleStream]\n"
        "groups:\n  - rounds: {min: 2, max: 6}\n  - models: [mobilenet_v2]\n    rounds: false\n"
    )
    pairs = find_pairs(exp)
    assert len(pairs) == 2 * 2 * 2  # backends x scenarios x (w8a8, fp16), digits only
    for p in pairs:
        assert p.baseline.scheme.name == "fp32" and p.other.scheme.name != "fp32"
        assert (p.baseline.model, p.baseline.backend, p.baseline.scenario) == (
            p.other.model,
            p.other.backend,
            p.other.scenario,
        )
        assert p.rounds == RoundsSpec(min=2, max=6)
        assert p.metric == ("throughput_ips" if p.other.scenario == "Offline" else "latency_p50")
    # the order puts every fp32 cell first, its partners right after it
    order = [(c.model.name, c.backend, c.scheme.name, c.scenario) for c in pair_order(exp.cells())]
    for p in pairs:
        i = order.index((p.baseline.model.name, p.baseline.backend, "fp32", p.baseline.scenario))
        assert (
            p.other.model.name,
            p.other.backend,
            p.other.scheme.name,
            p.other.scenario,
        ) in order[i + 1 : i + 3]
    assert sorted(order) == sorted(
        (c.model.name, c.backend, c.scheme.name, c.scenario) for c in exp.cells()
    )
    # --rounds replaces every group's (0: none at all)
    assert {p.rounds for p in find_pairs(exp, override=parse_rounds_arg("4:5"))} == {
        RoundsSpec(min=4, max=5)
    }
    assert find_pairs(exp, override=parse_rounds_arg("0")) == []
    assert set(cell_rounds(exp).values()) == {RoundsSpec(min=2, max=6), None}


def test_a_pair_never_crosses_devices() -> None:
    exp = parse_experiment(
        "models: [digits_cnn]\nschemes: [fp32, w8a8]\nscenarios: [Offline]\n"
        "devices: [local, pi, jetson]\n"
    )
    pairs = find_pairs(exp)
    assert sorted(p.other.device for p in pairs) == ["jetson", "local", "pi"]
    for p in pairs:
        assert p.baseline.device == p.other.device
        assert p.baseline.pair_key == p.other.pair_key
    order = [c.cell_id for c in pair_order(exp.cells())]
    for p in pairs:  # each device's fp32 cell, right before its partner
        assert order.index(p.other.cell_id) == order.index(p.baseline.cell_id) + 1


def test_rounds_spec_defaults_and_errors() -> None:
    spec = RoundsSpec.from_value(None)
    assert spec == RoundsSpec() and (spec.min, spec.max, spec.time_cap_s) == (3, 8, 120.0)
    assert spec.seconds(10) == pytest.approx(10 / 3) and spec.seconds(0.5) == 0.5
    assert RoundsSpec.from_value({"round_s": 2}).seconds(10) == 2  # type: ignore[union-attr]
    assert RoundsSpec.from_value(5) == RoundsSpec(min=3, max=5)
    assert RoundsSpec.from_value("off") is None
    for bad, match in (
        ({"min": 4, "max": 2}, "min"),
        ({"min": "3"}, "must be a number"),
        ({"rounds": 3}, "unknown key"),
        ({"time_cap_s": 0}, "time cap"),
        ("often", "mapping"),
    ):
        with pytest.raises(ValidationError, match=match):
            RoundsSpec.from_value(bad)
    with pytest.raises(ValidationError, match="--rounds"):
        parse_rounds_arg("three")
    bad_file = "models: [digits_cnn]\nrounds: {min: 0}\n"
    with pytest.raises(ValidationError, match="rounds must satisfy"):
        run_sweep(parse_experiment(bad_file), Path("/nonexistent/runs"), dry_run=True)


def test_summary_json_carries_paired(tmp_path: Path) -> None:
    from edgequant.sweep.records import SweepSummary

    exp = parse_experiment("models: [digits_cnn]\nschemes: [fp32, w8a8]\nscenarios: [Offline]\n")
    summary = run_sweep(exp, tmp_path / "runs", dry_run=True)
    assert isinstance(summary, SweepSummary)
    doc = json.loads(json.dumps(summary.to_dict()))
    assert all("paired" in c for c in doc["cells"])


def test_paired_text_shows_the_interval_and_a_noise_flag() -> None:
    from edgequant.sweep.runner import paired_text

    paired = {"median": 2.5, "ci95": [2.4, 2.61], "rounds": 5, "stopped_by": "half-width"}
    assert paired_text(paired) == "2.50× [2.40, 2.61] (5 rounds, half-width)"
    noisy = {**paired, "noise": {"noisy": True, "summary": "noisy: other processes used 1.7 cores"}}
    assert paired_text(noisy).endswith("; noisy: other processes used 1.7 cores)")
    assert paired_text({**paired, "ci95": None, "rounds": 2}).startswith("2.50× (no CI)")
