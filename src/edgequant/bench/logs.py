"""Read LoadGen's own logs (``mlperf_log_detail.txt`` and ``mlperf_log_summary.txt``).

The detail log is one ``:::MLLOG {json}`` line per event; the figures recorded are LoadGen's,
never recomputed: latency percentiles, throughput per the scenario's metric, validity and the
reasons LoadGen gives, and the early-stopping estimates.

Example:
    >>> res = parse_logs(run_dir / "loadgen")            # doctest: +SKIP
    >>> res.valid, res.latency_ms["p90"], res.throughput_ips   # doctest: +SKIP
    (True, 1.83, 544.2)
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgequant.errors import BenchmarkError

DETAIL = "mlperf_log_detail.txt"
SUMMARY = "mlperf_log_summary.txt"
ACCURACY = "mlperf_log_accuracy.json"
_PCT = {
    "50.00": "p50",
    "90.00": "p90",
    "95.00": "p95",
    "97.00": "p97",
    "99.00": "p99",
    "99.90": "p99_9",
}
#: LoadGen's boolean checks and the reason each gives when it fails
_CHECKS = {
    "result_min_duration_met": "min duration not met",
    "result_min_queries_met": "min query count not met",
    "result_perf_constraints_met": "latency constraint not met",
    "early_stopping_met": "early stopping not satisfied",
}


@dataclass(kw_only=True)
class LoadGenResult:
    """What LoadGen measured and decided, in our units."""

    scenario: str
    mode: str
    valid: bool
    reasons: list[str] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    throughput_ips: float | None = None
    query_count: int | None = None
    samples_per_query: int | None = None
    min_duration_ms: int | None = None
    min_query_count: int | None = None
    target_qps: float | None = None
    target_latency_ms: float | None = None
    latency_percentile: float | None = None
    early_stopping: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_detail(path: Path) -> dict[str, Any]:
    """``{key: value}`` of the detail log (the last value wins); errors/warnings collected too."""
    values: dict[str, Any] = {"_errors": [], "_warnings": []}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        raise BenchmarkError(f"cannot read LoadGen's log {path}: {e}") from None
    for line in lines:
        if not line.startswith(":::MLLOG"):
            continue
        try:
            ev = json.loads(line[len(":::MLLOG") :])
        except json.JSONDecodeError:
            continue  # a partial last line of an interrupted run
        key, value = ev.get("key"), ev.get("value")
        meta = ev.get("metadata") or {}
        if meta.get("is_error"):
            values["_errors"].append(f"{key}: {value}")
        elif meta.get("is_warning") and "Logging allocation" not in str(value):
            values["_warnings"].append(f"{key}: {value}")
        values[key] = value
    return values


def _ms(ns: Any) -> float | None:
    return None if ns is None else float(ns) / 1e6


def parse_logs(log_dir: Path) -> LoadGenResult:
    """Parse a LoadGen output directory; a run that did not finish is INVALID with why."""
    detail_path = Path(log_dir) / DETAIL
    if not detail_path.is_file():
        raise BenchmarkError(f"LoadGen wrote no log in {log_dir}")
    d = read_detail(detail_path)
    scenario = str(d.get("effective_scenario") or d.get("requested_scenario") or "")
    mode = str(d.get("effective_test_mode") or d.get("requested_test_mode") or "")
    finished = "result_validity" in d
    res = LoadGenResult(
        scenario=scenario,
        mode=mode,
        valid=finished and d.get("result_validity") == "VALID",
        query_count=d.get("result_query_count"),
        samples_per_query=d.get("effective_samples_per_query"),
        min_duration_ms=d.get("effective_min_duration_ms"),
        min_query_count=d.get("effective_min_query_count"),
        target_qps=d.get("effective_target_qps"),
        target_latency_ms=_ms(d.get("effective_target_latency_ns") or None),
        latency_percentile=d.get("effective_target_latency_percentile"),
        errors=list(d["_errors"]),
        warnings=list(d["_warnings"]),
    )
    if not finished:
        if mode != "AccuracyOnly":
            res.reasons.append(
                "LoadGen did not finish the run (interrupted or crashed); logs are partial"
            )
        return res
    for key, why in _CHECKS.items():
        if d.get(key) is False:
            res.reasons.append(why)
    invalid_reason = str(d.get("result_invalid_reason") or "").strip()
    if invalid_reason and not res.valid:
        res.reasons.append(f"LoadGen: {invalid_reason}")
    if not res.valid and not res.reasons:
        res.reasons.append(f"LoadGen judged the run {d.get('result_validity')}")
    res.reasons += [e for e in res.errors if "error_runtime" in e]

    # MultiStream reports per-query latencies under *_per_query_*; the others per sample
    per_query = "result_mean_query_latency_ns" in d
    prefix = (
        "result_{}_percentile_per_query_latency_ns"
        if per_query
        else "result_{}_percentile_latency_ns"
    )
    lat: dict[str, float] = {}
    mean = d.get("result_mean_query_latency_ns" if per_query else "result_mean_latency_ns")
    if mean is not None:
        lat["mean"] = float(mean) / 1e6
    for pct, name in _PCT.items():
        v = d.get(prefix.format(pct))
        if v is not None:
            lat[name] = float(v) / 1e6
    for src, name in (("min", "min"), ("max", "max")):
        v = d.get(f"result_{src}_query_latency_ns" if per_query else f"result_{src}_latency_ns")
        if v is not None:
            lat[name] = float(v) / 1e6
    res.latency_ms = lat
    res.throughput_ips = _throughput(scenario, d, lat)
    res.early_stopping = _early_stopping(d)
    return res


def _throughput(scenario: str, d: dict[str, Any], lat: dict[str, float]) -> float | None:
    """Samples per second as LoadGen states it for the scenario."""
    if scenario == "Offline":
        v = d.get("result_samples_per_second")
    elif scenario == "Server":
        v = d.get("result_completed_samples_per_sec")
    elif scenario == "SingleStream":
        v = d.get("result_qps_with_loadgen_overhead")
    else:
        # MultiStream queries run back to back: samples per query over the mean query latency
        spq = d.get("effective_samples_per_query") or 8
        v = spq * 1000.0 / lat["mean"] if lat.get("mean") else None
    return None if v is None else float(v)


def _early_stopping(d: dict[str, Any]) -> dict[str, Any]:
    """LoadGen's early-stopping verdict, its text, and its percentile estimates in ms."""
    out: dict[str, Any] = {}
    if "early_stopping_met" in d:
        out["met"] = bool(d["early_stopping_met"])
    text = str(d.get("early_stopping_result") or "").strip()
    if text:
        out["text"] = re.sub(r"\s+", " ", text)
        for pct, ns in re.findall(r"Early stopping ([\d.]+)th percentile estimate: (\d+)", text):
            out[f"p{float(pct):g}_estimate_ms"] = int(ns) / 1e6
    return out


def read_summary(log_dir: Path) -> str:
    """LoadGen's human summary text ('' when the run did not get that far)."""
    p = Path(log_dir) / SUMMARY
    return p.read_text(errors="replace") if p.is_file() else ""
