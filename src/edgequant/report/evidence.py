"""The report's header on the machine and the trust in its numbers: CPU, roofline, noise, compliance.

Every format shows the same lines: which CPU ran the runs (model, INT8 class and what it means,
cores and threads used), the roofline measured on it (FP32 and INT8 peaks and their ratio), how
many runs were measured under noise and why, how the speed-ups were measured (paired rounds
with a 95% interval, or single runs), and the compliance verdicts.

Example:
    >>> from edgequant.results.record import ResultRecord
    >>> cpu = {"model": "Xeon", "int8_class": "avx2", "int8_description": "AVX2 pmaddubsw",
    ...        "logical_cores": 2}
    >>> rec = ResultRecord(model="m", backend="b", scheme="fp32", scenario="Offline",
    ...                    dataset="d", threads=2, batch_size=8, cpu_profile=cpu)
    >>> machine_lines([("r", rec)])[0]
    'CPU: Xeon · INT8 class avx2 (AVX2 pmaddubsw) · 2 logical cores, runs used 2 threads'
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from edgequant.report.tables import Row
from edgequant.results.record import ResultRecord


def machine_lines(records: list[tuple[str, ResultRecord]]) -> list[str]:
    """One line per CPU that ran the runs, then one per roofline measured on it."""
    cpus: dict[str, tuple[dict[str, Any], set[int]]] = {}
    for _, rec in records:
        cpu = rec.cpu_profile
        if isinstance(cpu, dict) and cpu.get("model"):
            key = f"{cpu.get('model')}|{cpu.get('int8_class')}"
            cpus.setdefault(key, (cpu, set()))[1].add(rec.threads)
    out = []
    for cpu, threads in cpus.values():
        cores = cpu.get("logical_cores")
        used = ", ".join(str(t) for t in sorted(threads))
        out.append(
            f"CPU: {cpu.get('model')} · INT8 class {cpu.get('int8_class')} "
            f"({cpu.get('int8_description')}) · "
            + (f"{cores} logical cores, " if cores else "")
            + f"runs used {used} thread{'s' * (used != '1')}"
        )
    if not cpus:
        out.append("CPU: not recorded by these runs (made by an older edgequant)")
    peaks: dict[tuple[str, int], dict[str, Any]] = {}
    reasons: set[str] = set()
    for _, rec in records:
        rl = rec.roofline if isinstance(rec.roofline, dict) else {}
        peak = rl.get("peak")
        if isinstance(peak, dict) and peak.get("fp32_gops"):
            peaks.setdefault((str(peak.get("cpu")), int(peak.get("threads") or 0)), peak)
        elif rl.get("reason"):
            reasons.add(str(rl["reason"]))
    for (cpu_name, n_threads), p in sorted(peaks.items()):
        ratio = float(p["int8_gops"]) / float(p["fp32_gops"])
        noisy = "" if p.get("noise", "quiet") == "quiet" else f" (measured while {p['noise']})"
        out.append(
            f"roofline of {cpu_name} with {n_threads} threads: FP32 {float(p['fp32_gops']):.0f} GOP/s, "
            f"INT8 {float(p['int8_gops']):.0f} GOP/s, INT8/FP32 {ratio:.2f}× "
            f"({p.get('engine', 'GEMM kernels')}, {p.get('gemm_size')}³ GEMMs){noisy}"
        )
    out += [f"roofline not measured: {r}" for r in sorted(reasons)]
    if peaks:
        out.append(
            "GOP/s = 2 × the model's MACs per sample × samples/s; % of peak is against the INT8 "
            "peak for integer schemes and the FP32 peak for float ones"
        )
    return out


def noise_lines(rows: list[Row]) -> list[str]:
    """How many measured runs were noisy, and why; never averaged away silently."""
    measured = [r for r in rows if r.status == "ok" and r.scenario != "accuracy"]
    known = [r for r in measured if r.noisy is not None]
    if not measured:
        return []
    if not known:
        return ["noise: not recorded by these runs (made by an older edgequant)"]
    noisy = [r for r in known if r.noisy]
    if not noisy:
        line = f"noise: all {len(known)} measured runs ran on a quiet machine"
    else:
        why: Counter[str] = Counter()
        for r in noisy:
            for reason in (r.noise_summary or "").removeprefix("noisy: ").split("; "):
                why[_reason_kind(reason)] += 1
        line = (
            f"noise: {len(noisy)} of {len(known)} measured runs were NOISY (flagged per row; "
            "their figures are shown as measured, not averaged): "
            + ", ".join(f"{what} in {n}" for what, n in why.most_common())
        )
    out = [line]
    if len(known) < len(measured):
        out.append(f"noise: not recorded for {len(measured) - len(known)} older run(s)")
    return out


def _reason_kind(reason: str) -> str:
    for key, kind in (
        ("other processes", "other processes' CPU use"),
        ("hypervisor", "hypervisor steal"),
        ("clock", "CPU clock drops"),
        ("throttling", "thermal throttling"),
    ):
        if key in reason:
            return kind
    return reason or "unspecified"


def interval_lines(rows: list[Row]) -> list[str]:
    """How the speed-ups were measured: paired rounds with intervals, or single runs."""
    speedups = [r for r in rows if r.speedup is not None and r.scheme != "fp32"]
    if not speedups:
        return []
    paired = [r for r in speedups if r.paired is not None]
    out = []
    if paired:
        methods = sorted({str(r.paired.get("method")) for r in paired if r.paired})
        out.append(
            f"speed-ups: {len(paired)} of {len(speedups)} measured in paired rounds (A B A B …), "
            f"shown as the median with its 95% interval ({', '.join(methods)})"
        )
    single = len(speedups) - len(paired)
    if single:
        out.append(
            f"speed-ups: {single} from single runs (marked 'single run, no interval'): one run "
            "each, minutes apart; on a shared machine such a ratio can move 20-40%"
        )
    return out


def compliance_lines(rows: list[Row]) -> list[str]:
    """One line per run that carries an MLPerf compliance verdict."""
    out = []
    for r in rows:
        comp = r.record.compliance if r.record is not None else None
        if isinstance(comp, dict):
            out.append(f"compliance {r.label} {r.scenario}: {comp.get('summary')}")
    return out


def header_lines(records: list[tuple[str, ResultRecord]], rows: list[Row]) -> list[str]:
    """All the lines above, in the report's order."""
    return (
        machine_lines(records) + noise_lines(rows) + interval_lines(rows) + compliance_lines(rows)
    )


__all__ = [
    "compliance_lines",
    "header_lines",
    "interval_lines",
    "machine_lines",
    "noise_lines",
]
