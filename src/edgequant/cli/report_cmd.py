"""``edgequant report``: one self-contained HTML page (or Markdown, CSV) from a runs directory.

Example:
    $ edgequant report runs/ -o report.html
    $ edgequant report runs/ --format md -o report.md --max-drop 0.5
"""

from __future__ import annotations

import argparse
from typing import Any

from edgequant.cli.args import Spec, command, opt

DESCRIPTION = """\
Write the report of a runs directory: per model a table of runtime x scheme (throughput,
p50/p90/p99 latency, speedup vs that runtime's fp32, top-1 and its drop, agreement with fp32,
size and reduction, energy, LoadGen validity), four plots (INT8-vs-FP32 speedup, latency
percentiles, accuracy drop vs speedup with the Pareto front, size reduction), a recommendation
per model and what `edgequant inspect` says about slow INT8 artifacts, and the environment.
The HTML file needs no network: CSS and SVG plots are inline.
"""

EPILOG = """\
The recommendation is the fastest configuration whose top-1 drop is within --max-drop points of
fp32; when no accuracy was measured it says so and ranks on speed only.
"""


HELP = "HTML/Markdown/CSV report of a runs directory"

OPTIONS: dict[str, Spec] = {
    "runs_dir": opt("runs directory written by `edgequant sweep`", metavar="RUNS_DIR"),
    "--output": opt("output file (default RUNS_DIR/report.<format>)", metavar="FILE"),
    "--format": opt("default: from -o's suffix, else html", choices=("html", "md", "csv")),
    "--max-drop": "accuracy budget of the recommendation, in top-1 points (default 1.0)",
    "--json": "print {report, format, recommendations} as JSON",
}


def add_parser(subparsers: Any) -> None:
    command(subparsers, __name__)


def run(args: argparse.Namespace) -> int:
    from edgequant.console import log, print_json
    from edgequant.report.build import build_report, collect

    out = build_report(args.runs_dir, args.output, fmt=args.format, max_drop=args.max_drop)
    log(f"report written to {out}")
    if args.json:
        data = collect(args.runs_dir, max_drop=args.max_drop, plots=False, inspect=False)
        print_json(
            {
                "report": str(out),
                "format": out.suffix.lstrip("."),
                "recommendations": {r.title: r.text for r in data.recommendations},
            }
        )
    else:
        print(out)
    return 0
