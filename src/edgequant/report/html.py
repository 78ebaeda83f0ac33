"""The HTML report: one self-contained file (inline CSS, inline SVG plots, no scripts, no network).

Example:
    >>> from edgequant.report.build import collect            # doctest: +SKIP
    >>> html = render_html(collect("runs/"))                   # doctest: +SKIP
"""

from __future__ import annotations

from html import escape

from edgequant.report.build import ReportData
from edgequant.report.devices import device_cpu, device_speedups
from edgequant.report.tables import CI_NOTE, Row, run_warnings, table_columns

CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dde5; --ok:#1b7f3b; --bad:#b42318; --na:#6b7280;
        --accent:#2459c7; --bg-alt:#f6f8fb; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; max-width: 1320px; padding: 24px 28px 60px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 8px; }
.sub { color: var(--muted); margin: 0 0 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; background: #fff; }
.card h3 { margin: 0 0 6px; font-size: 15px; }
.card p { margin: 4px 0; }
.note { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; margin: 6px 0 4px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 6px; text-align: right; white-space: nowrap; }
th { background: var(--bg-alt); position: sticky; top: 0; font-weight: 600; }
td.t, th.t { text-align: left; }
td.reason { white-space: normal; text-align: left; max-width: 360px; }
tr.na td { color: var(--na); }
tr.failed td, tr.interrupted td { color: var(--bad); }
tr.simulated td { background: #fff8e6; }
tr.noisy td { background: #fff1f0; }
ul.header { margin: 4px 0 16px; padding-left: 18px; }
.badge { display: inline-block; padding: 0 6px; border-radius: 10px; font-size: 11px; font-weight: 600; }
.valid { background: #e3f4e8; color: var(--ok); }
.invalid { background: #fde7e5; color: var(--bad); }
.scroll { overflow-x: auto; }
.figure { margin: 14px 0 22px; }
.figure svg { max-width: 100%; height: auto; }
.figure .caption { color: var(--muted); max-width: 900px; }
.missing { border: 1px dashed var(--line); padding: 14px; color: var(--muted); border-radius: 6px; }
pre { background: var(--bg-alt); padding: 10px; border-radius: 6px; overflow-x: auto; font-size: 12px; }
dl.env { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; font-size: 13px; }
dl.env dt { color: var(--muted); }
dl.env dd { margin: 0; word-break: break-word; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; }
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _row_html(r: Row, devices: bool = False) -> str:
    cls = [r.status] + (["simulated"] if r.simulated else []) + (["noisy"] if r.noisy else [])
    cells = []
    for header, get in table_columns(devices):
        text = get(r)
        if header == "LoadGen" and text in ("VALID", "INVALID"):
            cells.append(f'<td><span class="badge {text.lower()}">{text}</span></td>')
        elif header == "noise" and text == "NOISY":
            cells.append(
                f'<td><span class="badge invalid" title="{_e(r.noise_summary)}">NOISY</span></td>'
            )
        elif header == "status":
            cells.append(f'<td class="reason">{_e(text)}</td>')
        elif header == "energy / inference" and text.startswith("n/a"):
            cells.append(f'<td class="note" title="{_e(r.energy_reason)}">{_e(text)}</td>')
        elif header in ("device", "runtime", "scheme", "scenario"):
            cells.append(f'<td class="t">{_e(text)}</td>')
        else:
            cells.append(f"<td>{_e(text)}</td>")
    return f'<tr class="{" ".join(cls)}">' + "".join(cells) + "</tr>"


def _model_table(data: ReportData, model: str) -> str:
    rows = [r for r in data.rows if r.model == model]
    head = "".join(
        f'<th class="t">{_e(h)}</th>'
        if h in ("device", "runtime", "scheme", "scenario", "status")
        else f"<th>{_e(h)}</th>"
        for h, _ in table_columns(data.multi_device)
    )
    body = "\n".join(_row_html(r, data.multi_device) for r in rows)
    notes = []
    if any(r.simulated for r in rows):
        notes.append(
            "Rows marked (simulated) come from the fake-quant simulator: simulated — speed not representative."
        )
    if any(r.valid is False for r in rows):
        notes.append(
            "INVALID: LoadGen's own verdict (too few queries or a latency bound missed); such a run is "
            "a measurement, not an MLPerf-valid result — lengthen duration_s to get a VALID one."
        )
    noisy = [r for r in rows if r.noisy]
    if noisy:
        notes.append(
            f"NOISY: {len(noisy)} run(s) measured while the machine was busy — "
            + "; ".join(
                f"{r.label}{f' on {r.device}' if data.multi_device else ''} {r.scenario}: "
                f"{r.noise_summary}"
                for r in noisy
            )
        )
    notes += [f"Recorded by the runs: {w}" for w in run_warnings(rows)]
    reasons = sorted({r.energy_reason for r in rows if r.status == "ok" and r.energy_reason})
    notes += [f"Energy n/a: {reason}" for reason in reasons]
    notes.append(
        "Speedup and size reduction are against the same runtime's fp32"
        + (" on the same device" if data.multi_device else "")
        + "; top-1 drop is in points "
        "against that runtime's fp32 (another runtime's fp32 where it was not measured)."
    )
    if any(r.top1_drop_ci95 or r.agreement_ci95 for r in rows):
        notes.append(CI_NOTE)
    note_html = "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
    return f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>\n{note_html}'


def _speedup_matrix(data: ReportData, model: str) -> str:
    """The speed-up of each runtime × scheme on each device (the same device's fp32 as base)."""
    heads, lines = device_speedups(data.rows, model)
    if not lines:
        return ""
    head = "".join(
        f'<th class="t">{_e(h)}</th>' if i < 2 else f"<th>{_e(h)}</th>" for i, h in enumerate(heads)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="t">{_e(c)}</td>' if i < 2 else f"<td>{_e(c)}</td>"
            for i, c in enumerate(line)
        )
        + "</tr>"
        for line in lines
    )
    return (
        '<p class="note">Speed-up vs the same device\'s fp32 on the same runtime, per device:</p>'
        f'<div class="scroll"><table class="devices"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _slow_section(data: ReportData) -> list[str]:
    """The slow-INT8 section: what the stored inspection of each such artifact says."""
    parts = [
        '<h2 id="inspect">Slow INT8 artifacts (speedup below 1.5× fp32): what <code>edgequant '
        "inspect</code> says</h2>"
    ]
    if data.slow:
        parts.append(
            '<table><thead><tr><th class="t">model</th><th class="t">runtime</th><th class="t">scheme</th>'
            '<th class="t">scenario</th><th>speedup</th><th class="t">inspect</th></tr></thead><tbody>'
        )
        for s in data.slow:
            r = s.row
            extra = "".join(f"<br><span class='note'>{_e(n)}</span>" for n in s.notes[:3])
            parts.append(
                f'<tr><td class="t">{_e(r.model)}</td><td class="t">{_e(r.backend)}</td>'
                f'<td class="t">{_e(r.scheme)}</td><td class="t">{_e(r.scenario)}</td>'
                f'<td>{(r.speedup or 0):.2f}×</td><td class="reason">{_e(s.summary)}{extra}</td></tr>'
            )
        parts.append("</tbody></table>")
    else:
        parts.append(
            '<p class="note">No integer artifact ran slower than 1.5× its runtime\'s fp32 '
            "(or no fp32 baseline was measured to compare with).</p>"
        )
    return parts


def _items(opening: str, lines: list[str]) -> list[str]:
    """``opening`` (ending in ``<ul ...>``), one escaped ``<li>`` per line, ``</ul>``."""
    return [opening, *(f"<li>{_e(line)}</li>" for line in lines), "</ul>"]


def _top(data: ReportData) -> list[str]:
    """The document head, title, the machine header and the section links."""
    return [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>edgequant report — {_e(data.runs_dir.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>edgequant report: {_e(data.runs_dir.name)}</h1>",
        f'<p class="sub">{len(data.records)} runs · {len(data.models)} model(s) · generated '
        f"{_e(data.generated_at)} · accuracy budget {data.max_drop:g} top-1 point(s)</p>",
        *_items('<ul class="header" id="machine">', data.header),
        "<nav>"
        + ('<a href="#devices">Devices</a>' if data.multi_device else "")
        + '<a href="#recommendations">Recommendations</a><a href="#plots">Plots</a>'
        '<a href="#tables">Tables</a><a href="#inspect">Slow INT8</a>'
        '<a href="#environment">Environment</a><a href="#what-ran">What was run</a></nav>',
    ]


def _recommendation_cards(data: ReportData) -> list[str]:
    parts = [
        '<h2 id="recommendations">Recommendation per model'
        + (" and device" if data.multi_device else "")
        + '</h2><div class="cards">'
    ]
    for rec in data.recommendations:
        cpu = device_cpu(data.records, rec.device) if rec.device is not None else None
        sub = f'<p class="note">CPU {_e(cpu)}</p>' if cpu else ""
        parts.append(f'<div class="card"><h3>{_e(rec.title)}</h3>{sub}<p>{_e(rec.text)}</p>')
        parts += [f'<p class="note">{_e(n)}</p>' for n in rec.notes]
        parts.append("</div>")
    parts.append("</div>")
    return parts


def _figures(data: ReportData) -> list[str]:
    parts = ['<h2 id="plots">Plots</h2>']
    for plot in data.plots:
        parts.append(f'<div class="figure" id="plot-{plot.key}"><h3>{_e(plot.title)}</h3>')
        if plot.svg:
            parts.append(
                f'<div class="plot" role="img" aria-label="{_e(plot.title)}">{plot.svg}</div>'
            )
        else:
            parts.append(f'<div class="missing">Not drawn: {_e(plot.missing)}</div>')
        parts.append(f'<p class="caption"><b>How to read it:</b> {_e(plot.caption)}</p></div>')
    return parts


def render_html(data: ReportData) -> str:
    """The whole report as one HTML document."""
    parts = _top(data)
    if data.multi_device:
        parts += _items('<h2 id="devices">Devices</h2><ul class="header">', data.device_info)
    parts += _recommendation_cards(data)
    parts += _figures(data)

    parts.append('<h2 id="tables">Results per model</h2>')
    for model in data.models:
        parts.append(f"<h3>{_e(model)}</h3>")
        if data.multi_device:
            parts.append(_speedup_matrix(data, model))
        parts.append(_model_table(data, model))

    parts += _slow_section(data)
    parts.append('<h2 id="environment">Environment</h2><dl class="env">')
    for k, v in data.environment.items():
        parts.append(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>")
    parts.append("</dl>")

    parts += _items('<h2 id="what-ran">What was run</h2><ul>', data.what_ran)
    if data.experiment_text:
        parts.append(
            f"<p class='note'>The experiment file:</p><pre>{_e(data.experiment_text)}</pre>"
        )
    parts.append(
        '<p class="note">Made by edgequant from LoadGen\'s own summaries; a dash means not '
        "measured — no number in this report is assumed.</p></body></html>\n"
    )
    return "\n".join(parts)


__all__ = ["render_html"]
