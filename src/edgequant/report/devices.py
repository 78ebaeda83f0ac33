"""The report across devices: each device's CPU and runtimes, and speed-ups side by side.

Records without a device ran ``local``. With runs on one device none of this is shown, and the
report looks as it does for a single machine.

Example:
    >>> from edgequant.results.record import ResultRecord
    >>> base = dict(model="m", backend="b", scheme="fp32", scenario="Offline", dataset="d",
    ...             threads=1, batch_size=1)
    >>> device_lines([("a", ResultRecord(**base))])
    []
"""

from __future__ import annotations

from collections.abc import Iterable

from edgequant.report.tables import (
    Row,
    device_key,
    devices_of,
    order_backends,
    primary_scenario,
    row_sort_key,
    speedup_text,
)
from edgequant.results.record import ResultRecord
from edgequant.results.store import record_device


def device_lines(records: list[tuple[str, ResultRecord]]) -> list[str]:
    """One line per device with its CPU (model, INT8 class) and runtimes; none for one device.

    Records without a device are ``local``. Where the fleet recorded it (``extra["fleet"]``), the
    line also says where the artifacts were built.

    Example:
        >>> base = dict(model="m", backend="b", scheme="fp32", scenario="Offline", dataset="d",
        ...             threads=1, batch_size=1)
        >>> pi = {"model": "Cortex-A76", "int8_class": "neon-dot"}
        >>> device_lines([("a", ResultRecord(**base)),
        ...               ("b", ResultRecord(device="rpi5", cpu_profile=pi, **base))])[1]
        'device rpi5: CPU Cortex-A76 · INT8 class neon-dot · runtimes b · 1 run'
    """
    by_device: dict[str, list[ResultRecord]] = {}
    for _, rec in records:
        by_device.setdefault(record_device(rec), []).append(rec)
    if len(by_device) <= 1:
        return []
    out = []
    for device in sorted(by_device, key=device_key):
        recs = by_device[device]
        cpus = dict.fromkeys(
            f"CPU {c.get('model')} · INT8 class {c.get('int8_class')}"
            for c in (r.cpu_profile for r in recs)
            if isinstance(c, dict) and c.get("model")
        )
        built = sorted(
            {
                str(r.extra["fleet"].get("artifact_built_on"))
                for r in recs
                if isinstance(r.extra.get("fleet"), dict)
                and r.extra["fleet"].get("artifact_built_on")
            }
        )
        parts = [
            " / ".join(cpus) or "CPU not recorded",
            f"runtimes {', '.join(order_backends(r.backend for r in recs))}",
            f"{len(recs)} run{'s' * (len(recs) != 1)}",
        ]
        if built:
            parts.append(f"artifacts built on {', '.join(built)}")
        out.append(f"device {device}: " + " · ".join(parts))
    return out


def device_cpu(records: list[tuple[str, ResultRecord]], device: str) -> str | None:
    """``CPU model · INT8 class`` of the first record of ``device`` that names its CPU."""
    for _, rec in records:
        c = rec.cpu_profile
        if record_device(rec) == device and isinstance(c, dict) and c.get("model"):
            return f"{c.get('model')} · INT8 class {c.get('int8_class')}"
    return None


def device_speedups(rows: Iterable[Row], model: str) -> tuple[list[str], list[list[str]]]:
    """``(headers, lines)``: per runtime × scheme of ``model``, its speed-up on each device.

    Each cell is against the same device's fp32 on the same runtime, in the model's primary
    scenario, with its paired interval or marked as a single run (:func:`speedup_text`).

    Example:
        >>> base = dict(model="m", backend="b", scenario="Offline", status="ok", reason=None,
        ...             simulated=False)
        >>> heads, lines = device_speedups(
        ...     [Row(run_id="1", scheme="w8a8", device="x", speedup=2.0, **base),
        ...      Row(run_id="2", scheme="w8a8", device="y", speedup=1.5, **base)], "m")
        >>> heads, lines
        (['runtime', 'scheme', 'x', 'y'], [['b', 'w8a8', '2.00× (single run, no interval)', '1.50× (single run, no interval)']])
    """
    mine = [r for r in rows if r.model == model and r.scheme != "fp32"]
    scen = primary_scenario(mine)
    picked = [r for r in mine if r.scenario == scen and r.status == "ok" and not r.simulated]
    devices = devices_of(mine)
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for r in sorted(picked, key=row_sort_key):
        cells.setdefault((r.backend, r.scheme), {})[r.device] = speedup_text(r)
    lines = [[b, sch, *(by.get(d, "-") for d in devices)] for (b, sch), by in cells.items()]
    return ["runtime", "scheme", *devices], lines


__all__ = ["device_cpu", "device_lines", "device_speedups"]
