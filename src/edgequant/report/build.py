"""Collect everything a report shows from a runs directory, then write it as HTML, Markdown or CSV.

Example:
    >>> from edgequant.report import build_report
    >>> build_report("runs/", "runs/report.html")            # doctest: +SKIP
    PosixPath('runs/report.html')
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgequant.errors import ValidationError
from edgequant.report.devices import device_lines
from edgequant.report.evidence import header_lines
from edgequant.report.plots import Plot, all_plots
from edgequant.report.recommend import Recommendation, SlowNote, recommend_all, slow_int8_notes
from edgequant.report.tables import Row, build_rows, devices_of, models_of
from edgequant.results.record import ResultRecord
from edgequant.results.store import DB_NAME, ResultStore, iter_run_dirs, rebuild

FORMATS = ("html", "md", "csv")


@dataclass(kw_only=True)
class ReportData:
    """What every report format shows."""

    runs_dir: Path
    max_drop: float
    rows: list[Row]
    records: list[tuple[str, ResultRecord]]
    recommendations: list[Recommendation]
    slow: list[SlowNote]
    plots: list[Plot] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    what_ran: list[str] = field(default_factory=list)
    experiment_text: str | None = None
    generated_at: str = ""
    #: the CPU, its roofline, the noise and interval lines (:mod:`edgequant.report.evidence`)
    header: list[str] = field(default_factory=list)

    #: one line per device (its CPU, INT8 class, runtimes), when the runs span devices
    device_info: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return models_of(self.rows)

    @property
    def devices(self) -> list[str]:
        """The devices the runs ran on, ``local`` first."""
        return devices_of(self.rows)

    @property
    def multi_device(self) -> bool:
        """True when the runs span more than one device: tables get a device column."""
        return len(self.devices) > 1


def load_records(runs_dir: Path) -> list[tuple[str, ResultRecord]]:
    """Records from ``results.db``, re-indexed from the run directories when it is missing."""
    if not runs_dir.is_dir():
        raise ValidationError(
            f"runs directory {runs_dir} does not exist; run `edgequant sweep` first"
        )
    if not (runs_dir / DB_NAME).exists():
        if not any(iter_run_dirs(runs_dir)):
            raise ValidationError(
                f"{runs_dir} holds no runs (no results.db, no */result.json); run `edgequant sweep` first"
            )
        rebuild(runs_dir)
    with ResultStore(runs_dir, create=False) as store:
        records = list(store.records())
    if not records:
        raise ValidationError(
            f"{runs_dir / DB_NAME} holds no runs yet; run `edgequant sweep` into {runs_dir}"
        )
    return records


def collect(
    runs_dir: Path | str, *, max_drop: float = 1.0, plots: bool = True, inspect: bool = True
) -> ReportData:
    """Gather rows, recommendations, inspect notes, plots and the environment of a runs directory."""
    if max_drop < 0:
        raise ValidationError(f"--max-drop must be >= 0 top-1 points, got {max_drop}")
    runs = Path(runs_dir)
    records = load_records(runs)
    rows = build_rows(records)
    recs = recommend_all(rows, models_of(rows), max_drop)
    exp_file = runs / "experiment.yaml"
    return ReportData(
        runs_dir=runs,
        max_drop=max_drop,
        rows=rows,
        records=records,
        recommendations=recs,
        slow=slow_int8_notes(rows) if inspect else [],
        plots=all_plots(rows) if plots else [],
        environment=environment_summary(records),
        what_ran=what_ran(records),
        experiment_text=exp_file.read_text() if exp_file.is_file() else None,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        header=header_lines(records, rows),
        device_info=device_lines(records),
    )


def _flat(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list | tuple):
        out[prefix] = " ".join(str(v) for v in value)
    elif value is not None:
        out[prefix] = str(value)


def environment_summary(records: list[tuple[str, ResultRecord]]) -> dict[str, str]:
    """The machine and software the runs used: CPU and flags, runtime versions, threads, dates."""
    out: dict[str, str] = {}
    for _, rec in records:  # later runs fill in what earlier ones lacked (e.g. another runtime)
        flat: dict[str, str] = {}
        _flat("", rec.environment or {}, flat)
        for k, v in flat.items():
            out.setdefault(k, v)
    threads = sorted({r.threads for _, r in records})
    out["threads"] = ", ".join(str(t) for t in threads)
    datasets = sorted({r.dataset for _, r in records if r.dataset})
    out["datasets"] = ", ".join(datasets)
    starts = sorted(r.started_at for _, r in records if r.started_at)
    ends = sorted(r.finished_at for _, r in records if r.finished_at)
    if starts:
        out["first run started"] = starts[0]
    if ends:
        out["last run finished"] = ends[-1]
    return out


def what_ran(records: list[tuple[str, ResultRecord]]) -> list[str]:
    """Sentences saying what the runs directory holds: the matrix, durations, statuses."""
    from edgequant.results.store import record_mode

    def names(attr: str) -> str:
        return ", ".join(sorted({str(getattr(r, attr)) for _, r in records}))

    status = Counter(r.status for _, r in records)
    modes = Counter(record_mode(r, i) for i, r in records)
    durations = sorted(
        {
            float(r.loadgen["min_duration_ms"]) / 1000
            for _, r in records
            if r.loadgen and r.loadgen.get("min_duration_ms") is not None
        }
    )
    lines = [
        f"{len(records)} runs: {modes.get('performance', 0)} performance, {modes.get('accuracy', 0)} accuracy; "
        + ", ".join(f"{n} {s}" for s, n in sorted(status.items())),
        f"models: {names('model')}",
        f"runtimes: {names('backend')}",
        f"schemes: {names('scheme')}",
        f"scenarios: {', '.join(sorted({r.scenario for i, r in records if record_mode(r, i) == 'performance'})) or '-'}",
    ]
    if durations:
        lines.append(
            "LoadGen minimum duration per run: " + ", ".join(f"{d:g} s" for d in durations)
        )
    sweep: list[dict[str, Any]] = [
        r.extra["sweep"] for _, r in records if isinstance(r.extra.get("sweep"), dict)
    ]
    if sweep:
        wall = sum(float(s.get("seconds") or 0) for s in sweep)
        cpu = sum(float(s.get("child_cpu_s") or 0) for s in sweep)
        lines.append(
            f"time in the cells (artifact builds included): {wall:.0f} s wall, {cpu:.0f} s of CPU in "
            "the bench processes (wall grows with machine load, CPU much less)"
        )
    if any(r.simulated for _, r in records):
        lines.append(
            "rows marked simulated come from the fake-quant simulator — speed not representative"
        )
    return lines


def build_report(
    runs_dir: Path | str,
    out: Path | str | None = None,
    *,
    fmt: str | None = None,
    max_drop: float = 1.0,
) -> Path:
    """Write the report of ``runs_dir`` to ``out`` (default ``RUNS_DIR/report.<fmt>``); returns it.

    ``fmt`` defaults to the output file's suffix (``.html``, ``.md``, ``.csv``), else html.
    """
    from edgequant.report.html import render_html
    from edgequant.report.markdown import render_csv, render_markdown

    runs = Path(runs_dir)
    if fmt is None:
        suffix = Path(out).suffix.lstrip(".").lower() if out is not None else "html"
        fmt = (
            {"htm": "html", "markdown": "md"}.get(suffix, suffix)
            if suffix in (*FORMATS, "htm", "markdown")
            else "html"
        )
    if fmt not in FORMATS:
        raise ValidationError(f"unknown report format {fmt!r}; use html, md or csv")
    target = Path(out) if out is not None else runs / f"report.{fmt}"
    if target.is_dir():
        raise ValidationError(
            f"report output {target} is a directory; give a file name, e.g. {target / f'report.{fmt}'}"
        )
    data = collect(runs, max_drop=max_drop, plots=fmt == "html", inspect=fmt != "csv")
    text = {"html": render_html, "md": render_markdown, "csv": render_csv}[fmt](data)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ValidationError(f"cannot write the report to {target}: {e.strerror or e}") from None
    return target


__all__ = [
    "FORMATS",
    "ReportData",
    "build_report",
    "collect",
    "environment_summary",
    "load_records",
    "what_ran",
]
