"""The report's numbers: runs joined with their fp32 baselines and their accuracy runs.

Everything derived here comes from measured fields of the records; a missing measurement stays
``None`` and is shown as such, never filled in.

* **speedup** is against *that runtime's* fp32 in the same scenario on the same device: throughput ratio in
  Offline/Server, p50-latency ratio in SingleStream/MultiStream;
* **top-1 drop** is fp32's top-1 on the same runtime (and device) minus this scheme's (points),
  falling back to the same runtime's fp32 on another device, then to another runtime's fp32 (in the registry's order, PyTorch first) when that runtime's fp32 accuracy was not measured;
* **size reduction** is fp32's artifact size on the same runtime divided by this one's.

Example:
    >>> from edgequant.results.record import ResultRecord
    >>> base = dict(model="m", backend="rt", scenario="Offline", dataset="synthetic",
    ...             threads=2, batch_size=1)
    >>> recs = [("a", ResultRecord(scheme="fp32", throughput_ips=100.0, size_bytes=400, **base)),
    ...         ("b", ResultRecord(scheme="w8a8", throughput_ips=250.0, size_bytes=100, **base))]
    >>> rows = build_rows(recs)
    >>> [(r.scheme, r.speedup, r.size_reduction) for r in rows]
    [('fp32', 1.0, 1.0), ('w8a8', 2.5, 4.0)]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from edgequant.backends import backend_names
from edgequant.measure.accuracy import interval_text
from edgequant.results.record import ResultRecord
from edgequant.results.store import LOCAL_DEVICE, record_device, record_mode

LATENCY_SCENARIOS = ("SingleStream", "MultiStream")
THROUGHPUT_SCENARIOS = ("Offline", "Server")
SCENARIO_ORDER = ("SingleStream", "MultiStream", "Server", "Offline", "accuracy")
FLOAT_SCHEMES = ("fp32", "fp16", "bf16")
#: INT8 artifacts slower than this many times fp32 get an ``inspect`` note in the report
SLOW_INT8_SPEEDUP = 1.5


@dataclass(kw_only=True)
class Row:
    """One line of a model's table: a performance run, or an accuracy-only configuration."""

    run_id: str
    model: str
    backend: str
    scheme: str
    scenario: str  # MLPerf scenario, or "accuracy" for a configuration measured for accuracy only
    status: str
    reason: str | None
    simulated: bool
    #: the device it ran on (``record.device``; ``"local"`` when the record names none)
    device: str = LOCAL_DEVICE
    throughput_ips: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    valid: bool | None = None
    top1_pct: float | None = None
    top1_drop: float | None = None
    top1_reference: str | None = None  # which fp32 the drop is against
    agreement_pct: float | None = None
    #: 95% intervals of the agreement (Wilson) and of the drop (paired, against the fp32
    #: reference on the same samples; only where the drop shown is that same figure)
    agreement_ci95: tuple[float, float] | None = None
    top1_drop_ci95: tuple[float, float] | None = None
    size_bytes: int | None = None
    size_reduction: float | None = None
    speedup: float | None = None
    joules_per_inference: float | None = None
    energy_reason: str | None = None
    artifact: str | None = None
    integer_activations: bool = False
    #: the noise verdict of the run: True noisy, False quiet, None not recorded
    noisy: bool | None = None
    noise_summary: str | None = None
    #: achieved GOP/s and its % of this CPU's matching (int8 or fp32) roofline peak
    gops: float | None = None
    pct_of_peak: float | None = None
    #: the paired speed-up of the record (median, ci95, rounds, baseline, ...), when measured so
    paired: dict[str, Any] | None = None
    #: the INT8 class of the CPU that ran it (e.g. avx512-vnni), when recorded
    cpu_class: str | None = None
    record: ResultRecord | None = None

    @property
    def config(self) -> tuple[str, str, str]:
        return (self.model, self.backend, self.scheme)

    @property
    def label(self) -> str:
        return f"{self.backend} {self.scheme}"

    def speed(self) -> float | None:
        """Bigger is faster: throughput in throughput scenarios, 1/p50 in latency scenarios."""
        if self.scenario in LATENCY_SCENARIOS:
            p50 = self.latency_ms.get("p50")
            return 1000.0 / p50 if p50 else None
        return self.throughput_ips


def integer_activations(record: ResultRecord) -> bool:
    """True when the scheme computes in integers (quantized activations), e.g. w8a8, w8-dyn."""
    detail = record.scheme_detail
    if isinstance(detail, dict) and "activations" in detail:
        return detail.get("activations") is not None
    return bool(re.match(r"^w\d+(a\d+|-dyn)", record.scheme))


def _num(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def backend_rank(name: str) -> int:
    """Position of a backend in the registry's order (unknown backends last).

    Example:
        >>> from edgequant.backends import backend_names
        >>> backend_rank(backend_names()[1]), backend_rank("no-such-runtime") == len(backend_names())
        (1, True)
    """
    order = backend_names()
    return order.index(name) if name in order else len(order)


def order_backends(names: Iterable[str]) -> list[str]:
    """Backend names in the registry's order, then the unknown ones alphabetically."""
    return sorted(set(names), key=lambda b: (backend_rank(b), b))


def row_sort_key(row: Row) -> tuple[Any, ...]:
    """The report's row order: model, device, runtime (registry order), fp32 first, scenario."""
    b = backend_rank(row.backend)
    s = (
        SCENARIO_ORDER.index(row.scenario)
        if row.scenario in SCENARIO_ORDER
        else len(SCENARIO_ORDER)
    )
    # fp32 first so each runtime's block reads from the baseline down
    return (row.model, device_key(row.device), b, row.backend, row.scheme != "fp32", row.scheme, s)


def device_key(name: str) -> tuple[bool, str]:
    """Sort key of device names: ``local`` first, then the others alphabetically."""
    return (name != LOCAL_DEVICE, name)


def devices_of(rows: Iterable[Row]) -> list[str]:
    """The devices of ``rows``, ``local`` first.

    Example:
        >>> base = dict(run_id="r", model="m", backend="b", scheme="fp32", scenario="Offline",
        ...             status="ok", reason=None, simulated=False)
        >>> devices_of([Row(device="rpi5", **base), Row(**base)])
        ['local', 'rpi5']
    """
    return sorted({r.device for r in rows}, key=device_key)


def build_rows(records: Iterable[tuple[str, ResultRecord]]) -> list[Row]:
    """Join performance runs with fp32 baselines and accuracy runs; see the module docstring."""
    perf: list[tuple[str, ResultRecord]] = []
    acc_runs: dict[_Key, tuple[str, ResultRecord]] = {}
    perf_acc: dict[_Key, tuple[str, ResultRecord]] = {}
    for run_id, rec in records:
        key = (rec.model, rec.backend, rec.scheme, record_device(rec))
        measured = _measured(rec)
        has_perf = rec.throughput_ips is not None or bool(rec.latency_ms)
        if record_mode(rec, run_id) == "accuracy":
            if measured or key not in acc_runs:  # a measured run wins over a failed attempt
                acc_runs[key] = (run_id, rec)
            if not has_perf and rec.status == "ok":
                continue  # an accuracy-only run: no performance row of its own
        perf.append((run_id, rec))
        if measured:  # a performance run that also measured accuracy
            perf_acc.setdefault(key, (run_id, rec))
    # a dedicated accuracy run is the better figure, when it measured one
    acc = {**perf_acc, **{k: v for k, v in acc_runs.items() if _measured(v[1])}}

    rows: list[Row] = []
    seen_configs: set[_Key] = set()
    for run_id, rec in perf:
        rows.append(_row(run_id, rec, rec.scenario))
        seen_configs.add((rec.model, rec.backend, rec.scheme, record_device(rec)))
    for key, (run_id, rec) in acc_runs.items():
        if (
            key not in seen_configs
        ):  # measured for accuracy only (e.g. every scheme of a small model)
            rows.append(_row(run_id, rec, "accuracy", performance=False))

    top1 = {
        k: _num((r.accuracy or {}).get("top1_pct")) for k, (_, r) in acc.items() if r.status == "ok"
    }
    agree = {
        k: _num((r.accuracy or {}).get("agreement_with_fp32_pct"))
        for k, (_, r) in acc.items()
        if r.status == "ok"
    }
    docs = {k: r.accuracy or {} for k, (_, r) in acc.items() if r.status == "ok"}
    base = {
        (r.model, r.backend, r.scenario, r.device): r
        for r in rows
        if r.scheme == "fp32" and r.status == "ok"
    }
    size_base = {
        (r.model, r.backend, r.device): r.size_bytes
        for r in rows
        if r.scheme == "fp32" and r.size_bytes
    }
    for row in rows:
        if row.status == "ok":
            _derive(row, top1, agree, base, size_base)
            _intervals(row, docs.get((row.model, row.backend, row.scheme, row.device), {}))
    return sorted(rows, key=row_sort_key)


_Key = tuple[str, str, str, str]  # (model, backend, scheme, device)


def _derive(
    row: Row,
    top1: dict[_Key, float | None],
    agree: dict[_Key, float | None],
    base: dict[tuple[str, str, str, str], Row],
    size_base: dict[tuple[str, str, str], int],
) -> None:
    """Fill a row's accuracy, drop, speed-up and size reduction against its fp32 baselines."""
    key = (row.model, row.backend, row.scheme, row.device)
    row.top1_pct = top1.get(key, _other_device(top1, key))
    row.agreement_pct = agree.get(key, row.agreement_pct)
    ref_key, ref_top1 = _fp32_top1(row, top1)
    if row.top1_pct is not None and ref_top1 is not None:
        row.top1_drop = ref_top1 - row.top1_pct
        row.top1_reference = ref_key
    b = base.get((row.model, row.backend, row.scenario, row.device))
    if b is not None and row.scenario != "accuracy":
        mine, theirs = row.speed(), b.speed()
        if mine and theirs:
            row.speedup = mine / theirs
    if row.paired is not None and _num(row.paired.get("median")):
        # interleaved rounds measure the ratio better than two separate runs
        row.speedup = _num(row.paired.get("median"))
    fp32_size = size_base.get((row.model, row.backend, row.device))
    if fp32_size and row.size_bytes:
        row.size_reduction = fp32_size / row.size_bytes


def _other_device(values: dict[_Key, float | None], key: _Key) -> float | None:
    """The same configuration's figure measured on another device (``local`` first), if any."""
    model, backend, scheme, _ = key
    found = sorted(
        (device_key(d), v)
        for (m, b, s, d), v in values.items()
        if (m, b, s) == (model, backend, scheme) and v is not None
    )
    return found[0][1] if found else None


def _measured(rec: ResultRecord) -> bool:
    return bool(rec.status == "ok" and rec.accuracy and rec.accuracy.get("top1_pct") is not None)


def _interval(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = _num(value[0]), _num(value[1])
        if lo is not None and hi is not None:
            return lo, hi
    return None


def _intervals(row: Row, acc: dict[str, Any]) -> None:
    """The row's 95% intervals from its accuracy record (the one its agreement comes from): the
    agreement's, and the drop's when the drop shown is the recorded one (its fp32 scored what the
    fp32 reference scored), since that interval is about that pair of models."""
    row.agreement_ci95 = _interval(acc.get("agreement_ci95_pct"))
    recorded = _num(acc.get("drop_vs_fp32_pts"))
    if row.top1_drop is not None and recorded is not None and abs(row.top1_drop - recorded) < 1e-6:
        row.top1_drop_ci95 = _interval(acc.get("drop_ci95_pts"))


def _fp32_top1(row: Row, top1: dict[_Key, float | None]) -> tuple[str | None, float | None]:
    own = top1.get((row.model, row.backend, "fp32", row.device))
    if own is None:
        own = _other_device(top1, (row.model, row.backend, "fp32", row.device))
    if own is not None:
        return f"{row.backend} fp32", own
    others = sorted(
        (
            (b, v)
            for (m, b, s, d), v in top1.items()
            if m == row.model and s == "fp32" and v is not None
        ),
        key=lambda bv: (backend_rank(bv[0]), bv[0]),
    )
    if others:
        return f"{others[0][0]} fp32", others[0][1]
    return None, None


#: the Row fields that are the record's fields of the same name, as recorded
_AS_RECORDED = ("model", "backend", "scheme", "status", "reason", "size_bytes", "artifact")


def _row(run_id: str, rec: ResultRecord, scenario: str, *, performance: bool = True) -> Row:
    # only a completed run was measured: an interrupted one's partial LoadGen log is no number
    performance = performance and rec.status == "ok"
    lat = {k: float(v) for k, v in (rec.latency_ms or {}).items() if _num(v) is not None}
    energy = rec.energy or {}
    joules = _num(energy.get("joules_per_inference"))
    energy_reason = None
    if joules is None:
        energy_reason = rec.energy_unavailable_reason or "no energy sensor reading in this run"
    valid = (rec.loadgen or {}).get("valid")
    noise = rec.noise if isinstance(rec.noise, dict) else {}
    rl = rec.roofline if isinstance(rec.roofline, dict) and performance else {}
    paired = rec.paired if isinstance(rec.paired, dict) and performance else None
    return Row(
        run_id=run_id,
        scenario=scenario,
        **{name: getattr(rec, name) for name in _AS_RECORDED},
        simulated=bool(rec.simulated),
        device=record_device(rec),
        throughput_ips=rec.throughput_ips if performance else None,
        latency_ms=lat if performance else {},
        valid=None if (valid is None or not performance) else bool(valid),
        agreement_pct=_num((rec.accuracy or {}).get("agreement_with_fp32_pct")),
        joules_per_inference=joules,
        energy_reason=energy_reason,
        integer_activations=integer_activations(rec),
        noisy=None if "noisy" not in noise or not performance else bool(noise["noisy"]),
        noise_summary=noise.get("summary") if performance else None,
        gops=_num(rl.get("achieved_gops")),
        pct_of_peak=_num(rl.get("pct_of_peak")),
        paired=paired,
        cpu_class=(rec.cpu_profile or {}).get("int8_class") if performance else None,
        record=rec,
    )


def run_warnings(rows: Iterable[Row]) -> list[str]:
    """Distinct warnings the runs recorded (``extra["warnings"]``), each with the rows it concerns.

    E.g. ``random weights: accuracy not meaningful (pytorch fp32, pytorch fp16)``.
    """
    rows = list(rows)
    found: dict[str, dict[str, None]] = {}
    for r in rows:
        warnings = (r.record.extra.get("warnings") if r.record is not None else None) or []
        for w in warnings if isinstance(warnings, list) else []:
            found.setdefault(str(w), {})[r.label] = None
    configs = {r.label for r in rows}
    out = []
    for w, labels in found.items():
        which = "all runs" if set(labels) == configs else ", ".join(labels)
        out.append(f"{w} ({which})")
    return out


def models_of(rows: Iterable[Row]) -> list[str]:
    """Model names in first-seen (sorted) order."""
    out: dict[str, None] = {}
    for r in rows:
        out.setdefault(r.model, None)
    return list(out)


def primary_scenario(rows: Iterable[Row]) -> str | None:
    """The scenario a model's recommendation ranks by: Offline when measured, else the first."""
    scen = {r.scenario for r in rows if r.status == "ok" and r.scenario != "accuracy"}
    for s in ("Offline", "Server", "SingleStream", "MultiStream"):
        if s in scen:
            return s
    return None


def fmt_bytes(n: float | None) -> str:
    """Human-readable size: ``fmt_bytes(3_500_000) == '3.5 MB'``."""
    if n is None:
        return "-"
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{int(n)} B"


def fmt_num(v: float | None, digits: int = 3) -> str:
    """Short number or ``-`` when not measured."""
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


#: the note under a table whose accuracy cells carry intervals
CI_NOTE = (
    "[a, b] beside a top-1 drop or an agreement: its 95% interval from the samples scored "
    "(the drop: Newcombe's paired interval against the fp32 reference on the same samples; the "
    "agreement: Wilson's). On a few hundred images one image moves a figure by tenths of a point: "
    "read a drop whose interval spans the budget as not yet decided."
)


#: (header, getter) of the tables in every format
def table_columns(devices: bool = False) -> list[tuple[str, Any]]:
    """The per-model table's columns as (header, function of Row -> text).

    ``devices`` adds a ``device`` column first (reports of runs on more than one device).
    """

    def valid(r: Row) -> str:
        return "-" if r.valid is None else ("VALID" if r.valid else "INVALID")

    def energy(r: Row) -> str:
        if r.status != "ok":
            return "-"
        if r.joules_per_inference is not None:
            return f"{r.joules_per_inference * 1000:.3g} mJ"
        # the reason is the same on every row of a machine: spelled out once under the table
        return "n/a (see note)"

    def drop(r: Row) -> str:
        if r.top1_drop is None:
            return "-"
        return f"{r.top1_drop:.2f}" + interval_text(r.top1_drop_ci95)

    def agreement(r: Row) -> str:
        return fmt_num(r.agreement_pct, 4) + (
            interval_text(r.agreement_ci95) if r.agreement_pct is not None else ""
        )

    def pct(r: Row) -> str:
        if r.pct_of_peak is None:
            return "-"
        peak = ((r.record.roofline or {}).get("peak") if r.record is not None else None) or {}
        noisy = peak.get("noise", "quiet") != "quiet"
        # a peak measured beside other work is too low: the percentage is an upper bound
        return f"{r.pct_of_peak:.1f}%" + (" (peak measured under noise)" if noisy else "")

    return [
        *([("device", lambda r: r.device)] if devices else []),
        ("runtime", lambda r: r.backend + (" (simulated)" if r.simulated else "")),
        ("scheme", lambda r: r.scheme),
        ("scenario", lambda r: r.scenario),
        (
            "status",
            lambda r: r.status if r.status == "ok" else f"{r.status}: {r.reason or 'no reason'}",
        ),
        ("throughput (img/s)", lambda r: fmt_num(r.throughput_ips)),
        ("p50 ms", lambda r: fmt_num(r.latency_ms.get("p50"))),
        ("p90 ms", lambda r: fmt_num(r.latency_ms.get("p90"))),
        ("p99 ms", lambda r: fmt_num(r.latency_ms.get("p99"))),
        ("GOP/s", lambda r: fmt_num(r.gops)),
        ("% of peak", pct),
        ("speedup vs fp32", speedup_text),
        ("CPU class", lambda r: r.cpu_class or "-"),
        ("top-1 %", lambda r: fmt_num(r.top1_pct, 4)),
        ("top-1 drop (pts)", drop),
        ("agreement %", agreement),
        ("size", lambda r: fmt_bytes(r.size_bytes)),
        (
            "size reduction",
            lambda r: "-" if r.size_reduction is None else f"{r.size_reduction:.2f}×",
        ),
        ("energy / inference", energy),
        ("LoadGen", valid),
        ("noise", noise_flag),
    ]


def speedup_text(r: Row) -> str:
    """The speed-up with its 95% interval (paired rounds), or the plain ratio marked as such.

    Example:
        >>> row = Row(run_id="r", model="m", backend="b", scheme="w8a8", scenario="Offline",
        ...           status="ok", reason=None, simulated=False, speedup=2.5)
        >>> speedup_text(row)
        '2.50× (single run, no interval)'
        >>> row.paired = {"median": 2.58, "ci95": [2.51, 2.66], "rounds": 6}
        >>> speedup_text(row)
        '2.58× [2.51, 2.66] (6 rounds)'
    """
    p = r.paired
    if p is not None and _num(p.get("median")) is not None:
        ci = p.get("ci95")
        n = p.get("rounds")
        if isinstance(ci, list | tuple) and len(ci) == 2 and None not in ci:
            return (
                f"{float(p['median']):.2f}× [{float(ci[0]):.2f}, {float(ci[1]):.2f}] ({n} rounds)"
            )
        return f"{float(p['median']):.2f}× ({n} round{'s' * (n != 1)}, no interval)"
    if r.speedup is None:
        return "-"
    if r.scheme == "fp32":
        return "1× (baseline)"
    return f"{r.speedup:.2f}× (single run, no interval)"


def noise_flag(r: Row) -> str:
    """``NOISY`` for a run measured under noise, ``quiet``, or ``-`` when not recorded."""
    if r.noisy is None:
        return "-"
    return "NOISY" if r.noisy else "quiet"


__all__ = [
    "SLOW_INT8_SPEEDUP",
    "Row",
    "build_rows",
    "device_key",
    "devices_of",
    "fmt_bytes",
    "fmt_num",
    "integer_activations",
    "models_of",
    "noise_flag",
    "primary_scenario",
    "run_warnings",
    "speedup_text",
    "table_columns",
]
