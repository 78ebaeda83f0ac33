"""Per-model recommendation, and what ``edgequant inspect`` says about slow INT8 artifacts.

The recommendation is the fastest measured configuration (runtime × scheme) whose top-1 drop is
within the budget (``max_drop`` points); with runs on several devices there is one per model and
device (``device=``), ranked only among that device's runs. When no accuracy was measured for a model it says so and
recommends on speed alone; it never assumes an accuracy. Simulated backends are never recommended
(their speed is not representative).

Example:
    >>> from edgequant.results.record import ResultRecord
    >>> from edgequant.report.tables import build_rows
    >>> base = dict(model="m", backend="rt", scenario="Offline", dataset="synthetic",
    ...             threads=2, batch_size=1)
    >>> rows = build_rows([("a", ResultRecord(scheme="fp32", throughput_ips=100.0, **base)),
    ...                    ("b", ResultRecord(scheme="w8a8", throughput_ips=300.0, **base))])
    >>> print(recommend(rows, "m").text)
    rt w8a8: 300 img/s in Offline, 3.00× rt fp32. On speed only: accuracy was not measured for m (give labelled data, e.g. --data imagenet:DIR, to rank by accuracy too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgequant.report.tables import (
    SLOW_INT8_SPEEDUP,
    Row,
    devices_of,
    fmt_num,
    primary_scenario,
)


@dataclass(kw_only=True)
class Recommendation:
    """The pick for one model, in words, and the row it points at (None when nothing ran)."""

    model: str
    text: str
    choice: Row | None = None
    accuracy_measured: bool = False
    notes: list[str] = field(default_factory=list)
    #: the device it is for, when the report compares devices (None: the only device)
    device: str | None = None

    @property
    def title(self) -> str:
        """``model``, or ``model on device`` when the report compares devices."""
        return self.model if self.device is None else f"{self.model} on {self.device}"


def recommend(
    rows: list[Row], model: str, max_drop: float = 1.0, *, device: str | None = None
) -> Recommendation:
    """The fastest configuration of ``model`` within ``max_drop`` top-1 points of fp32.

    ``device`` restricts it to the runs on that device (the rest of the text is the same).
    """
    mine = [r for r in rows if r.model == model and (device is None or r.device == device)]
    rec = _recommend(mine, model, max_drop)
    rec.device = device
    if device is not None and rec.choice is None:
        rec.text = rec.text.replace(f" of {model}", f" of {model} on {device}")
    return rec


def _recommend(mine: list[Row], model: str, max_drop: float) -> Recommendation:
    scenario = primary_scenario(mine)
    notes: list[str] = []
    if scenario is None:
        return Recommendation(
            model=model, text=f"no successful performance run of {model}; nothing to recommend"
        )
    cands = [
        r
        for r in mine
        if r.scenario == scenario and r.status == "ok" and not r.simulated and r.speed()
    ]
    if not cands:
        return Recommendation(
            model=model, text=f"no measured, non-simulated run of {model} in {scenario}"
        )
    accuracy_measured = any(r.top1_pct is not None for r in mine)
    if accuracy_measured:
        within = [r for r in cands if r.top1_drop is not None and r.top1_drop <= max_drop]
        too_lossy = [r for r in cands if r.top1_drop is not None and r.top1_drop > max_drop]
        unmeasured = [r for r in cands if r.top1_drop is None]
        if too_lossy:
            notes.append(
                f"excluded for losing more than {max_drop:g} points of top-1: "
                + ", ".join(
                    f"{r.label} (lost {r.top1_drop:.2f})"
                    for r in too_lossy
                    if r.top1_drop is not None
                )
            )
        if unmeasured:
            notes.append(
                "not considered because their accuracy was not measured: "
                + ", ".join(r.label for r in unmeasured)
            )
        if not within:
            return Recommendation(
                model=model,
                accuracy_measured=True,
                notes=notes,
                text=f"no configuration of {model} stays within {max_drop:g} top-1 points of fp32",
            )
        best = max(within, key=lambda r: r.speed() or 0.0)
        ci = best.top1_drop_ci95
        acc = (
            f", top-1 {best.top1_pct:.2f}% ({_drop_words(best)} {best.top1_reference}"
            + (f"; drop 95% interval [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
            + ")"
        )
        if ci and ci[1] > max_drop:
            notes.append(
                f"the {best.label} drop's 95% interval reaches {ci[1]:.2f} points, past the "
                f"{max_drop:g}-point budget: the images scored do not settle it; score more "
                "(or a held-out set) before deploying on that figure"
            )
        text = f"{_speed_words(best, scenario)}{acc}; the fastest within {max_drop:g} point(s) of fp32."
    else:
        best = max(cands, key=lambda r: r.speed() or 0.0)
        text = (
            f"{_speed_words(best, scenario)}. On speed only: accuracy was not measured for {model} "
            "(give labelled data, e.g. --data imagenet:DIR, to rank by accuracy too)."
        )
    if best.valid is False:
        notes.append(
            f"LoadGen judged the {best.label} {scenario} run INVALID; lengthen duration_s to confirm it"
        )
    return Recommendation(
        model=model, text=text, choice=best, accuracy_measured=accuracy_measured, notes=notes
    )


def _speed_words(r: Row, scenario: str) -> str:
    if scenario in ("Offline", "Server"):
        speed = f"{fmt_num(r.throughput_ips)} img/s in {scenario}"
    else:
        speed = f"p50 {fmt_num(r.latency_ms.get('p50'))} ms in {scenario}"
    vs = "" if r.speedup is None or r.scheme == "fp32" else f", {r.speedup:.2f}× {r.backend} fp32"
    if vs:
        ci = (r.paired or {}).get("ci95")
        if isinstance(ci, list | tuple) and len(ci) == 2 and None not in ci:
            vs += f" (95% CI {float(ci[0]):.2f}-{float(ci[1]):.2f}×)"
        elif r.cpu_class:  # a record of this version (older ones say nothing on intervals)
            vs += " (single run, no interval)"
        if r.cpu_class:
            vs += f" on CPU class {r.cpu_class}"
    return f"{r.label}: {speed}{vs}"


def _drop_words(r: Row) -> str:
    if r.top1_drop is None:
        return "drop not measured vs"
    if r.top1_drop > 0:
        return f"{r.top1_drop:.2f} points below"
    return "no drop vs" if r.top1_drop == 0 else f"{-r.top1_drop:.2f} points above"


@dataclass(kw_only=True)
class SlowNote:
    """An integer artifact that ran less than :data:`SLOW_INT8_SPEEDUP` × its runtime's fp32."""

    row: Row
    summary: str
    notes: list[str] = field(default_factory=list)


def slow_int8_notes(rows: list[Row]) -> list[SlowNote]:
    """What the build's inspector stored about each slow integer artifact (once per artifact).

    The report reads stored data only: the ``inspect_summary`` (and ``inspect_notes``) that the
    backend's ``prepare()`` saved in the artifact metadata, as copied into the result record, else
    in the artifact's ``artifact.json``. No runtime is loaded while rendering.

    Example:
        >>> from edgequant.results.record import ResultRecord
        >>> from edgequant.report.tables import build_rows
        >>> base = dict(model="m", backend="rt", scenario="Offline", dataset="synthetic",
        ...             threads=2, batch_size=1)
        >>> meta = {"inspect_summary": "1/4 convs in integer precision"}
        >>> rows = build_rows([
        ...     ("a", ResultRecord(scheme="fp32", throughput_ips=100.0, **base)),
        ...     ("b", ResultRecord(scheme="w8a8", throughput_ips=110.0, artifact_metadata=meta,
        ...                        **base))])
        >>> [n.summary for n in slow_int8_notes(rows)]
        ['1/4 convs in integer precision']
    """
    out: list[SlowNote] = []
    done: dict[str, tuple[str, list[str]]] = {}
    for r in rows:
        if r.status != "ok" or r.simulated or not r.integer_activations:
            continue
        if r.speedup is None or r.speedup >= SLOW_INT8_SPEEDUP:
            continue
        key = r.artifact or r.run_id
        if key not in done:
            done[key] = stored_inspection(r)
        summary, notes = done[key]
        out.append(SlowNote(row=r, summary=summary, notes=notes))
    return out


def stored_inspection(r: Row) -> tuple[str, list[str]]:
    """``(summary, notes)`` of the inspection stored with a run's artifact, or why there is none."""
    meta = (r.record.artifact_metadata if r.record is not None else None) or {}
    if not meta.get("inspect_summary") and r.artifact:
        meta = _artifact_json(Path(r.artifact)) or meta
    summary = meta.get("inspect_summary")
    if isinstance(summary, str) and summary:
        notes = meta.get("inspect_notes")
        return summary, [str(n) for n in notes] if isinstance(notes, list) else []
    where = f" `edgequant inspect {r.artifact}`" if r.artifact else " `edgequant inspect` on it"
    return f"no inspection was stored with this artifact; run{where}", []


def _artifact_json(artifact: Path) -> dict[str, Any] | None:
    path = (artifact if artifact.is_dir() else artifact.parent) / "artifact.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None  # gone (cache cleared) or unreadable: the caller says what to run
    meta = data.get("metadata", data) if isinstance(data, dict) else None
    return meta if isinstance(meta, dict) else None


def recommend_all(
    rows: list[Row], models: list[str], max_drop: float = 1.0
) -> list[Recommendation]:
    """One recommendation per model, or per model and device when the rows span devices.

    Example:
        >>> recommend_all([], [])
        []
    """
    devices = devices_of(rows)
    if len(devices) <= 1:
        return [recommend(rows, m, max_drop) for m in models]
    return [
        recommend(rows, m, max_drop, device=d)
        for m in models
        for d in devices
        if any(r.model == m and r.device == d for r in rows)
    ]


__all__ = [
    "Recommendation",
    "SlowNote",
    "recommend",
    "recommend_all",
    "slow_int8_notes",
    "stored_inspection",
]
