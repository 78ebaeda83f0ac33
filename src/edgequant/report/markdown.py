"""The Markdown and CSV variants of the report (the same numbers; the plots live in the HTML).

Example:
    >>> from edgequant.report.build import collect            # doctest: +SKIP
    >>> print(render_markdown(collect("runs/")))               # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io

from edgequant.report.build import ReportData
from edgequant.report.devices import device_cpu, device_speedups
from edgequant.report.tables import (
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
        out += ["", f"### {_md(model)}", ""]
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
    for reason in sorted(
        {r.energy_reason for r in data.rows if r.status == "ok" and r.energy_reason}
    ):
        out += ["", f"Energy n/a: {_md(reason)}"]
    if any(r.simulated for r in data.rows):
        out += ["", "Rows marked (simulated): simulated — speed not representative."]
    if any(r.valid is False for r in data.rows):
        out += ["", "INVALID is LoadGen's own verdict; lengthen duration_s for a VALID run."]
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


def render_csv(data: ReportData) -> str:
    """One CSV line per table row (derived columns included), with machine-friendly numbers."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "model",
            "backend",
            "scheme",
            "scenario",
            "status",
            "reason",
            "simulated",
            "throughput_ips",
            "latency_p50_ms",
            "latency_p90_ms",
            "latency_p99_ms",
            "speedup_vs_fp32",
            "top1_pct",
            "top1_drop_pts",
            "agreement_with_fp32_pct",
            "size_bytes",
            "size_reduction",
            "joules_per_inference",
            "energy_unavailable_reason",
            "loadgen_valid",
            "run_id",
            "gops",
            "pct_of_peak",
            "speedup_ci95_low",
            "speedup_ci95_high",
            "speedup_rounds",
            "noisy",
            "noise",
            "cpu_int8_class",
            "device",
        ]
    )

    def v(x: object) -> object:
        return "" if x is None else x

    for r in data.rows:
        w.writerow(
            [
                r.model,
                r.backend,
                r.scheme,
                r.scenario,
                r.status,
                v(r.reason),
                int(r.simulated),
                v(r.throughput_ips),
                v(r.latency_ms.get("p50")),
                v(r.latency_ms.get("p90")),
                v(r.latency_ms.get("p99")),
                v(r.speedup),
                v(r.top1_pct),
                v(r.top1_drop),
                v(r.agreement_pct),
                v(r.size_bytes),
                v(r.size_reduction),
                v(r.joules_per_inference),
                v(r.energy_reason if r.status == "ok" else None),
                "" if r.valid is None else int(r.valid),
                r.run_id,
                v(r.gops),
                v(r.pct_of_peak),
                *_ci(r),
                "" if r.noisy is None else int(r.noisy),
                v(r.noise_summary),
                v(r.cpu_class),
                r.device,
            ]
        )
    return buf.getvalue()


def _ci(r: Row) -> tuple[object, object, object]:
    p = r.paired or {}
    ci = p.get("ci95")
    lo, hi = (ci[0], ci[1]) if isinstance(ci, list | tuple) and len(ci) == 2 else ("", "")
    return ("" if lo is None else lo, "" if hi is None else hi, p.get("rounds", ""))


__all__ = ["render_csv", "render_markdown"]
