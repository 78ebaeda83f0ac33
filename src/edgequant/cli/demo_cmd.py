"""``edgequant demo``: the embedded default, end to end — a sweep, its report, a summary table.

Example:
    $ edgequant demo                        # 80 cells -> demo-report/report.html
    $ edgequant demo --data imagenet:val/   # ImageNet models' accuracy measured too
    $ edgequant demo --quick                # the plumbing on the digits model, about a minute
"""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Run the embedded demo experiment (edgequant/examples/demo.yaml) and write its report:

  digits_cnn       real data, real accuracy: every scheme on every runtime (Offline + accuracy),
                   fp32/w8a8 latency in SingleStream
  efficientnet_lite0 (pretrained), mobilenet_v2, resnet50
                   fp32 and w8a8 on every runtime, Offline, performance on synthetic
                   inputs (mobilenet_v2 also SingleStream); with --data imagenet:DIR their
                   accuracy too. Without labelled data the report says accuracy was not measured.

One fresh process per model and runtime runs that pair's cells in turn (isolation: backend).

Everything lands in OUT/runs (resumable: run it again to finish an interrupted demo) and
OUT/report.html; a summary table is printed at the end.
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the embedded default: sweep + report, end to end",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-o",
        "--output",
        default="demo-report",
        metavar="OUT",
        help="output folder (default demo-report)",
    )
    p.add_argument(
        "--data",
        metavar="imagenet:DIR",
        help="labelled ImageNet data: also measure the ImageNet models' accuracy",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="digits model only, tiny durations (checks the plumbing in about a minute)",
    )
    p.add_argument("--force", action="store_true", help="re-run cells already recorded")
    p.add_argument(
        "--max-drop",
        type=float,
        default=1.0,
        metavar="PTS",
        help="accuracy budget of the recommendation (top-1 points, default 1.0)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(func=run)


def demo_experiment(*, quick: bool = False, data: str | None = None) -> Any:
    """The embedded experiment; ``data`` (imagenet:DIR) replaces the synthetic groups' data."""
    from pathlib import Path

    import yaml

    from edgequant.errors import ValidationError
    from edgequant.sweep.experiment import parse_experiment

    name = "demo-quick.yaml" if quick else "demo.yaml"
    text = (Path(__file__).resolve().parents[1] / "examples" / name).read_text()
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


def summary_table(data: Any) -> str:
    """Per model: its recommendation and the measured rows, as plain text."""
    from edgequant.console import format_table

    lines: list[str] = []
    for rec in data.recommendations:
        lines += ["", f"{rec.model}: {rec.text}"]
        rows = [r for r in data.rows if r.model == rec.model]
        table = [
            [
                r.backend + (" (sim)" if r.simulated else ""),
                r.scheme,
                r.scenario,
                r.status if r.status == "ok" else f"{r.status}: {(r.reason or '')[:50]}",
                r.throughput_ips,
                r.latency_ms.get("p50"),
                None if r.speedup is None else round(r.speedup, 2),
                r.top1_pct,
                None if r.size_bytes is None else round(r.size_bytes / 1e6, 2),
            ]
            for r in rows
        ]
        lines.append(
            format_table(
                table,
                [
                    "runtime",
                    "scheme",
                    "scenario",
                    "status",
                    "img/s",
                    "p50 ms",
                    "speedup",
                    "top-1 %",
                    "MB",
                ],
            )
        )
    return "\n".join(lines).lstrip("\n")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from edgequant.cli.sweep_cmd import counts_line, install_sigterm
    from edgequant.console import log, print_json
    from edgequant.report.build import build_report, collect
    from edgequant.sweep.runner import run_sweep

    t0 = time.perf_counter()
    experiment = demo_experiment(quick=args.quick, data=args.data)
    out = Path(args.output)
    runs = out / "runs"
    log(
        f"edgequant demo{' --quick' if args.quick else ''}: {len(experiment.cells())} cells into {runs} "
        "(resumable: run it again to finish an interrupted demo)"
    )
    install_sigterm()
    sweep = run_sweep(experiment, runs, force=args.force)
    report = build_report(runs, out / "report.html", max_drop=args.max_drop)
    data = collect(runs, max_drop=args.max_drop, plots=False, inspect=False)
    seconds = time.perf_counter() - t0
    if args.json:
        print_json(
            {
                "report": str(report),
                "runs_dir": str(runs),
                "seconds": round(seconds, 1),
                "counts": sweep.counts,
                "recommendations": {r.model: r.text for r in data.recommendations},
            }
        )
    else:
        print(summary_table(data))
        print(f"\n{counts_line(sweep)} in {seconds:.0f} s")
        print(f"report: {report}")
    return 0
