"""The demo pipeline: the embedded experiment swept, its report written, its summary returned.

``edgequant demo`` is a thin wrapper over :func:`demo`. With ``devices`` other than ``local``
(``edgequant demo --devices local,rpi5 --cluster tcp://HOST:8786``) every group of the
experiment gets that ``devices:`` axis; the cells (and the paired rounds) of the other devices
run on their ``edgequant worker``s through the Dask launcher, as ``edgequant sweep --cluster``
does, and the report compares the devices.

Example:
    >>> result = demo("demo-report", quick=True)     # doctest: +SKIP
    >>> result.report                                # doctest: +SKIP
    PosixPath('demo-report/report.html')
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgequant.console import log
from edgequant.errors import ValidationError
from edgequant.sweep.experiment import parse_experiment
from edgequant.sweep.plan import LOCAL_DEVICE, Experiment, with_devices
from edgequant.sweep.records import SweepSummary
from edgequant.sweep.runner import run_sweep

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@dataclass(kw_only=True)
class DemoResult:
    """What :func:`demo` produced: the report file, the sweep, the report's data."""

    report: Path
    runs_dir: Path
    sweep: SweepSummary
    data: Any  # edgequant.report.build.ReportData
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "report": str(self.report),
            "runs_dir": str(self.runs_dir),
            "seconds": round(self.seconds, 1),
            "counts": self.sweep.counts,
            "recommendations": {r.model: r.text for r in self.data.recommendations},
            "paired": {
                o.cell.cell_id: o.record.paired
                for o in self.sweep.outcomes
                if o.record is not None and o.record.paired is not None
            },
        }


def demo_experiment(
    *, quick: bool = False, data: str | None = None, devices: Sequence[str] | None = None
) -> Experiment:
    """The embedded experiment; ``data`` (imagenet:DIR) replaces the synthetic groups' data,
    ``devices`` (other than just ``local``) every group's devices.

    Example:
        >>> len(demo_experiment(quick=True).cells())
        4
        >>> sorted({c.device for c in demo_experiment(quick=True, devices=["local", "rpi5"]).cells()})
        ['local', 'rpi5']
    """
    experiment = _embedded(quick, data)
    if devices is None or list(devices) == [LOCAL_DEVICE]:
        return experiment  # today's demo, to the letter
    return with_devices(experiment, list(devices))


def _embedded(quick: bool, data: str | None) -> Experiment:
    import yaml

    name = "demo-quick.yaml" if quick else "demo.yaml"
    text = (EXAMPLES / name).read_text()
    if data:
        if not data.startswith("imagenet:"):
            raise ValidationError(
                f"--data must be imagenet:DIR (labelled ImageNet images), got {data!r}"
            )
        doc = yaml.safe_load(text)
        for group in doc.get("groups", [doc]):
            if str(group.get("data", doc.get("data"))).startswith("synthetic"):
                group.update(data=data, calib=data, accuracy=True)
        doc["description"] = doc.get("description", "") + f" ImageNet models measured on {data}."
        text = f"# edgequant demo with --data {data}\n" + yaml.safe_dump(doc, sort_keys=False)
    return parse_experiment(text, source=name)


def demo(
    output: Path | str = "demo-report",
    *,
    data: str | None = None,
    quick: bool = False,
    force: bool = False,
    max_drop: float = 1.0,
    devices: Sequence[str] | None = None,
    cluster: str | None = None,
) -> DemoResult:
    """Sweep the embedded experiment into ``OUTPUT/runs`` (resumable) and write
    ``OUTPUT/report.html``; ``max_drop`` is the recommendation's accuracy budget (top-1 points).
    ``devices`` (default: ``local`` only) sweeps the demo on those devices, the ones other than
    ``local`` through the Dask scheduler ``cluster`` (``tcp://HOST:PORT``)."""
    from edgequant.report.build import build_report, collect

    t0 = time.perf_counter()
    experiment = demo_experiment(quick=quick, data=data, devices=devices)
    out = Path(output)
    runs = out / "runs"
    on = "" if devices is None else f" on {', '.join(dict.fromkeys(devices))}"
    log(
        f"edgequant demo{' --quick' if quick else ''}: {len(experiment.cells())} cells{on} into "
        f"{runs} (resumable: run it again to finish an interrupted demo)"
    )
    remote = any(not c.is_local for c in experiment.cells())
    sweep = run_sweep(experiment, runs, force=force, cluster=cluster if remote else None)
    report = build_report(runs, out / "report.html", max_drop=max_drop)
    summary = collect(runs, max_drop=max_drop, plots=False, inspect=False)
    return DemoResult(
        report=report,
        runs_dir=runs,
        sweep=sweep,
        data=summary,
        seconds=time.perf_counter() - t0,
    )


__all__ = ["DemoResult", "demo", "demo_experiment"]
