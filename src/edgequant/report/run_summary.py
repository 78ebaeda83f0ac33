"""The summary of one benchmark run, as ``edgequant bench`` prints it (the report renders, the CLI prints).

Example:
    >>> print(run_summary(ResultRecord.load(Path("runs/mv2"))))   # doctest: +SKIP
    mobilenet_v2 · openvino · w8a8 · Offline · 2 threads · batch 8
    ...
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgequant.console import format_table
from edgequant.measure.accuracy import flips_text, interval_text

if TYPE_CHECKING:
    from edgequant.results.record import ResultRecord


def run_summary(rec: ResultRecord) -> str:
    """The one-screen summary ``edgequant bench`` prints at the end of a run.

    Example:
        >>> from edgequant.results.record import ResultRecord
        >>> rec = ResultRecord(model="m", backend="b", scheme="fp32", scenario="Offline",
        ...                    dataset="synthetic", threads=2, batch_size=8, status="na",
        ...                    reason="no bfloat16 kernels")
        >>> print(run_summary(rec))
        m · b · fp32 · Offline · 2 threads · batch 8
        ============================================
        status: NA: no bfloat16 kernels
        record: result.json
    """
    lg = rec.loadgen or {}
    head = f"{rec.model} · {rec.backend} · {rec.scheme} · {rec.scenario} · {rec.threads} threads · batch {rec.batch_size}"
    lines = [head, "=" * min(len(head), 100)]
    if rec.status != "ok":
        lines.append(f"status: {rec.status.upper()}: {rec.reason}")
    if lg:
        verdict = "VALID" if rec.valid else "INVALID"
        lines.append(
            f"LoadGen result: {verdict}"
            + ("" if rec.valid else f" ({'; '.join(lg.get('reasons') or [])})")
        )
        lines.append(f"metric: {lg.get('metric')}")
    lat = rec.latency_ms or {}
    rows: list[list[Any]] = []
    if lat and rec.scenario != "Offline":  # Offline "latency" is time since the one query
        rows.append(["latency ms", *(lat.get(k) for k in ("mean", "p50", "p90", "p95", "p99"))])
    if rows:
        lines.append(format_table(rows, ["", "mean", "p50", "p90", "p95", "p99"]))
    es = lg.get("early_stopping") or {}
    ests = {k: v for k, v in es.items() if k.endswith("_estimate_ms")}
    if ests:
        lines.append(
            "early-stopping estimates: "
            + ", ".join(f"{k.removesuffix('_estimate_ms')} {v:.3f} ms" for k, v in ests.items())
        )
    if rec.throughput_ips is not None:
        lines.append(f"throughput: {rec.throughput_ips:.1f} samples/s")
    lines += evidence_lines(rec)
    acc = rec.accuracy
    if acc:
        cis = {"top1_pct": "top1_ci95_pct", "agreement_with_fp32_pct": "agreement_ci95_pct"}
        parts = [
            f"{k} {acc[k]:.2f}%" + interval_text(acc.get(cis.get(k, "")))
            for k in ("top1_pct", "top5_pct", "agreement_with_fp32_pct")
            if acc.get(k) is not None
        ]
        if acc.get("drop_vs_fp32_pts") is not None:
            parts.append(
                f"top-1 drop vs fp32 {acc['drop_vs_fp32_pts']:.2f} points"
                + interval_text(acc.get("drop_ci95_pts"))
            )
        lines.append(f"accuracy ({acc['samples']} samples, [95% interval]): " + ", ".join(parts))
        margins = (acc.get("reference") or {}).get("margins")
        if margins:
            lines.append(f"changed answers: {flips_text(margins)}")
    if rec.size_bytes is not None:
        wb = f", weights {rec.weight_bytes / 1e6:.2f} MB" if rec.weight_bytes else ""
        lines.append(f"artifact: {rec.size_bytes / 1e6:.2f} MB{wb}  ({rec.artifact})")
    if rec.peak_rss_bytes:
        lines.append(f"peak RSS: {rec.peak_rss_bytes / 2**20:.0f} MiB")
    if rec.energy:
        e = rec.energy
        jpi = e.get("joules_per_inference")
        lines.append(
            f"energy ({e['source']}): {'n/a' if jpi is None else f'{jpi * 1e3:.2f} mJ/inference'}, avg {e['avg_power_w']:.1f} W"
        )
    elif rec.status == "ok":
        lines.append(f"energy: n/a ({rec.energy_unavailable_reason})")
    for w in rec.extra.get("warnings", []):
        lines.append(f"note: {w}")
    lines.append(
        f"record: {Path(lg.get('log_dir', '.')).parent / 'result.json' if lg else 'result.json'}"
    )
    return "\n".join(lines)


def evidence_lines(rec: ResultRecord) -> list[str]:
    """The lines on the conditions of the run: noise, the CPU and its roofline, compliance.

    Example:
        >>> from edgequant.results.record import ResultRecord
        >>> rec = ResultRecord(model="m", backend="b", scheme="w8a8", scenario="Offline",
        ...                    dataset="d", threads=2, batch_size=8,
        ...                    noise={"noisy": True, "summary": "noisy: other processes used 0.97 cores"})
        >>> evidence_lines(rec)
        ['NOISY RUN: noisy: other processes used 0.97 cores (the figures above may be low; run again on a quiet machine)']
    """
    out: list[str] = []
    noise = rec.noise or {}
    if noise.get("noisy"):
        out.append(
            f"NOISY RUN: {noise.get('summary')} (the figures above may be low; run again on a "
            "quiet machine)"
        )
    elif noise:
        out.append(f"machine: {noise.get('summary', 'quiet')} during the run")
    cpu = rec.cpu_profile or {}
    if cpu:
        out.append(
            f"CPU: {cpu.get('model')} · INT8 class {cpu.get('int8_class')} "
            f"({cpu.get('int8_description')}) · {rec.threads} threads"
        )
    rl = rec.roofline or {}
    if rl.get("achieved_gops") is not None:
        peak = rl.get("peak") or {}
        text = f"roofline: {rl['achieved_gops']:.1f} GOP/s"
        if rl.get("pct_of_peak") is not None:
            text += (
                f" = {rl['pct_of_peak']:.1f}% of this CPU's {rl.get('precision')} peak "
                f"({rl.get('peak_gops'):.0f} GOP/s; fp32 {peak.get('fp32_gops')}, int8 "
                f"{peak.get('int8_gops')} GOP/s)"
            )
        out.append(text)
    if rl.get("reason"):
        out.append(f"roofline: {rl['reason']}")
    comp = rec.compliance
    if comp:
        out.append(f"compliance: {comp.get('summary')}")
    return out


__all__ = ["evidence_lines", "run_summary"]
