"""The report's trust lines: CPU and roofline header, noise flags, intervals on every speed-up."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from edgequant.report import build_report
from edgequant.report.evidence import header_lines, noise_lines
from edgequant.report.plots import speedup_error, speedup_plot
from edgequant.report.recommend import recommend
from edgequant.report.run_summary import run_summary
from edgequant.report.tables import build_rows, speedup_text
from edgequant.results.record import ResultRecord
from edgequant.results.store import ResultStore

CPU = {
    "model": "Test CPU 9000",
    "vendor": "GenuineIntel",
    "arch": "x86_64",
    "int8_class": "avx2",
    "int8_description": "AVX2 only: vpmaddubsw sums u8 x s8 pairs in saturating int16",
    "pair_saturation": True,
    "flags": ["avx2", "fma"],
    "logical_cores": 2,
    "physical_cores": 2,
}
PEAK = {
    "cpu": "Test CPU 9000",
    "int8_class": "avx2",
    "threads": 2,
    "fp32_gops": 200.0,
    "int8_gops": 320.0,
    "engine": "MLAS GEMM kernels",
    "gemm_size": 1024,
    "measured_at": "2026-12-01T00:00:00Z",
    "noise": "quiet",
    "format": 1,
    "int8_over_fp32": 1.6,
}
QUIET = {"noisy": False, "summary": "quiet", "reasons": []}
NOISY = {
    "noisy": True,
    "summary": "noisy: other processes used 0.97 cores",
    "reasons": ["other processes used 0.97 cores"],
}


def _rec(backend: str, scheme: str, ips: float, **kw: object) -> ResultRecord:
    precision = "fp32" if scheme == "fp32" else "int8"
    peak = PEAK[f"{precision}_gops"]
    gops = 2 * 4.1e9 * ips / 1e9
    kw.setdefault("noise", QUIET)
    return ResultRecord(
        model="resnet50",
        backend=backend,
        scheme=scheme,
        scenario="Offline",
        dataset="synthetic",
        threads=2,
        batch_size=8,
        throughput_ips=ips,
        loadgen={"valid": True, "mode": "PerformanceOnly", "min_duration_ms": 10000},
        device="local",
        cpu_profile=CPU,
        roofline={
            "achieved_gops": gops,
            "peak_gops": peak,
            "pct_of_peak": 100 * gops / peak,
            "precision": precision,
            "macs_per_sample": int(4.1e9),
            "peak": PEAK,
            "reason": None,
        },
        **kw,  # type: ignore[arg-type]
    )


def _records() -> list[ResultRecord]:
    paired = {
        "median": 2.58,
        "ci95": [2.51, 2.66],
        "rounds": 6,
        "method": "order-statistic",
        "stopped_by": "half-width",
        "baseline": "fp32",
        "metric": "throughput",
    }
    return [
        _rec("rt_a", "fp32", 10.0),
        _rec("rt_a", "w8a8", 25.0, paired=paired),
        _rec("rt_b", "fp32", 12.0),
        _rec("rt_b", "w8a8", 18.0, noise=NOISY),
    ]


def _runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    with ResultStore(runs) as store:
        for r in _records():
            run_id = f"{r.model}__{r.backend}__{r.scheme}__{r.scenario}"
            r.save(runs / run_id)
            store.add(run_id, r, runs / run_id)
    return runs


def test_speedups_carry_their_interval_or_say_they_have_none() -> None:
    rows = build_rows([(str(i), r) for i, r in enumerate(_records())])
    by = {(r.backend, r.scheme): r for r in rows}
    assert by["rt_a", "w8a8"].speedup == 2.58  # the paired median, not the 2.5 of single runs
    assert speedup_text(by["rt_a", "w8a8"]) == "2.58× [2.51, 2.66] (6 rounds)"
    assert speedup_text(by["rt_b", "w8a8"]) == "1.50× (single run, no interval)"
    assert speedup_error(by["rt_a", "w8a8"]) is not None
    assert speedup_error(by["rt_b", "w8a8"]) is None
    text = recommend(rows, "resnet50").text
    assert "95% CI 2.51-2.66×" in text and "on CPU class avx2" in text
    assert by["rt_a", "w8a8"].pct_of_peak == pytest.approx(100 * (2 * 4.1 * 25.0) / 320.0)


def test_noisy_runs_are_counted_with_their_reason() -> None:
    rows = build_rows([(str(i), r) for i, r in enumerate(_records())])
    (line,) = noise_lines(rows)
    assert line.startswith("noise: 1 of 4 measured runs were NOISY")
    assert "other processes' CPU use in 1" in line
    quiet = build_rows([(str(i), r) for i, r in enumerate(_records()[:2])])
    assert noise_lines(quiet) == ["noise: all 2 measured runs ran on a quiet machine"]


def test_header_names_the_cpu_and_the_roofline() -> None:
    recs = [(str(i), r) for i, r in enumerate(_records())]
    lines = header_lines(recs, build_rows(recs))
    assert lines[0] == (
        "CPU: Test CPU 9000 · INT8 class avx2 (AVX2 only: vpmaddubsw sums u8 x s8 pairs in "
        "saturating int16) · 2 logical cores, runs used 2 threads"
    )
    assert any("FP32 200 GOP/s, INT8 320 GOP/s, INT8/FP32 1.60×" in line for line in lines)
    assert any("1 from single runs" in line for line in lines)


def test_html_markdown_and_csv_show_flags_intervals_and_the_roofline(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    html = build_report(runs, tmp_path / "r.html").read_text()
    assert "INT8 class avx2" in html and "INT8/FP32 1.60×" in html
    assert "2.58× [2.51, 2.66] (6 rounds)" in html
    assert "single run, no interval" in html
    assert 'class="badge invalid" title="noisy: other processes used 0.97 cores">NOISY' in html
    assert "1 of 4 measured runs were NOISY" in html
    assert "GOP/s" in html and "% of peak" in html
    md = build_report(runs, tmp_path / "r.md").read_text()
    assert "| NOISY |" in md and "INT8 class avx2" in md and "[2.51, 2.66]" in md
    rows = list(csv.DictReader(io.StringIO(build_report(runs, tmp_path / "r.csv").read_text())))
    paired = next(r for r in rows if r["backend"] == "rt_a" and r["scheme"] == "w8a8")
    assert paired["speedup_ci95_low"] == "2.51" and paired["noisy"] == "0"
    assert next(r for r in rows if r["backend"] == "rt_b" and r["scheme"] == "w8a8")["noisy"] == "1"


def test_speedup_plot_draws_error_bars_only_for_paired_ratios() -> None:
    rows = build_rows([(str(i), r) for i, r in enumerate(_records())])
    svg = speedup_plot(rows).svg or ""
    assert "2.58×<" in svg  # the paired bar: no asterisk
    assert "1.50×*" in svg  # the single-run bar is marked
    assert "CPU class avx2" in svg


def test_bench_summary_flags_noise_and_names_the_roofline() -> None:
    text = run_summary(_records()[3])
    assert "NOISY RUN: noisy: other processes used 0.97 cores" in text
    assert "INT8 class avx2" in text
    assert "% of this CPU's int8 peak (320 GOP/s" in text


def test_a_percentage_of_a_noisy_peak_says_so() -> None:
    from edgequant.report.tables import table_columns

    rec = _records()[1]
    assert rec.roofline is not None
    rec.roofline = {
        **rec.roofline,
        "peak": {**PEAK, "noise": "noisy: other processes used 1.8 cores"},
    }
    (row,) = [r for r in build_rows([("a", _records()[0]), ("b", rec)]) if r.scheme == "w8a8"]
    get = dict(table_columns())["% of peak"]
    assert get(row).endswith("% (peak measured under noise)")
    lines = header_lines([("b", rec)], [row])
    assert any("measured while noisy: other processes used 1.8 cores" in line for line in lines)
