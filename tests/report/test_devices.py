"""Reports across devices: the device table, per-device speed-ups, the plot, one pick per device."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from edgequant.report import build_report
from edgequant.report.build import collect
from edgequant.report.devices import device_speedups
from edgequant.report.plots import speedup_plot
from edgequant.report.recommend import recommend_all
from edgequant.report.tables import build_rows
from edgequant.results.record import ResultRecord
from edgequant.results.store import ResultStore

X86 = {"model": "Intel Xeon", "int8_class": "avx512-vnni", "logical_cores": 2}
PI = {"model": "Cortex-A76", "int8_class": "neon-dot", "logical_cores": 4}


def _rec(
    backend: str, scheme: str, ips: float, device: str | None, top1: float, **kw: object
) -> ResultRecord:
    return ResultRecord(
        model="digits_cnn",
        backend=backend,
        scheme=scheme,
        scenario="Offline",
        dataset="digits:test",
        threads=2,
        batch_size=8,
        throughput_ips=ips,
        latency_ms={"mean": 1.0, "p50": 1.0, "p90": 1.2, "p99": 1.5},
        loadgen={"valid": True, "mode": "PerformanceOnly", "min_duration_ms": 1000},
        accuracy={"top1_pct": top1, "samples": 360},
        device=device,
        cpu_profile=PI if device == "rpi5" else X86,
        **kw,  # type: ignore[arg-type]
    )


PAIRED = {"median": 3.1, "ci95": [2.9, 3.3], "rounds": 6, "method": "order-statistic"}


def _two_devices() -> list[ResultRecord]:
    return [
        # the host: device None is "local"
        _rec("onnxruntime", "fp32", 1000.0, None, 99.0),
        _rec("onnxruntime", "w8a8", 2500.0, None, 98.8),
        _rec("openvino", "fp32", 1200.0, None, 99.0),
        _rec("openvino", "w8a8", 3600.0, None, 98.9, paired=PAIRED),
        # the Pi: ONNX Runtime's int8 is slower there; LiteRT's is faster, but loses accuracy
        _rec("onnxruntime", "fp32", 200.0, "rpi5", 99.0),
        _rec("onnxruntime", "w8a8", 150.0, "rpi5", 98.7),
        _rec("litert", "fp32", 180.0, "rpi5", 99.0),
        _rec("litert", "w8a8", 700.0, "rpi5", 96.0),
    ]


def _runs(tmp_path: Path, records: list[ResultRecord]) -> Path:
    runs = tmp_path / "runs"
    with ResultStore(runs) as store:
        for r in records:
            run_id = f"{r.model}__{r.backend}__{r.scheme}__{r.scenario}__{r.device or 'local'}"
            r.save(runs / run_id)
            store.add(run_id, r, runs / run_id)
    return runs


def test_speedups_are_against_the_same_devices_fp32() -> None:
    rows = build_rows((str(i), r) for i, r in enumerate(_two_devices()))
    got = {(r.device, r.backend, r.scheme): r.speedup for r in rows}
    assert got[("local", "onnxruntime", "w8a8")] == pytest.approx(2.5)
    assert got[("local", "openvino", "w8a8")] == pytest.approx(3.1)  # the paired median
    assert got[("rpi5", "onnxruntime", "w8a8")] == pytest.approx(0.75)
    assert got[("rpi5", "litert", "w8a8")] == pytest.approx(700 / 180)
    drop = {(r.device, r.backend, r.scheme): r.top1_drop for r in rows}
    assert drop[("rpi5", "litert", "w8a8")] == pytest.approx(3.0)
    heads, lines = device_speedups(rows, "digits_cnn")
    assert heads == ["runtime", "scheme", "local", "rpi5"]
    by = {(line[0], line[1]): line[2:] for line in lines}
    assert by[("openvino", "w8a8")] == ["3.10× [2.90, 3.30] (6 rounds)", "-"]
    assert by[("onnxruntime", "w8a8")] == [
        "2.50× (single run, no interval)",
        "0.75× (single run, no interval)",
    ]
    assert by[("litert", "w8a8")] == ["-", "3.89× (single run, no interval)"]


def test_one_recommendation_per_device_within_the_budget() -> None:
    rows = build_rows((str(i), r) for i, r in enumerate(_two_devices()))
    recs = {r.device: r for r in recommend_all(rows, ["digits_cnn"], max_drop=1.0)}
    assert set(recs) == {"local", "rpi5"}
    assert recs["local"].choice is not None and recs["local"].choice.label == "openvino w8a8"
    assert "(95% CI 2.90-3.30×) on CPU class avx512-vnni" in recs["local"].text
    # litert w8a8 is the Pi's fastest but loses 3 points: the pick is the fastest within 1
    pi = recs["rpi5"]
    assert pi.choice is not None and pi.choice.label == "onnxruntime fp32"
    assert pi.title == "digits_cnn on rpi5"
    assert any("litert w8a8 (lost 3.00)" in n for n in pi.notes)


def test_plot_groups_bars_by_device_with_the_cpu_class() -> None:
    rows = build_rows((str(i), r) for i, r in enumerate(_two_devices()))
    plot = speedup_plot(rows)
    assert plot.svg is not None and plot.title == "INT8 vs FP32 speedup by device and runtime"
    for text in ("local (avx512-vnni)", "rpi5 (neon-dot)", "3.10×", "0.75×*", "3.89×*"):
        assert text in plot.svg


def test_two_device_report_in_markdown_html_and_csv(tmp_path: Path) -> None:
    runs = _runs(tmp_path, _two_devices())
    md = build_report(runs, tmp_path / "r.md").read_text()
    assert "## Devices" in md
    assert "- device local: CPU Intel Xeon · INT8 class avx512-vnni · runtimes" in md
    assert "- device rpi5: CPU Cortex-A76 · INT8 class neon-dot · runtimes" in md
    assert "## Recommendation per model and device" in md
    assert "- **digits_cnn on rpi5** (CPU Cortex-A76 · INT8 class neon-dot): " in md
    assert (
        "- **digits_cnn on local** (CPU Intel Xeon · INT8 class avx512-vnni): openvino w8a8" in md
    )
    assert "| runtime | scheme | local | rpi5 |" in md
    assert "| rpi5 | onnxruntime | w8a8 | Offline | ok | 150 |" in md
    assert md.count("| device | runtime | scheme |") == 1
    html = build_report(runs, tmp_path / "r.html").read_text()
    assert '<h2 id="devices">Devices</h2>' in html and "digits_cnn on rpi5" in html
    assert 'class="devices"' in html and "rpi5 (neon-dot)" in html  # matrix and plot
    assert '<th class="t">device</th>' in html
    rows = list(csv.DictReader(io.StringIO(build_report(runs, tmp_path / "r.csv").read_text())))
    pi = next(
        r
        for r in rows
        if r["device"] == "rpi5" and r["backend"] == "onnxruntime" and r["scheme"] == "w8a8"
    )
    assert float(pi["speedup_vs_fp32"]) == pytest.approx(0.75)
    assert {r["device"] for r in rows} == {"local", "rpi5"}


def test_one_device_report_has_no_device_sections(tmp_path: Path) -> None:
    local = [r for r in _two_devices() if r.device is None]
    runs = _runs(tmp_path, local)
    data = collect(runs)
    assert not data.multi_device and data.device_info == []
    assert [r.device for r in data.recommendations] == [None]
    md = build_report(runs, tmp_path / "r.md").read_text()
    assert "## Recommendation per model\n" in md and "Devices" not in md
    assert "| device |" not in md and "on local" not in md
    assert "- **digits_cnn**: openvino w8a8" in md
    assert "| onnxruntime | w8a8 | Offline | ok | 2,500 |" in md
    html = build_report(runs, tmp_path / "r.html").read_text()
    assert 'id="devices"' not in html and 'class="devices"' not in html
    assert "INT8 vs FP32 speedup by runtime and model" in html
    # the same records named "local" explicitly give the same report body
    for r in local:
        r.device = "local"
    runs2 = _runs(tmp_path / "named", local)
    md2 = build_report(runs2, tmp_path / "r2.md").read_text()
    strip = lambda t: [ln for ln in t.splitlines() if "generated" not in ln and "report:" not in ln]  # noqa: E731
    assert strip(md2) == strip(md)
