"""The Markdown and CSV variants of the report (the same numbers; the plots live in the HTML).

Example:
    >>> from edgequant.report.build import collect            # doctest: +SKIP
    >>> print(render_markdown(collect("runs/")))               # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from edgequant.report.build import ReportData
from edgequant.report.devices import device_cpu, device_speedups
from edgequant.report.tables import (
    CI_NOTE,
    Row,
    primary_scenario,
    run_warnings,
    table_columns,
)


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(data: ReportData) -> str:
    """The report as GitHub-flavoured Markdown."""
    out: list[str] = [f"# edgequant report: {data.runs_dir.name}", ""]
    out.append(
        f"{len(data.records)} runs · {len(data.models)} model(s) · generated {data.generated_at} · "
        f"accuracy budget {data.max_drop:g} top-1 point(s). Plots are in the HTML report "
        "(`edgequant report RUNS_DIR -o report.html`)."
    )
    out += [""] + [f"- {_md(line)}" for line in data.header]
    if data.multi_device:
        out += ["", "## Devices", ""] + [f"- {_md(line)}" for line in data.device_info]
    out += ["", "## Recommendation per model" + (" and device" if data.multi_device else ""), ""]
    for rec in data.recommendations:
        cpu = device_cpu(data.records, rec.device) if rec.device is not None else None
        where = f" (CPU {_md(cpu)})" if cpu else ""
        out.append(f"- **{_md(rec.title)}**{where}: {_md(rec.text)}")
        out += [f"  - {_md(n)}" for n in rec.notes]
    cols = table_columns(data.multi_device)
    out += ["", "## Results per model"]
    for model in data.models:
        out += _model_section(data, model, cols)
    for reason in sorted(
        {r.energy_reason for r in data.rows if r.status == "ok" and r.energy_reason}
    ):
        out += ["", f"Energy n/a: {_md(reason)}"]
    if any(r.simulated for r in data.rows):
        out += ["", "Rows marked (simulated): simulated — speed not representative."]
    if any(r.valid is False for r in data.rows):
        out += ["", "INVALID is LoadGen's own verdict; lengthen duration_s for a VALID run."]
    if any(r.top1_drop_ci95 or r.agreement_ci95 for r in data.rows):
        out += ["", _md(CI_NOTE)]
    out += [
        "",
        "## Slow INT8 artifacts (speedup below 1.5× fp32): what `edgequant inspect` says",
        "",
    ]
    if data.slow:
        for s in data.slow:
            r = s.row
            on = f" on {_md(r.device)}" if data.multi_device else ""
            out.append(
                f"- {_md(r.model)}{on} · {_md(r.backend)} {_md(r.scheme)} ({_md(r.scenario)}, "
                f"{(r.speedup or 0):.2f}×): {_md(s.summary)}"
            )
    else:
        out.append("None: no integer artifact ran slower than 1.5× its runtime's fp32.")
    out += ["", "## Environment", ""]
    out += [f"- {_md(k)}: {_md(v)}" for k, v in data.environment.items()]
    out += ["", "## What was run", ""]
    out += [f"- {_md(line)}" for line in data.what_ran]
    if data.experiment_text:
        out += ["", "```yaml", data.experiment_text.rstrip(), "```"]
    return "\n".join(out) + "\n"


def _model_section(data: ReportData, model: str, cols: list[tuple[str, Any]]) -> list[str]:
    """One model's table, its noisy runs and the warnings its runs recorded."""
    out = ["", f"### {_md(model)}", ""]
    if data.multi_device:
        out += _speedup_matrix(data, model)
    out.append("| " + " | ".join(h for h, _ in cols) + " |")
    out.append(
        "|"
        + "|".join(
            "---" if h in ("device", "runtime", "scheme", "scenario", "status") else "---:"
            for h, _ in cols
        )
        + "|"
    )
    for r in (r for r in data.rows if r.model == model):
        out.append("| " + " | ".join(_md(get(r)) for _, get in cols) + " |")
    noisy = [r for r in data.rows if r.model == model and r.noisy]
    if noisy:
        out += [""] + [
            f"- NOISY: {_md(r.label)}{f' on {_md(r.device)}' if data.multi_device else ''} "
            f"{_md(r.scenario)}: {_md(r.noise_summary)}"
            for r in noisy
        ]
    warnings = run_warnings(r for r in data.rows if r.model == model)
    out += [""] + [f"- Recorded by the runs: {_md(w)}" for w in warnings] if warnings else []
    return out


def _speedup_matrix(data: ReportData, model: str) -> list[str]:
    """The speed-up of each runtime × scheme on each device, as a Markdown table."""
    heads, lines = device_speedups(data.rows, model)
    if not lines:
        return []
    scen = primary_scenario(r for r in data.rows if r.model == model and r.scheme != "fp32")
    out = [
        f"Speed-up vs the same device's fp32 on the same runtime ({scen}):",
        "",
        "| " + " | ".join(_md(h) for h in heads) + " |",
        "|---|---|" + "---:|" * (len(heads) - 2),
    ]
    out += ["| " + " | ".join(_md(c) for c in line) + " |" for line in lines]
    return [*out, "", "All runs:", ""]


def _latency(key: str) -> Callable[[Row], object]:
    return lambda r: r.latency_ms.get(key)


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


#: the CSV's columns: the header, and a row's field of that name or what a function makes of it
CSV_COLUMNS: tuple[tuple[str, str | Callable[[Row], object]], ...] = (
    *((name, name) for name in ("model", "backend", "scheme", "scenario", "status", "reason")),
    ("simulated", lambda r: int(r.simulated)),
    ("throughput_ips", "throughput_ips"),
    *((f"latency_{p}_ms", _latency(p)) for p in ("p50", "p90", "p99")),
    ("speedup_vs_fp32", "speedup"),
    ("top1_pct", "top1_pct"),
    ("top1_drop_pts", "top1_drop"),
    ("agreement_with_fp32_pct", "agreement_pct"),
    ("top1_drop_ci95_low", lambda r: (r.top1_drop_ci95 or (None, None))[0]),
    ("top1_drop_ci95_high", lambda r: (r.top1_drop_ci95 or (None, None))[1]),
    ("agreement_ci95_low", lambda r: (r.agreement_ci95 or (None, None))[0]),
    ("agreement_ci95_high", lambda r: (r.agreement_ci95 or (None, None))[1]),
    ("size_bytes", "size_bytes"),
    ("size_reduction", "size_reduction"),
    ("joules_per_inference", "joules_per_inference"),
    ("energy_unavailable_reason", lambda r: r.energy_reason if r.status == "ok" else None),
    ("loadgen_valid", lambda r: _flag(r.valid)),
    ("run_id", "run_id"),
    ("gops", "gops"),
    ("pct_of_peak", "pct_of_peak"),
    ("speedup_ci95_low", lambda r: _ci(r)[0]),
    ("speedup_ci95_high", lambda r: _ci(r)[1]),
    ("speedup_rounds", lambda r: _ci(r)[2]),
    ("noisy", lambda r: _flag(r.noisy)),
    ("noise", "noise_summary"),
    ("cpu_int8_class", "cpu_class"),
    ("device", "device"),
)


def render_csv(data: ReportData) -> str:
    """One CSV line per table row (derived columns included), with machine-friendly numbers.

    A value that was not measured is an empty cell.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([header for header, _ in CSV_COLUMNS])
    for r in data.rows:
        values = (getattr(r, get) if isinstance(get, str) else get(r) for _, get in CSV_COLUMNS)
        w.writerow(["" if value is None else value for value in values])
    return buf.getvalue()


def _ci(r: Row) -> tuple[object, object, object]:
    p = r.paired or {}
    ci = p.get("ci95")
    lo, hi = (ci[0], ci[1]) if isinstance(ci, list | tuple) and len(ci) == 2 else ("", "")
    return ("" if lo is None else lo, "" if hi is None else hi, p.get("rounds", ""))


__all__ = ["CSV_COLUMNS", "render_csv", "render_markdown"]
