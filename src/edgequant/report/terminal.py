"""Plain-text tables for the terminal: a sweep's cells, a demo's per-model summary.

Example:
    >>> from pathlib import Path
    >>> from edgequant.report.terminal import counts_line
    >>> from edgequant.sweep.records import SweepSummary
    >>> counts_line(SweepSummary(runs_dir=Path("runs"), outcomes=[], seconds=0.0))
    '0 cells: '
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgequant.console import format_table
from edgequant.report.tables import noise_flag, speedup_text

if TYPE_CHECKING:
    from edgequant.report.build import ReportData

SWEEP_HEADERS = ["cell", "status", "img/s", "p50 ms", "top-1 %", "reason"]
DEMO_HEADERS = [
    "runtime",
    "scheme",
    "scenario",
    "status",
    "img/s",
    "p50 ms",
    "speedup [95% CI]",
    "GOP/s (% peak)",
    "top-1 %",
    "MB",
    "noise",
]

__all__ = ["counts_line", "demo_table", "sweep_rows", "sweep_table"]


def counts_line(summary: Any) -> str:  # a sweep summary (the report never imports the sweep)
    """E.g. ``8 cells: 6 ok, 2 na (5 recorded earlier, skipped)``."""
    counts = dict(summary.counts)
    skipped = counts.pop("skipped", 0)
    text = f"{len(summary.outcomes)} cells: " + ", ".join(
        f"{n} {k}" for k, n in sorted(counts.items())
    )
    return text + (f" ({skipped} recorded earlier, skipped)" if skipped else "")


def sweep_rows(summary: Any) -> list[list[Any]]:
    """One line per cell: id, status, throughput, p50 latency, top-1, reason."""
    rows: list[list[Any]] = []
    for o in summary.outcomes:
        rec = o.record
        lat = (rec.latency_ms or {}) if rec else {}
        acc = (rec.accuracy or {}) if rec else {}
        status = o.status + (" (skipped)" if o.skipped else "")
        reason = (rec.reason or "") if rec else ""
        row = [o.cell.cell_id, status, rec.throughput_ips if rec else None]
        rows.append([*row, lat.get("p50"), acc.get("top1_pct"), reason[:70]])
    return rows


def sweep_table(summary: Any) -> str:
    """The sweep's cells as a table."""
    return format_table(sweep_rows(summary), SWEEP_HEADERS)


def _demo_row(r: Any) -> list[Any]:
    return [
        r.backend + (" (simulated)" if r.simulated else ""),
        r.scheme,
        r.scenario,
        r.status if r.status == "ok" else f"{r.status}: {(r.reason or '')[:50]}",
        r.throughput_ips,
        r.latency_ms.get("p50"),
        None if r.speedup is None else _speedup(r),
        None if r.gops is None else f"{r.gops:.3g}" + _pct(r),
        r.top1_pct,
        None if r.size_bytes is None else round(r.size_bytes / 1e6, 2),
        noise_flag(r),
    ]


def _speedup(r: Any) -> str:
    """``2.58 [2.51, 2.66]``, or ``1.50 (1 run)`` for a single-run ratio without an interval."""
    text = speedup_text(r)
    if "[" in text:
        return text.split(" (")[0].replace("×", "")
    return "1" if r.scheme == "fp32" else f"{r.speedup:.2f} (1 run)"


def _pct(r: Any) -> str:
    return "" if r.pct_of_peak is None else f" ({r.pct_of_peak:.0f}%)"


def demo_table(data: ReportData) -> str:
    """The CPU, roofline and noise lines, then per model its recommendation and measured rows."""
    lines: list[str] = list(data.header)
    for rec in data.recommendations:
        lines += ["", f"{rec.title}: {rec.text}"]
        mine = (r for r in data.rows if r.model == rec.model)
        rows = [_demo_row(r) for r in mine if rec.device is None or r.device == rec.device]
        lines.append(format_table(rows, DEMO_HEADERS))
    return "\n".join(lines).lstrip("\n")
